"""`render_report`: one self-contained HTML page from the aggregated tables (cache only).

The page has the models and tasks, then one section per dimension (integrability,
accessibility, scalability, interoperability, reusability), the full results and provenance.
Every table is built here as formatted strings; the template escapes every one of them.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment, FileSystemLoader, select_autoescape

from ptmeval import __version__, methods
from ptmeval.decision import CONSTRAINTS
from ptmeval.figures import (
    cost_figure,
    learning_curve_figure,
    pareto_figure,
    prediction_scatter,
    similarity_heatmap,
)
from ptmeval.io import git_commit, hardware
from ptmeval.scorecard import DIMENSIONS, SUBMEASURES, recommendation, score_cell
from ptmeval.tables import CONTRACTS, interval_of
from ptmeval.verdicts import PROTOCOL_MARK, failed_runs, protocol_caveat, undertrained_runs

TEMPLATE = Path(__file__).parent / "templates" / "report.html.j2"

Fmt = Callable[[Any], str]


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def num(digits: int = 3) -> Fmt:
    return lambda v: "–" if _missing(v) else f"{float(v):.{digits}f}"


def sci(v: Any) -> str:
    return "–" if _missing(v) else f"{float(v):.3g}"


def count(v: Any) -> str:
    return "–" if _missing(v) else f"{int(v):,}"


def giga(v: Any) -> str:
    return "–" if _missing(v) else f"{float(v) / 1e9:.3f}"


def mega(v: Any) -> str:
    return "–" if _missing(v) else f"{float(v) / 1e6:.1f}"


def pct(v: Any) -> str:
    return "–" if _missing(v) else f"{100 * float(v):.1f}%"


def text(v: Any) -> str:
    if _missing(v):
        return "–"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    return str(v)


TASK_HEAD = ("params_task_head", "task_head_classes", "params_task_head_per_class")


def task_head(row: pd.Series) -> str:
    """'1,538 (2 classes; +769 a class)': the profiled task head and what each class adds."""
    if _missing(row.get("params_task_head")):
        return "–"
    size = f"{int(row['params_task_head']):,}"
    if _missing(row.get("task_head_classes")) or _missing(row.get("params_task_head_per_class")):
        return size
    return (
        f"{size} ({int(row['task_head_classes'])} classes; "
        f"+{int(row['params_task_head_per_class']):,} a class)"
    )


Tables = dict[str, pd.DataFrame]
FORMATTERS: dict[str, Fmt] = {
    "text": text,
    "count": count,
    "sci": sci,
    "pct": pct,
    "mega": mega,
    "giga": giga,
    **{f"num{d}": num(d) for d in range(5)},
}


@dataclass(frozen=True)
class Cell:
    """A column of the page made from several columns of a row (``reads``)."""

    header: str
    fmt: Callable[[pd.Series], str]
    reads: tuple[str, ...]


# A view's column: (column, header) formatted as the table contract says, (column, header,
# formatter), or a Cell.
Spec = tuple[str, str] | tuple[str, str, Any] | Cell


@dataclass(frozen=True)
class View:
    """A table of the page: the aggregate table it shows (``source``), its columns (or a
    function of the rows that makes them), and a function selecting or deriving the rows."""

    source: str
    columns: tuple[Spec, ...] | Callable[[pd.DataFrame], list[Spec]]
    rows: Callable[[pd.DataFrame, Tables], pd.DataFrame] | None = None


def bounds(column: str, digits: int = 3) -> Callable[[pd.Series], str]:
    """'[lo, hi]': the interval of ``column`` (`ptmeval.tables.interval_of`)."""
    lo, hi = interval_of(column)

    def fmt(row: pd.Series) -> str:
        if _missing(row.get(lo)) or _missing(row.get(hi)):
            return "–"
        return f"[{float(row[lo]):.{digits}f}, {float(row[hi]):.{digits}f}]"

    return fmt


def interval(column: str, header: str, digits: int = 3) -> Cell:
    """The page's column showing the interval of ``column``."""
    return Cell(header, bounds(column, digits), interval_of(column))


SEED_RANGE = ("score", "n_seeds", "score_min", "score_max")


def seed_range(row: pd.Series) -> str:
    if _missing(row.get("score")):
        return "–"
    score = f"{float(row['score']):.3f}"
    if int(row.get("n_seeds") or 0) < 2:
        return f"{score} (1 seed)"
    return f"{score} ({float(row['score_min']):.3f}–{float(row['score_max']):.3f})"


VERSUS_BEST = (
    "largest",
    "diff_vs_best",
    "method",
    "best_method",
    "tied_with_best",
    "diff_lo",
    "diff_hi",
    "p_vs_best",
)


def versus_best(row: pd.Series) -> str:
    """A method's paired difference from its base model's most accurate method."""
    if not row.get("largest") or _missing(row.get("diff_vs_best")):
        return "–"
    if row.get("method") == row.get("best_method"):
        return "the best"
    verdict = "tied" if row.get("tied_with_best") else "behind"
    return (
        f"{float(row['diff_vs_best']):+.3f} [{float(row['diff_lo']):+.3f}, "
        f"{float(row['diff_hi']):+.3f}], p = {float(row['p_vs_best']):.2g}: {verdict}"
    )


GATE_VERDICT = ("status", "reason", "passes", "ratio", "gate")


def gate_verdict(row: pd.Series) -> str:
    """A deployment variant's verdict: passes / fails the gate (ratio to fp32), or why there
    is none."""
    status = str(row.get("status", ""))
    if status != "ok":
        return f"{status}: {row.get('reason', '')}"
    if _missing(row.get("passes")):
        return str(row.get("reason") or "not gated")
    ratio = f"{100 * float(row['ratio']):.1f}% of fp32" if not _missing(row.get("ratio")) else ""
    verdict = "passes" if bool(row["passes"]) else "FAILS"
    return f"{verdict} ({ratio}; gate {100 * float(row['gate']):.0f}%)"


def deployment_columns(frame: pd.DataFrame) -> list[Spec]:
    """The deployment table's columns: the timings present (one pair per batch size)."""
    timed = sorted({int(c.split("_")[1][1:]) for c in frame.columns if c.startswith("latency_b")})
    columns: list[Spec] = [
        ("model", "model"),
        ("task", "task"),
        ("variant", "variant"),
        ("score", "score"),
        ("diff", "Δ vs fp32"),
        interval("diff", "Δ 95% CI (paired)"),
        ("mcnemar_p", "McNemar p"),
        ("agreement", "same prediction as fp32"),
        Cell("accuracy gate", gate_verdict, GATE_VERDICT),
    ]
    for b in timed:
        columns.append((f"latency_b{b}_p50_ms", f"b{b} p50 (ms)", num(2)))
        columns.append((f"latency_b{b}_p90_ms", f"b{b} p90 (ms)", num(2)))
    columns += [("peak_rss_mb", "peak memory (MB)"), ("disk_mb", "on disk (MB)")]
    return columns


CV_WITH_FLAG = ("latency_cv", "noisy")


def cv_with_flag(row: pd.Series) -> str:
    """A runtime row's coefficient of variation, marked when it stayed high after re-measuring
    (`profile.max_cv`): the latency is then uncertain, and the machine's load is beside it."""
    cv = num(3)(row.get("latency_cv"))
    if bool(row.get("noisy", False)) is True:
        return f"{cv} ⚠ noisy"
    return cv


def accuracy_interval(row: pd.Series) -> str:
    """'0.920 [0.875, 0.965]': a system's accuracy and its bootstrap interval."""
    return f"{num(3)(row.get('accuracy'))} {bounds('accuracy')(row)}"


SCORE_WITH_FLAGS = ("test_score_mean", "n_collapsed", "n_jobs")


def score_with_flags(row: pd.Series) -> str:
    """Mean test score of a training-difficulty row, marked ⚠ when some runs collapsed."""
    score = num(3)(row.get("test_score_mean"))
    collapsed = row.get("n_collapsed")
    if not _missing(collapsed) and int(collapsed) > 0:
        score += f" ⚠ collapsed {int(collapsed)}/{int(row['n_jobs'])}"
    return score


CHOSEN_HPARAM = ("hparam", "hparam_value", "hparam_tuned", "hparam_at_edge")


def chosen_hparam(row: pd.Series) -> str:
    """The chosen learning rate or C of a difficulty row: 'not tuned' when it was fixed, marked
    when it lies at the grid's edge with the validation score rising towards it."""
    if _missing(row.get("hparam_value")):
        return "–"
    value = f"{row['hparam']} {sci(row['hparam_value'])}"
    if not bool(row.get("hparam_tuned")):
        return f"{value} (not tuned)"
    if not _missing(row.get("hparam_at_edge")) and bool(row["hparam_at_edge"]):
        return f"{value} ⚠ grid edge"
    return value


EXAMPLES_NEEDED = ("never_reached", "n_needed", "observed_at")


def examples_needed(row: pd.Series) -> str:
    """Examples needed of a data-needed row; "never reached" for a curve never above chance."""
    if bool(row.get("never_reached", False)):
        return "never reached"
    if _missing(row.get("n_needed")) and not _missing(row.get("observed_at")):
        return f"≤ {int(row['observed_at']):,} (reached in the data; no usable fit)"
    return count(row.get("n_needed"))


def table(frame: pd.DataFrame, columns: list[tuple[str, str, Any]]) -> dict[str, Any]:
    """{"headers": [...], "rows": [[(text, numeric?), ...]]}; a formatter given a column name
    gets the value; a formatter under the key '*' gets the whole row."""
    headers = [h for _, h, _ in columns]
    rows = []
    if frame is not None and len(frame):
        for _, row in frame.iterrows():
            cells = []
            for key, _, fmt in columns:
                value = fmt(row) if key == "*" else fmt(row.get(key))
                numeric = fmt not in (text,) and key != "*" and not isinstance(row.get(key), str)
                cells.append((value, numeric))
            rows.append(cells)
    return {"headers": headers, "rows": rows}


def spread(mean: float, std: float, n_seeds: int) -> str:
    """ "mean ± std" over seeds; one seed has no spread to show, and says so."""
    if int(n_seeds) < 2 or _missing(std):
        return f"{mean:.3f} (1 seed: no spread)"
    return f"{mean:.3f} ± {std:.3f}"


def results_table(curve: pd.DataFrame, check: pd.DataFrame | None = None) -> pd.DataFrame:
    """Accuracy, macro-F1 and ECE (mean ± std over seeds) per model × task × init × size; a
    score that the protocol check flags (``below_frozen``) carries the mark beside it."""
    if curve.empty:
        return curve
    keep = curve[curve["metric"].isin(["accuracy", "macro_f1", "ece"])].copy()
    keep["cell"] = [
        spread(m, s, n) for m, s, n in zip(keep["mean"], keep["std"], keep["n_seeds"], strict=True)
    ]
    if check is not None and len(check):
        keys = ["task", "model", "init", "method", "n_train", "metric"]
        flagged = check.loc[check["below_frozen"].astype(bool), keys].assign(flag=True)
        keep = keep.merge(flagged, on=keys, how="left")
        marked = keep["flag"].eq(True)
        keep.loc[marked, "cell"] = keep.loc[marked, "cell"] + f" ⚠ {PROTOCOL_MARK}"
    wide = keep.pivot_table(
        index=["task", "model", "init", "method", "n_train", "n_seeds"],
        columns="metric",
        values="cell",
        aggfunc="first",
    ).reset_index()
    wide.columns.name = None
    return wide.sort_values(["task", "model", "init", "n_train"])


def significance_matrix(pairwise: pd.DataFrame) -> dict[str, Any]:
    """Per task: a system × system grid of accuracy differences (row − column), '*' when
    significant after Holm correction."""
    out: dict[str, Any] = {}
    if pairwise.empty:
        return out
    for task, group in pairwise.groupby("task"):
        systems = sorted(set(group["system_a"]) | set(group["system_b"]))
        cells = {(s, s): "·" for s in systems}
        for _, r in group.iterrows():
            mark = "*" if bool(r["significant"]) else ""
            cells[(r["system_a"], r["system_b"])] = f"{r['diff']:+.3f}{mark}"
            cells[(r["system_b"], r["system_a"])] = f"{-r['diff']:+.3f}{mark}"
        out[str(task)] = {
            "systems": systems,
            "rows": [[cells.get((a, b), "") for b in systems] for a in systems],
        }
    return out


def _versions() -> dict[str, str]:
    out = {}
    for dist in ("torch", "transformers", "snakemake", "pandas", "scikit-learn", "onnxruntime"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _get(tables: dict[str, pd.DataFrame], name: str) -> pd.DataFrame:
    frame = tables.get(name)
    return frame if frame is not None else pd.DataFrame()


def _ok(runtime: pd.DataFrame) -> pd.DataFrame:
    return runtime[runtime["status"] == "ok"] if len(runtime) else runtime


def _sorted_ok(runtime: pd.DataFrame, tables: Tables) -> pd.DataFrame:
    ok = _ok(runtime)
    return ok.sort_values(["model", "device_kind", "mode", "batch_size"]) if len(ok) else ok


def _failed(runtime: pd.DataFrame, tables: Tables) -> pd.DataFrame:
    return runtime[runtime["status"] != "ok"] if len(runtime) else runtime


def _train_steps(runtime: pd.DataFrame, tables: Tables) -> pd.DataFrame:
    ok = _ok(runtime)
    return ok[ok["mode"] == "train_step"] if len(ok) else ok


def _with_protocol_marks(curve: pd.DataFrame, tables: Tables) -> pd.DataFrame:
    return results_table(curve, _get(tables, "protocol_check"))


STRUCTURE_COUNTS = {
    "layers",
    "hidden_size",
    "heads",
    "intermediate_size",
    "vocab_size",
    "max_input_length",
    "sequence_length",
    "input_resolution",
    "channels",
    "params_total",
}


def structure_columns(frame: pd.DataFrame) -> list[Spec]:
    """The structure table's columns: whatever the adapters report (counts or text)."""
    return [
        (c, c.replace("_", " "), count if c in STRUCTURE_COUNTS else text) for c in frame.columns
    ]


# Every table of the page: the aggregate table it shows, its columns, and (for some) the rows.
VIEWS: dict[str, View] = {
    "size": View(
        "profile",
        (
            ("model", "model"),
            ("method", "method"),
            ("params_total", "parameters (backbone + task head)"),
            ("params_backbone", "backbone"),
            Cell("task head", task_head, TASK_HEAD),
            ("params_source_head", "source head"),
            ("source_head", "source head is"),
            ("params_published_total", "published size (backbone + source head)"),
            ("params_trainable_full", "trainable (full)"),
            ("params_trainable_linear_probe", "trainable (linear probe)"),
            ("params_trainable_lora", "trainable (LoRA)"),
            ("bytes_on_disk_by_format", "on disk, by format/dtype"),
            ("safetensors", "safetensors"),
            ("weights_fp32_bytes", "in memory fp32 (MB)"),
            ("weights_bf16_bytes", "bf16 (MB)"),
            ("weights_int8_bytes", "int8 dyn. quant. (MB)"),
            ("license", "licence (as stated)"),
        ),
    ),
    "compute": View(
        "profile",
        (
            ("model", "model"),
            ("flops_input", "input"),
            ("flops_forward_per_sample", "forward GFLOPs"),
            ("flops_train_step_per_sample", "train step GFLOPs"),
            ("flops_analytical_forward", "analytical forward GFLOPs"),
            ("flops_vs_analytical_pct", "counted vs analytical (%)"),
            ("uncounted_time_share", "CPU time in uncounted ops"),
            ("uncounted_operators", "largest uncounted ops"),
        ),
    ),
    "export": View(
        "export",
        (
            ("model", "model"),
            ("task", "task"),
            ("standard_api", "standard API"),
            ("torch_export", "torch.export"),
            ("onnx_export", "ONNX export"),
            ("onnxruntime", "onnxruntime"),
            ("max_abs_diff", "max |Δlogit|"),
            ("max_rel_diff", "max rel. Δ"),
            ("accuracy_change", "Δ accuracy"),
            ("macro_f1_change", "Δ macro-F1"),
            ("onnx_vs_eager_b1", "ORT/eager latency b1"),
            ("onnx_vs_eager_b32", "ORT/eager latency b32"),
        ),
    ),
    "deployment": View("deployment", deployment_columns),
    "difficulty": View(
        "difficulty",
        (
            ("model", "model"),
            ("task", "task"),
            ("init", "init"),
            ("method", "method"),
            ("n_jobs", "jobs"),
            Cell("mean test score", score_with_flags, SCORE_WITH_FLAGS),
            ("chance", "chance"),
            ("top_pred_share", "top predicted class (max share)"),
            ("median_total_wall_s", "median fine-tune time (s)"),
            ("median_wall_s_to_level", "median time to 90% of final (s)"),
            ("median_samples_to_level", "samples to 90% of final"),
            ("seed_std", "spread over seeds (std)"),
            ("at_chance_rate", "runs at chance"),
            ("diverged_rate", "diverged runs"),
            ("still_improving_rate", "still improving at the budget's end"),
            Cell("chosen lr / C", chosen_hparam, CHOSEN_HPARAM),
            ("hparam_spread", "spread over the grid (val.)"),
        ),
    ),
    "methods": View(
        "methods",
        (
            ("base", "model"),
            ("task", "task"),
            ("method", "method"),
            ("n_train", "examples"),
            Cell("test score (seeds: min–max)", seed_range, SEED_RANGE),
            interval("score", "95% interval (test examples)"),
            Cell("vs the best method (paired)", versus_best, VERSUS_BEST),
            ("trainable_params", "trainable"),
            ("task_mb", "MB per extra task"),
            ("finetune_s", "fine-tune (s, mean)"),
            ("train_step_ms", "train step (ms)"),
            ("train_batch", "at batch"),
            ("train_peak_mb", "train peak RSS (MB)"),
        ),
    ),
    "tuning": View(
        "tuning",
        (
            ("model", "model"),
            ("task", "task"),
            ("init", "init"),
            ("method", "method"),
            ("n_train", "examples"),
            ("param", "hyperparameter"),
            ("value", "value"),
            ("val_score", "best validation score"),
            ("val_loss", "its validation loss"),
            ("best_step", "at step"),
            ("stop_reason", "stopped by"),
            ("chosen", "chosen"),
        ),
    ),
    "runtime": View(
        "runtime",
        (
            ("model", "model"),
            ("device", "device"),
            ("mode", "mode"),
            ("batch_size", "batch"),
            ("threads", "threads"),
            ("latency_p50_ms", "p50 (ms)"),
            ("latency_p90_ms", "p90 (ms)"),
            Cell("CV", cv_with_flag, CV_WITH_FLAG),
            ("load_1min", "machine load (1 min)"),
            ("attempts", "attempts"),
            ("repeats", "repeats"),
            ("throughput_per_s", "examples/s"),
            ("peak_rss_mb", "peak RSS (MB)"),
            ("gpu_peak_mb", "GPU peak (MB)"),
        ),
        _sorted_ok,
    ),
    "runtime_failed": View(
        "runtime",
        (("model", "model"), ("mode", "mode"), ("batch_size", "batch"), ("reason", "reason")),
        _failed,
    ),
    "accessibility": View("accessibility", (("model", "model"), ("verdict", "verdict"))),
    "data_needed": View(
        "data_needed",
        (
            ("model", "model"),
            ("task", "task"),
            ("init", "init"),
            ("kind", "kind"),
            ("level", "level"),
            ("target_score", "target score"),
            Cell("examples needed", examples_needed, EXAMPLES_NEEDED),
            interval("n_needed", "95% CI", 0),
            ("observed_at", "reached in the data at"),
            ("extrapolated", "extrapolated"),
            ("reachable", "reachable"),
            ("never_reached_reason", "why never reached"),
            ("reason", "fit"),
        ),
    ),
    "fits": View(
        "fits",
        (
            ("model", "model"),
            ("task", "task"),
            ("init", "init"),
            ("n_sizes", "sizes"),
            ("a", "a (err floor)"),
            ("b", "b"),
            ("c", "c (exponent)"),
            interval("c", "c 95% CI"),
            ("extrap_error", "extrapolation error"),
            ("trustworthy", "trustworthy"),
            ("reason", "why"),
        ),
    ),
    "transfer_gain": View(
        "transfer_gain",
        (
            ("model", "model"),
            ("task", "task"),
            ("n_train", "examples"),
            ("mean_pretrained", "pretrained"),
            ("mean_scratch", "scratch"),
            ("gain", "gain"),
            interval("gain", "95% CI"),
        ),
    ),
    "effective_data": View(
        "effective_data",
        (
            ("model", "model"),
            ("task", "task"),
            ("n_train", "examples"),
            ("effective_data", "extra scratch examples it is worth"),
            ("data_multiplier", "× data"),
            ("extrapolated", "extrapolated"),
            ("reachable", "reachable"),
            ("reason", "note"),
        ),
    ),
    "throughput": View(
        "runtime",
        (
            ("model", "model"),
            ("device", "device"),
            ("batch_size", "batch"),
            ("throughput_per_s", "training examples/s"),
        ),
        _train_steps,
    ),
    "structure": View("structure", structure_columns),
    "compatibility": View(
        "compatibility",
        (
            ("model", "model"),
            ("eager_pytorch", "PyTorch eager"),
            ("torch_export", "torch.export"),
            ("onnx_onnxruntime", "ONNX + onnxruntime"),
            ("deepspeed_finetune", "DeepSpeed fine-tune"),
        ),
    ),
    "pairwise": View(
        "pairwise",
        (
            ("task", "task"),
            ("system_a", "system A"),
            ("system_b", "system B"),
            ("n_train_a", "n A"),
            ("n_train_b", "n B"),
            ("acc_a", "acc A"),
            ("acc_b", "acc B"),
            ("diff", "A − B"),
            interval("diff", "95% CI"),
            ("cohens_h", "Cohen's h"),
            ("mcnemar_p_holm", "McNemar p (Holm)"),
            ("bootstrap_p_holm", "bootstrap p (Holm)"),
            ("significant", "significant"),
        ),
    ),
    "ranks": View(
        "ranks",
        (
            ("task", "task"),
            ("system", "system"),
            ("n_train", "examples"),
            ("accuracy", "accuracy"),
            interval("accuracy", "accuracy 95% CI"),
            ("rank", "rank"),
            interval("rank", "rank interval", 0),
            ("p_best", "P(best)"),
        ),
    ),
    "transfer": View(
        "transfer",
        (
            ("model", "model"),
            ("task", "task"),
            ("n_examples", "examples"),
            ("logme", "LogME"),
            ("h_score", "H-score"),
            ("leep", "LEEP"),
            ("nce", "NCE"),
            ("knn_accuracy", "k-NN acc."),
            ("linear_probe_val_accuracy", "linear probe (val)"),
            ("scores_wall_s", "time (s)"),
            ("note", "note"),
        ),
    ),
    "transfer_prediction": View(
        "transfer_prediction",
        (
            ("predictor", "predictor"),
            ("kind", "kind"),
            ("task", "task"),
            ("n_models", "items"),
            ("tau", "weighted τ"),
            interval("tau", "95% CI", 2),
            ("note", "note"),
        ),
    ),
    "reuse": View(
        "reuse",
        (
            ("model", "model"),
            ("tasks", "tasks"),
            ("mean_score", "mean score"),
            ("mean_normalised", "mean normalised score"),
            ("mean_transfer_gain", "mean transfer gain (largest size)"),
        ),
    ),
    "prediction_cost": View(
        "prediction_cost",
        (
            ("model", "model"),
            ("task", "task"),
            ("features_wall_s", "feature extraction (s)"),
            ("scores_wall_s", "scores (s)"),
            ("shared_features", "features shared with the fine-tunes"),
            ("finetune_wall_s", "fine-tunes predicted (s, summed)"),
            ("cost_ratio", "prediction / fine-tuning"),
        ),
    ),
    "similarity_vs_gain": View(
        "similarity_vs_gain",
        (
            ("model", "model"),
            ("tasks", "tasks"),
            ("spearman_rho", "Spearman ρ (distance vs gain)"),
            ("p_value", "p"),
            ("note", "note"),
        ),
    ),
    "similarity": View(
        "task_similarity",
        (
            ("model", "model"),
            ("task_a", "task"),
            ("task_b", "task"),
            ("frechet_distance", "Fréchet distance (diag.)"),
        ),
    ),
    "protocol_check": View(
        "protocol_check",
        (
            ("model", "model"),
            ("task", "task"),
            ("n_train", "examples"),
            ("metric", "metric"),
            ("score", "full fine-tune"),
            interval("score", "95% CI"),
            ("frozen_score", "frozen features (linear probe)"),
            ("difference", "difference"),
            ("verdict", "verdict"),
        ),
    ),
    # Rows made from the learning curve (one cell per metric: mean ± std, protocol mark).
    "results": View(
        "learning_curve",
        (
            ("task", "task"),
            ("model", "model"),
            ("init", "init"),
            ("method", "method"),
            ("n_train", "examples"),
            ("n_seeds", "seeds"),
            ("accuracy", "accuracy", text),
            ("macro_f1", "macro-F1", text),
            ("ece", "ECE", text),
        ),
        _with_protocol_marks,
    ),
}


def resolve(source: str, specs: Any, frame: pd.DataFrame) -> list[tuple[str, str, Any]]:
    """A view's columns as ``(column or "*", header, formatter)``: a ``(column, header)`` pair
    takes the formatter of the column's format in the table contract (`ptmeval.tables`), a
    triple names its own, a `Cell` formats the whole row; a callable makes them from the
    frame."""
    if callable(specs):
        specs = specs(frame)
    contract = CONTRACTS.get(source, {})
    out: list[tuple[str, str, Any]] = []
    for spec in specs:
        if isinstance(spec, Cell):
            out.append(("*", spec.header, spec.fmt))
        elif len(spec) == 3:
            out.append(spec)
        else:
            column, header = spec
            out.append((column, header, FORMATTERS[contract[column].fmt]))
    return out


def render_view(view: View, tables: Tables) -> dict[str, Any]:
    """One view of the page: its table's rows (selected by the view), formatted."""
    frame = _get(tables, view.source)
    rows = view.rows(frame, tables) if view.rows is not None else frame
    return table(rows, resolve(view.source, view.columns, rows))


def sections(tables: Tables) -> dict[str, Any]:
    """Every table of the page (`VIEWS`), formatted."""
    return {name: render_view(view, tables) for name, view in VIEWS.items()}


def pareto_figures(points: pd.DataFrame) -> dict[str, Any]:
    if points.empty or "task" not in points:
        return {}
    figures = {str(t): pareto_figure(points, t) for t in sorted(points["task"].unique())}
    return {t: f for t, f in figures.items() if f is not None}


def export_tables(tables: dict[str, pd.DataFrame], folder: str | Path) -> list[Path]:
    """Every table as CSV and JSON in `folder` (list cells as JSON text in the CSV)."""
    import json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame in sorted(tables.items()):
        flat = frame.copy()
        for col in flat.columns:
            if flat[col].map(lambda v: hasattr(v, "__len__") and not isinstance(v, str)).any():
                flat[col] = flat[col].map(
                    lambda v: (
                        json.dumps(list(map(float, v)))
                        if hasattr(v, "__len__") and not isinstance(v, str)
                        else v
                    )
                )
        flat.to_csv(folder / f"{name}.csv", index=False)
        flat.to_json(folder / f"{name}.json", orient="records", indent=1, default_handler=str)
        written += [folder / f"{name}.csv", folder / f"{name}.json"]
    return written


def failure_note(failures: pd.DataFrame) -> str:
    """The sentence that names the models whose jobs failed (the verdict is without them)."""
    if failures.empty:
        return ""
    first = failures.drop_duplicates("model")
    named = "; ".join(
        f"{r['model']} ({r['failed_stage']} failed: {r['reason']})" for _, r in first.iterrows()
    )
    return f"Not in this verdict, or only in part, because a job failed: {named}."


def _no_scorecard(
    tables: dict[str, pd.DataFrame], parts: pd.DataFrame, chosen: pd.DataFrame
) -> dict[str, Any]:
    """The scorecard section when no model was evaluated (and which jobs failed)."""
    return {
        "rows": [],
        "dimensions": DIMENSIONS,
        "text": " ".join(
            filter(None, ["No model was evaluated.", failure_note(_get(tables, "failures"))])
        ),
        "parts": table(parts, []),
        "decision": table(chosen, []),
    }


def _scorecard_rows(card: pd.DataFrame) -> list[dict[str, Any]]:
    """One row per model (by modality, best overall first): its score cell per dimension and
    overall, each with whether it is the best."""
    rows = []
    for _, r in card.sort_values(["modality", "overall"], ascending=[True, False]).iterrows():
        cells = [
            (score_cell(r, dim), bool(r.get(f"{dim}_best", False)))
            for dim in [*DIMENSIONS, "overall"]
        ]
        rows.append({"model": r["model"], "modality": r.get("modality", ""), "cells": cells})
    return rows


def _formula(parts: pd.DataFrame) -> list[dict[str, Any]]:
    """Per dimension, its sub-measures as the score combines them (direction and weight)."""
    weights = (
        parts.drop_duplicates("submeasure").set_index("submeasure")["weight"].to_dict()
        if len(parts)
        else {}
    )
    return [
        {
            "dimension": d,
            "items": [
                f"{SUBMEASURES[n][2]} ({SUBMEASURES[n][1]}, weight {weights.get(n, 1.0):g})"
                for n in SUBMEASURES
                if SUBMEASURES[n][0] == d
            ],
        }
        for d in DIMENSIONS
    ]


def _decision_table(chosen: pd.DataFrame, constraint: str) -> dict[str, Any]:
    """The decision table: per task and system, accuracy, the paired test against the best,
    the cost under `constraint` and the recommendation."""
    return table(
        chosen,
        [
            ("task", "task", text),
            ("system", "system", text),
            ("n_train", "examples", count),
            ("*", "accuracy [95% interval]", accuracy_interval),
            ("p_vs_best", "p vs the best (Holm)", sci),
            ("tied", "tied with the best", text),
            ("cost", f"cost: {CONSTRAINTS[constraint][1]}", sci),
            ("chosen", "recommended", text),
            ("protocol_flag", "protocol check flagged", text),
        ],
    )


def _parts_table(parts: pd.DataFrame) -> dict[str, Any]:
    """The scorecard's sub-measures per model: measured, scaled and weighted."""
    return table(
        parts.sort_values(["dimension", "submeasure", "model"]),
        [
            ("model", "model", text),
            ("dimension", "dimension", text),
            ("submeasure", "sub-measure", text),
            ("kind", "kind", text),
            ("raw", "measured", sci),
            ("status", "status", text),
            ("source", "source table", text),
            ("scaled", "scaled 0–1", num(3)),
            ("weight", "weight", num(2)),
        ],
    )


def scorecard_view(tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    card = _get(tables, "scorecard")
    parts = _get(tables, "scorecard_parts")
    chosen = _get(tables, "decision")
    if card.empty:
        return _no_scorecard(tables, parts, chosen)
    rows = _scorecard_rows(card)
    formula = _formula(parts)
    constraint = str(chosen["constraint"].iloc[0]) if len(chosen) else "latency"
    return {
        "rows": rows,
        "dimensions": DIMENSIONS,
        "text": " ".join(
            filter(
                None,
                [
                    protocol_caveat(_get(tables, "protocol_check"), card["model"]),
                    recommendation(card, parts, chosen),
                    failure_note(_get(tables, "failures")),
                ],
            )
        ),
        "formula": formula,
        "constraint": f"{constraint} ({CONSTRAINTS[constraint][1]})",
        "decision": _decision_table(chosen, constraint),
        "parts": _parts_table(parts),
    }


def placements(history: pd.DataFrame) -> str:
    """Where the full fine-tunes ran and in which precision, as their histories record it
    (resolved on the machine that ran each job: ptmeval.compute)."""
    if history.empty or "device" not in history:
        return "no full fine-tune"
    runs = history.dropna(subset=["device"]).drop_duplicates(
        ["model", "task", "fraction", "seed", "init"]
    )
    if runs.empty:
        return "no full fine-tune"
    counts = runs.groupby(["device", "precision"]).size()
    return "; ".join(f"{d}, {p} ({n} runs)" for (d, p), n in counts.items())


def learning_curve_figures(tables: Tables, metric: str) -> dict[str, Any]:
    """One learning-curve figure per task, of ``metric``."""
    curve = _get(tables, "learning_curve")
    band = _get(tables, "curve_band")
    if curve.empty:
        return {}
    return {
        t: learning_curve_figure(curve, band, t, metric) for t in sorted(curve["task"].unique())
    }


def task_rows(tasks: pd.DataFrame) -> pd.DataFrame:
    """Per task: its modality, examples per split and number of classes."""
    if tasks.empty:
        return pd.DataFrame()
    return (
        tasks.pivot_table(
            index=["task", "modality"], columns="split", values="count", aggfunc="sum"
        )
        .reset_index()
        .assign(classes=lambda d: d["task"].map(tasks.groupby("task")["label"].nunique()))
    )


def provenance(tables: Tables, config_hash: str) -> dict[str, str]:
    """What made the page: versions, commit, config hash, this machine, where fine-tunes ran."""
    return {
        "ptmeval": __version__,
        "git commit": git_commit() or "unknown",
        "config hash": config_hash,
        **_versions(),
        "python": platform.python_version(),
        "report rendered on": ", ".join(f"{k}={v}" for k, v in hardware().items()),
        "full fine-tunes ran on": placements(_get(tables, "history")),
    }


def _environment() -> Environment:
    """The Jinja environment of the page's template (autoescaped)."""
    return Environment(
        loader=FileSystemLoader(TEMPLATE.parent),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _machines_table(tables: Tables) -> dict[str, Any]:
    """The machines the tables were made on."""
    return table(
        _get(tables, "machines"),
        [
            ("host", "host", text),
            ("system", "system", text),
            ("processor", "processor", text),
            ("cpu_count", "CPUs", text),
            ("gpu", "GPU", text),
            ("git_commit", "commit", text),
            ("ptmeval_version", "ptmeval", text),
            ("tables", "tables written", count),
            ("stages", "stages", text),
        ],
    )


def _failures_table(tables: Tables) -> dict[str, Any]:
    """The models whose jobs failed: where, why, and what was not run."""
    return table(
        _get(tables, "failures"),
        [
            ("model", "model", text),
            ("failed_stage", "failed in", text),
            ("reason", "reason", text),
            ("jobs", "jobs not run or failed", count),
            ("stages", "stages affected", text),
        ],
    )


def _stages_table(tables: Tables) -> dict[str, Any]:
    """Per stage: jobs, wall time and memory, against the estimate."""
    return table(
        _get(tables, "stage_times"),
        [
            ("stage", "stage", text),
            ("jobs", "jobs", count),
            ("wall_s", "wall time (s, summed)", num(1)),
            ("max_job_wall_s", "slowest job (s)", num(1)),
            ("max_rss_mb", "max RSS (MB)", num(0)),
            ("estimated_wall_s", "estimated (s)", num(1)),
            ("estimated_peak_mb", "estimated peak (MB)", num(0)),
        ],
    )


def render_report(
    tables: dict[str, pd.DataFrame],
    out_path: str | Path,
    title: str,
    config_hash: str,
    tables_dir: str | Path | None = None,
    metric: str = "accuracy",
) -> Path:
    """Render the HTML report to `out_path` from the aggregated tables; ``metric`` (the config's
    ``analysis.metric``) is the score the learning-curve figures plot."""
    results = _get(tables, "results")
    env = _environment()
    html = env.get_template(TEMPLATE.name).render(
        title=title,
        metric=metric,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        models=sorted(set(results["model"])) if len(results) else [],
        tasks=task_rows(_get(tables, "tasks")).to_dict("records"),
        figures=learning_curve_figures(tables, metric),
        cost_figure=cost_figure(_get(tables, "runtime")),
        scatter={
            p: fig
            for p in ("logme", "linear_probe_val_accuracy")
            if (fig := prediction_scatter(_get(tables, "prediction_points"), p)) is not None
        },
        heatmap=similarity_heatmap(_get(tables, "task_similarity")),
        matrix=significance_matrix(_get(tables, "pairwise")),
        t=sections(tables),
        method_notes=methods.summaries(_get(tables, "methods")),
        provenance=provenance(tables, config_hash),
        machines=_machines_table(tables),
        machines_differ=len(_get(tables, "machines")) > 1,
        scorecard=scorecard_view(tables),
        failures=_failures_table(tables),
        failed_runs=failed_runs(_get(tables, "difficulty")),
        undertrained_runs=undertrained_runs(_get(tables, "difficulty")),
        pareto=pareto_figures(_get(tables, "pareto")),
        stages=_stages_table(tables),
        tables_dir=Path(tables_dir).name if tables_dir else None,
        table_names=sorted(tables),
    )
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if tables_dir is not None:
        export_tables(tables, tables_dir)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    return out
