"""Table contracts: the columns of the aggregate tables that the page reads, each with its unit
and how it is displayed, and the one interval naming convention.

Intervals: the interval of column ``X`` is ``X_lo`` and ``X_hi`` (same unit and format as
``X``; a 95% interval unless the producing function says otherwise). `interval_of` gives the
pair; every table follows it (``accuracy_lo``, ``diff_lo``, ``c_lo``, ``n_needed_lo``, ...).

Formats (the page's rendering of a value; a missing value is "–"): ``text`` (as is, booleans
as yes/no), ``count`` (an integer with thousands separators), ``num0`` … ``num4`` (fixed
decimals), ``sci`` (3 significant digits), ``pct`` (a share as a percentage), ``mega`` (bytes
shown in 10^6), ``giga`` (FLOPs shown in 10^9). Units name what the stored value counts.

`conform` gives a table every column its contract names (missing ones as NA, so that a reader
never needs to guess whether a column exists) and says which were missing; the aggregate stage
logs those. `ptmeval.report` takes every table's formats from here; a test checks that every
column the page reads is in its table's contract.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

FORMATS = ("text", "count", "num0", "num1", "num2", "num3", "num4", "sci", "pct", "mega", "giga")


@dataclass(frozen=True)
class Column:
    """How a column is displayed (one of `FORMATS`) and what its values count."""

    fmt: str
    unit: str = ""

    def __post_init__(self) -> None:
        if self.fmt not in FORMATS:
            raise ValueError(f"unknown format '{self.fmt}' (formats: {', '.join(FORMATS)})")


def interval_of(column: str) -> tuple[str, str]:
    """The columns holding the interval of ``column``: ``(column_lo, column_hi)``."""
    return f"{column}_lo", f"{column}_hi"


def _columns(spec: str) -> dict[str, Column]:
    """``"name:fmt:unit, ..."`` (unit optional; ``name`` alone is text) -> columns; a column
    written ``name[ci]`` brings its interval columns with the same format and unit."""
    out: dict[str, Column] = {}
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        name, fmt, unit = (item.split(":") + ["text", ""])[:3]
        with_interval = name.endswith("[ci]")
        name = name.removesuffix("[ci]")
        out[name] = Column(fmt, unit)
        if with_interval:
            for bound in interval_of(name):
                out[bound] = Column(fmt, unit)
    return out


JOB = "model, task, init, method, n_train:count:examples"
CONTRACTS: dict[str, dict[str, Column]] = {
    "profile": _columns(
        "model, method, params_total:count:parameters, params_backbone:count:parameters,"
        "params_task_head:count:parameters, task_head_classes:count:classes,"
        "params_task_head_per_class:count:parameters, params_source_head:count:parameters,"
        "source_head, params_published_total:count:parameters,"
        "params_trainable_full:count:parameters, params_trainable_linear_probe:count:parameters,"
        "params_trainable_lora:count:parameters, bytes_on_disk_by_format, safetensors,"
        "weights_fp32_bytes:mega:bytes, weights_bf16_bytes:mega:bytes,"
        "weights_int8_bytes:mega:bytes, license, flops_input,"
        "flops_forward_per_sample:giga:FLOPs, flops_train_step_per_sample:giga:FLOPs,"
        "flops_analytical_forward:giga:FLOPs, flops_vs_analytical_pct:num2:percent,"
        "uncounted_time_share:pct:share of CPU time, uncounted_operators"
    ),
    "export": _columns(
        "model, task, standard_api, torch_export, onnx_export, onnxruntime,"
        "max_abs_diff:sci:logit, max_rel_diff:sci:ratio, accuracy_change:num4:accuracy,"
        "macro_f1_change:num4:macro-F1, onnx_vs_eager_b1:num2:ratio, onnx_vs_eager_b32:num2:ratio,"
        "job_peak_rss_mb:num0:MB"
    ),
    "deployment": _columns(
        "model, task, variant, score:num3:metric, diff[ci]:num3:metric, mcnemar_p:sci:p,"
        "agreement:pct:share of test examples, status, reason, passes, ratio:num3:ratio,"
        "gate:num2:ratio, peak_rss_mb:num0:MB, disk_mb:num1:MB"
    ),
    "difficulty": _columns(
        "model, task, init, method, n_jobs:count:jobs, test_score_mean:num3:metric,"
        "n_collapsed:count:jobs, chance:num3:metric, top_pred_share:pct:share of test examples,"
        "median_total_wall_s:num1:s, median_wall_s_to_level:num1:s,"
        "median_samples_to_level:count:examples, seed_std:num3:metric,"
        "at_chance_rate:pct:share of jobs, diverged_rate:pct:share of jobs,"
        "still_improving_rate:pct:share of jobs, hparam,"
        "hparam_value:sci:value, hparam_tuned, hparam_spread:num3:metric, hparam_at_edge"
    ),
    "methods": _columns(
        "base, task, method, n_train:count:examples, score[ci]:num3:metric,"
        "score_min:num3:metric, score_max:num3:metric, n_seeds:count:seeds, largest,"
        "best_method, diff_vs_best:num3:metric, diff[ci]:num3:metric, p_vs_best:sci:p,"
        "tied_with_best, trainable_params:count:parameters, task_mb:num2:MB,"
        "finetune_s:num1:s, train_step_ms:num1:ms, train_batch:count:examples,"
        "train_peak_mb:num0:MB"
    ),
    "tuning": _columns(
        f"{JOB}, param, value:sci:value, val_score:num3:metric, val_loss:num3:loss,"
        "best_step:count:steps, stop_reason, chosen"
    ),
    "runtime": _columns(
        "model, device, device_kind, mode, status, reason, batch_size:count:examples,"
        "threads:count:threads, latency_p50_ms:num1:ms, latency_p90_ms:num1:ms,"
        "latency_cv:num3:ratio, noisy, load_1min:num2:load, attempts:count:attempts,"
        "repeats:count:repeats, throughput_per_s:num1:examples/s, peak_rss_mb:num0:MB,"
        "gpu_peak_mb:num0:MB, export_b1_ms:num1:ms"
    ),
    "accessibility": _columns("model, verdict"),
    "data_needed": _columns(
        "model, task, init, kind, level:num2:share of the best score, target_score:num3:metric,"
        "n_needed[ci]:count:examples, never_reached, observed_at:count:examples, extrapolated,"
        "reachable, never_reached_reason, reason"
    ),
    "fits": _columns(
        "model, task, init, n_sizes:count:sizes, a:num3:error, b:num3:error, c[ci]:num3:exponent,"
        "extrap_error:num3:metric, trustworthy, reason"
    ),
    "transfer_gain": _columns(
        "model, task, n_train:count:examples, mean_pretrained:num3:metric,"
        "mean_scratch:num3:metric, gain[ci]:num3:metric"
    ),
    "effective_data": _columns(
        "model, task, n_train:count:examples, effective_data:count:examples,"
        "data_multiplier:num1:ratio, extrapolated, reachable, reason"
    ),
    "compatibility": _columns(
        "model, eager_pytorch, torch_export, onnx_onnxruntime, deepspeed_finetune"
    ),
    "pairwise": _columns(
        "task, system_a, system_b, n_train_a:count:examples, n_train_b:count:examples,"
        "acc_a:num3:accuracy, acc_b:num3:accuracy, diff[ci]:num3:accuracy, cohens_h:num2:h,"
        "mcnemar_p_holm:sci:p, bootstrap_p_holm:sci:p, significant"
    ),
    "ranks": _columns(
        "task, system, model, n_train:count:examples, accuracy[ci]:num3:accuracy,"
        "rank[ci]:num1:rank, p_best:num2:probability"
    ),
    "transfer": _columns(
        "model, task, n_examples:count:examples, logme:num3:score, h_score:num3:score,"
        "leep:num3:score, nce:num3:score, knn_accuracy:num3:accuracy,"
        "linear_probe_val_accuracy:num3:accuracy, scores_wall_s:num2:s, note"
    ),
    "transfer_prediction": _columns(
        "predictor, kind, task, n_models:count:models, tau[ci]:num2:tau, note"
    ),
    "reuse": _columns(
        "model, tasks:count:tasks, mean_score:num3:metric, mean_normalised:num3:metric,"
        "mean_transfer_gain:num3:metric"
    ),
    "prediction_cost": _columns(
        "model, task, features_wall_s:num1:s, scores_wall_s:num2:s, shared_features,"
        "finetune_wall_s:num1:s, cost_ratio:pct:ratio"
    ),
    "similarity_vs_gain": _columns(
        "model, tasks:count:tasks, spearman_rho:num2:rho, p_value:sci:p, note"
    ),
    "task_similarity": _columns("model, task_a, task_b, frechet_distance:num2:distance"),
    "protocol_check": _columns(
        f"{JOB}, metric, score[ci]:num3:metric, frozen_score:num3:metric,"
        "difference:num3:metric, below_frozen, verdict"
    ),
    "learning_curve": _columns(
        f"{JOB}, metric, mean:num3:metric, std:num3:metric, min:num3:metric, max:num3:metric,"
        "n_seeds:count:seeds"
    ),
    "machines": _columns(
        "host, system, processor, cpu_count, gpu, git_commit, ptmeval_version,"
        "tables:count:tables, stages"
    ),
    "failures": _columns("model, failed_stage, reason, jobs:count:jobs, stages"),
    "stage_times": _columns(
        "stage, jobs:count:jobs, wall_s:num1:s, max_job_wall_s:num1:s, max_rss_mb:num0:MB,"
        "estimated_wall_s:num1:s, estimated_peak_mb:num0:MB"
    ),
    "decision": _columns(
        "task, system, n_train:count:examples, accuracy[ci]:num3:accuracy, p_vs_best:sci:p,"
        "tied, constraint, cost:sci:cost, cost_noisy, chosen, protocol_flag"
    ),
    "scorecard_parts": _columns(
        "model, dimension, submeasure, kind, raw:sci:raw, status, source, scaled:num3:0-1,"
        "weight:num2:weight"
    ),
}


def missing(name: str, frame: pd.DataFrame) -> list[str]:
    """The columns the contract of table ``name`` names that ``frame`` lacks."""
    return [c for c in CONTRACTS.get(name, {}) if c not in frame.columns]


def conform(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every column of its contract (the missing ones added as NA, after the
    others); a table without a contract is returned as is."""
    absent = missing(name, frame)
    if not absent:
        return frame
    return frame.assign(**{c: np.nan for c in absent})
