"""`render_report`: one self-contained HTML page from the aggregated tables (cache only).

The page has the models and tasks, then one section per dimension (integrability,
accessibility, scalability, interoperability, reusability), the full results and provenance.
Every table is built here as formatted strings; the template escapes every one of them.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
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
from ptmeval.verdicts import PROTOCOL_MARK, failed_runs, protocol_caveat

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


def interval(lo: str, hi: str, digits: int = 3) -> Callable[[pd.Series], str]:
    def fmt(row: pd.Series) -> str:
        if _missing(row.get(lo)) or _missing(row.get(hi)):
            return "–"
        return f"[{float(row[lo]):.{digits}f}, {float(row[hi]):.{digits}f}]"

    return fmt


def seed_range(row: pd.Series) -> str:
    if _missing(row.get("score")):
        return "–"
    score = f"{float(row['score']):.3f}"
    if int(row.get("n_seeds") or 0) < 2:
        return f"{score} (1 seed)"
    return f"{score} ({float(row['score_min']):.3f}–{float(row['score_max']):.3f})"


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


def deployment_columns(frame: pd.DataFrame) -> list[tuple[str, str, Any]]:
    """The deployment table's columns: the timings present (one pair per batch size)."""
    timed = sorted({int(c.split("_")[1][1:]) for c in frame.columns if c.startswith("latency_b")})
    columns: list[tuple[str, str, Any]] = [
        ("model", "model", text),
        ("task", "task", text),
        ("variant", "variant", text),
        ("score", "score", num(3)),
        ("diff", "Δ vs fp32", num(3)),
        ("*", "Δ 95% CI (paired)", interval("diff_lo", "diff_hi")),
        ("mcnemar_p", "McNemar p", sci),
        ("agreement", "same prediction as fp32", pct),
        ("*", "accuracy gate", gate_verdict),
    ]
    for b in timed:
        columns.append((f"latency_b{b}_p50_ms", f"b{b} p50 (ms)", num(2)))
        columns.append((f"latency_b{b}_p90_ms", f"b{b} p90 (ms)", num(2)))
    columns += [
        ("peak_rss_mb", "peak memory (MB)", num(0)),
        ("disk_mb", "on disk (MB)", num(1)),
    ]
    return columns


def cv_with_flag(row: pd.Series) -> str:
    """A runtime row's coefficient of variation, marked when it stayed high after re-measuring
    (`profile.max_cv`): the latency is then uncertain, and the machine's load is beside it."""
    cv = num(3)(row.get("latency_cv"))
    if bool(row.get("noisy", False)) is True:
        return f"{cv} ⚠ noisy"
    return cv


def accuracy_interval(row: pd.Series) -> str:
    """'0.920 [0.875, 0.965]': a system's accuracy and its bootstrap interval."""
    return f"{num(3)(row.get('accuracy'))} {interval('accuracy_lo', 'accuracy_hi')(row)}"


def score_with_flags(row: pd.Series) -> str:
    """Mean test score of a training-difficulty row, marked ⚠ when some runs collapsed."""
    score = num(3)(row.get("test_score_mean"))
    collapsed = row.get("n_collapsed")
    if not _missing(collapsed) and int(collapsed) > 0:
        score += f" ⚠ collapsed {int(collapsed)}/{int(row['n_jobs'])}"
    return score


def chosen_hparam(row: pd.Series) -> str:
    """The chosen learning rate or C of a difficulty row, 'not tuned' when it was fixed."""
    if _missing(row.get("hparam_value")):
        return "–"
    value = f"{row['hparam']} {sci(row['hparam_value'])}"
    return value if bool(row.get("hparam_tuned")) else f"{value} (not tuned)"


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


def sections(tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """Every table of the page, formatted."""
    t = lambda name: _get(tables, name)  # noqa: E731
    profile = t("profile")
    runtime = t("runtime")
    ok_runtime = runtime[runtime["status"] == "ok"] if len(runtime) else runtime
    fits = t("fits")
    return {
        "size": table(
            profile,
            [
                ("model", "model", text),
                ("method", "method", text),
                ("params_total", "parameters (backbone + task head)", count),
                ("params_backbone", "backbone", count),
                ("*", "task head", task_head),
                ("params_source_head", "source head", count),
                ("source_head", "source head is", text),
                ("params_published_total", "published size (backbone + source head)", count),
                ("params_trainable_full", "trainable (full)", count),
                ("params_trainable_linear_probe", "trainable (linear probe)", count),
                ("params_trainable_lora", "trainable (LoRA)", count),
                ("bytes_on_disk_by_format", "on disk, by format/dtype", text),
                ("safetensors", "safetensors", text),
                ("weights_fp32_bytes", "in memory fp32 (MB)", mega),
                ("weights_bf16_bytes", "bf16 (MB)", mega),
                ("weights_int8_bytes", "int8 dyn. quant. (MB)", mega),
                ("license", "licence (as stated)", text),
            ],
        ),
        "compute": table(
            profile,
            [
                ("model", "model", text),
                ("flops_input", "input", text),
                ("flops_forward_per_sample", "forward GFLOPs", giga),
                ("flops_train_step_per_sample", "train step GFLOPs", giga),
                ("flops_analytical_forward", "analytical forward GFLOPs", giga),
                ("flops_vs_analytical_pct", "counted vs analytical (%)", num(2)),
                ("uncounted_time_share", "CPU time in uncounted ops", pct),
                ("uncounted_operators", "largest uncounted ops", text),
            ],
        ),
        "export": table(
            t("export"),
            [
                ("model", "model", text),
                ("task", "task", text),
                ("standard_api", "standard API", text),
                ("torch_export", "torch.export", text),
                ("onnx_export", "ONNX export", text),
                ("onnxruntime", "onnxruntime", text),
                ("max_abs_diff", "max |Δlogit|", sci),
                ("max_rel_diff", "max rel. Δ", sci),
                ("accuracy_change", "Δ accuracy", num(4)),
                ("macro_f1_change", "Δ macro-F1", num(4)),
                ("onnx_vs_eager_b1", "ORT/eager latency b1", num(2)),
                ("onnx_vs_eager_b32", "ORT/eager latency b32", num(2)),
            ],
        ),
        "deployment": table(t("deployment"), deployment_columns(t("deployment"))),
        "difficulty": table(
            t("difficulty"),
            [
                ("model", "model", text),
                ("task", "task", text),
                ("init", "init", text),
                ("method", "method", text),
                ("n_jobs", "jobs", count),
                ("*", "mean test score", score_with_flags),
                ("chance", "chance", num(3)),
                ("top_pred_share", "top predicted class (max share)", pct),
                ("median_total_wall_s", "median fine-tune time (s)", num(1)),
                ("median_wall_s_to_level", "median time to 90% of final (s)", num(1)),
                ("median_samples_to_level", "samples to 90% of final", count),
                ("seed_std", "spread over seeds (std)", num(3)),
                ("at_chance_rate", "runs at chance", pct),
                ("diverged_rate", "diverged runs", pct),
                ("*", "chosen lr / C", chosen_hparam),
                ("hparam_spread", "spread over the grid (val.)", num(3)),
            ],
        ),
        "methods": table(
            t("methods"),
            [
                ("base", "model", text),
                ("task", "task", text),
                ("method", "method", text),
                ("n_train", "examples", count),
                ("*", "test score (seeds: min–max)", seed_range),
                ("*", "95% interval (test examples)", interval("score_lo", "score_hi")),
                ("*", "vs the best method (paired)", versus_best),
                ("trainable_params", "trainable", count),
                ("task_mb", "MB per extra task", num(2)),
                ("finetune_s", "fine-tune (s, mean)", num(1)),
                ("train_step_ms", "train step (ms)", num(1)),
                ("train_batch", "at batch", count),
                ("train_peak_mb", "train peak RSS (MB)", num(0)),
            ],
        ),
        "tuning": table(
            t("tuning"),
            [
                ("model", "model", text),
                ("task", "task", text),
                ("init", "init", text),
                ("method", "method", text),
                ("n_train", "examples", count),
                ("param", "hyperparameter", text),
                ("value", "value", sci),
                ("val_score", "best validation score", num(3)),
                ("val_loss", "its validation loss", num(3)),
                ("best_step", "at step", count),
                ("stop_reason", "stopped by", text),
                ("chosen", "chosen", text),
            ],
        ),
        "runtime": table(
            ok_runtime.sort_values(["model", "device_kind", "mode", "batch_size"])
            if len(ok_runtime)
            else ok_runtime,
            [
                ("model", "model", text),
                ("device", "device", text),
                ("mode", "mode", text),
                ("batch_size", "batch", count),
                ("threads", "threads", count),
                ("latency_p50_ms", "p50 (ms)", num(1)),
                ("latency_p90_ms", "p90 (ms)", num(1)),
                ("*", "CV", cv_with_flag),
                ("load_1min", "machine load (1 min)", num(2)),
                ("attempts", "attempts", count),
                ("repeats", "repeats", count),
                ("throughput_per_s", "examples/s", num(1)),
                ("peak_rss_mb", "peak RSS (MB)", num(0)),
                ("gpu_peak_mb", "GPU peak (MB)", num(0)),
            ],
        ),
        "runtime_failed": table(
            runtime[runtime["status"] != "ok"] if len(runtime) else runtime,
            [
                ("model", "model", text),
                ("mode", "mode", text),
                ("batch_size", "batch", count),
                ("reason", "reason", text),
            ],
        ),
        "accessibility": table(
            t("accessibility"), [("model", "model", text), ("verdict", "verdict", text)]
        ),
        "data_needed": table(
            t("data_needed"),
            [
                ("model", "model", text),
                ("task", "task", text),
                ("init", "init", text),
                ("kind", "kind", text),
                ("level", "level", num(2)),
                ("target_score", "target score", num(3)),
                ("*", "examples needed", examples_needed),
                ("*", "95% CI", interval("n_lo", "n_hi", 0)),
                ("observed_at", "reached in the data at", count),
                ("extrapolated", "extrapolated", text),
                ("reachable", "reachable", text),
                ("never_reached_reason", "why never reached", text),
                ("reason", "fit", text),
            ],
        ),
        "fits": table(
            fits,
            [
                ("model", "model", text),
                ("task", "task", text),
                ("init", "init", text),
                ("n_sizes", "sizes", count),
                ("a", "a (err floor)", num(3)),
                ("b", "b", num(3)),
                ("c", "c (exponent)", num(3)),
                ("*", "c 95% CI", interval("c_lo", "c_hi")),
                ("extrap_error", "extrapolation error", num(3)),
                ("trustworthy", "trustworthy", text),
                ("reason", "why", text),
            ],
        ),
        "transfer_gain": table(
            t("transfer_gain"),
            [
                ("model", "model", text),
                ("task", "task", text),
                ("n_train", "examples", count),
                ("mean_pretrained", "pretrained", num(3)),
                ("mean_scratch", "scratch", num(3)),
                ("gain", "gain", num(3)),
                ("*", "95% CI", interval("gain_lo", "gain_hi")),
            ],
        ),
        "effective_data": table(
            t("effective_data"),
            [
                ("model", "model", text),
                ("task", "task", text),
                ("n_train", "examples", count),
                ("effective_data", "extra scratch examples it is worth", count),
                ("data_multiplier", "× data", num(1)),
                ("extrapolated", "extrapolated", text),
                ("reachable", "reachable", text),
                ("reason", "note", text),
            ],
        ),
        "throughput": table(
            ok_runtime[ok_runtime["mode"] == "train_step"] if len(ok_runtime) else ok_runtime,
            [
                ("model", "model", text),
                ("device", "device", text),
                ("batch_size", "batch", count),
                ("throughput_per_s", "training examples/s", num(1)),
            ],
        ),
        "structure": table(
            t("structure"),
            [
                (
                    c,
                    c.replace("_", " "),
                    count
                    if c
                    in {
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
                    else text,
                )
                for c in t("structure").columns
            ],
        ),
        "compatibility": table(
            t("compatibility"),
            [
                ("model", "model", text),
                ("eager_pytorch", "PyTorch eager", text),
                ("torch_export", "torch.export", text),
                ("onnx_onnxruntime", "ONNX + onnxruntime", text),
                ("deepspeed_finetune", "DeepSpeed fine-tune", text),
            ],
        ),
        "pairwise": table(
            t("pairwise"),
            [
                ("task", "task", text),
                ("system_a", "system A", text),
                ("system_b", "system B", text),
                ("n_train_a", "n A", count),
                ("n_train_b", "n B", count),
                ("acc_a", "acc A", num(3)),
                ("acc_b", "acc B", num(3)),
                ("diff", "A − B", num(3)),
                ("*", "95% CI", interval("diff_lo", "diff_hi")),
                ("cohens_h", "Cohen's h", num(2)),
                ("mcnemar_p_holm", "McNemar p (Holm)", sci),
                ("bootstrap_p_holm", "bootstrap p (Holm)", sci),
                ("significant", "significant", text),
            ],
        ),
        "ranks": table(
            t("ranks"),
            [
                ("task", "task", text),
                ("system", "system", text),
                ("n_train", "examples", count),
                ("accuracy", "accuracy", num(3)),
                ("*", "accuracy 95% CI", interval("accuracy_lo", "accuracy_hi")),
                ("rank", "rank", num(1)),
                ("*", "rank interval", interval("rank_lo", "rank_hi", 0)),
                ("p_best", "P(best)", num(2)),
            ],
        ),
        "transfer": table(
            t("transfer"),
            [
                ("model", "model", text),
                ("task", "task", text),
                ("n_examples", "examples", count),
                ("logme", "LogME", num(3)),
                ("h_score", "H-score", num(3)),
                ("leep", "LEEP", num(3)),
                ("nce", "NCE", num(3)),
                ("knn_accuracy", "k-NN acc.", num(3)),
                ("linear_probe_val_accuracy", "linear probe (val)", num(3)),
                ("scores_wall_s", "time (s)", num(2)),
                ("note", "note", text),
            ],
        ),
        "transfer_prediction": table(
            t("transfer_prediction"),
            [
                ("predictor", "predictor", text),
                ("kind", "kind", text),
                ("task", "task", text),
                ("n_models", "items", count),
                ("tau", "weighted τ", num(2)),
                ("*", "95% CI", interval("tau_lo", "tau_hi", 2)),
                ("note", "note", text),
            ],
        ),
        "reuse": table(
            t("reuse"),
            [
                ("model", "model", text),
                ("tasks", "tasks", count),
                ("mean_score", "mean score", num(3)),
                ("mean_normalised", "mean normalised score", num(3)),
                ("mean_transfer_gain", "mean transfer gain (largest size)", num(3)),
            ],
        ),
        "prediction_cost": table(
            t("prediction_cost"),
            [
                ("model", "model", text),
                ("task", "task", text),
                ("features_wall_s", "feature extraction (s)", num(1)),
                ("scores_wall_s", "scores (s)", num(2)),
                ("shared_features", "features shared with the fine-tunes", text),
                ("finetune_wall_s", "fine-tunes predicted (s, summed)", num(1)),
                ("cost_ratio", "prediction / fine-tuning", pct),
            ],
        ),
        "similarity_vs_gain": table(
            t("similarity_vs_gain"),
            [
                ("model", "model", text),
                ("tasks", "tasks", count),
                ("spearman_rho", "Spearman ρ (distance vs gain)", num(2)),
                ("p_value", "p", sci),
                ("note", "note", text),
            ],
        ),
        "similarity": table(
            t("task_similarity"),
            [
                ("model", "model", text),
                ("task_a", "task", text),
                ("task_b", "task", text),
                ("frechet_distance", "Fréchet distance (diag.)", num(2)),
            ],
        ),
        "protocol_check": table(
            t("protocol_check"),
            [
                ("model", "model", text),
                ("task", "task", text),
                ("n_train", "examples", count),
                ("metric", "metric", text),
                ("score", "full fine-tune", num(3)),
                ("*", "95% CI", interval("score_lo", "score_hi")),
                ("frozen_score", "frozen features (linear probe)", num(3)),
                ("difference", "difference", num(3)),
                ("verdict", "verdict", text),
            ],
        ),
        "results": table(
            results_table(t("learning_curve"), t("protocol_check")),
            [
                ("task", "task", text),
                ("model", "model", text),
                ("init", "init", text),
                ("method", "method", text),
                ("n_train", "examples", count),
                ("n_seeds", "seeds", count),
                ("accuracy", "accuracy", text),
                ("macro_f1", "macro-F1", text),
                ("ece", "ECE", text),
            ],
        ),
    }


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


def scorecard_view(tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    card = _get(tables, "scorecard")
    parts = _get(tables, "scorecard_parts")
    chosen = _get(tables, "decision")
    if card.empty:
        return {
            "rows": [],
            "dimensions": DIMENSIONS,
            "text": " ".join(
                filter(None, ["No model was evaluated.", failure_note(_get(tables, "failures"))])
            ),
            "parts": table(parts, []),
            "decision": table(chosen, []),
        }
    rows = []
    for _, r in card.sort_values(["modality", "overall"], ascending=[True, False]).iterrows():
        cells = [
            (score_cell(r, dim), bool(r.get(f"{dim}_best", False)))
            for dim in [*DIMENSIONS, "overall"]
        ]
        rows.append({"model": r["model"], "modality": r.get("modality", ""), "cells": cells})
    weights = (
        parts.drop_duplicates("submeasure").set_index("submeasure")["weight"].to_dict()
        if len(parts)
        else {}
    )
    formula = [
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
        "decision": table(
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
        ),
        "parts": table(
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
        ),
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
    curve = _get(tables, "learning_curve")
    band = _get(tables, "curve_band")
    tasks = _get(tables, "tasks")
    results = _get(tables, "results")
    figures = (
        {t: learning_curve_figure(curve, band, t, metric) for t in sorted(curve["task"].unique())}
        if len(curve)
        else {}
    )
    task_rows = (
        tasks.pivot_table(
            index=["task", "modality"], columns="split", values="count", aggfunc="sum"
        )
        .reset_index()
        .assign(classes=lambda d: d["task"].map(tasks.groupby("task")["label"].nunique()))
        if len(tasks)
        else pd.DataFrame()
    )
    env = Environment(
        loader=FileSystemLoader(TEMPLATE.parent),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    html = env.get_template(TEMPLATE.name).render(
        title=title,
        metric=metric,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        models=sorted(set(results["model"])) if len(results) else [],
        tasks=task_rows.to_dict("records"),
        figures=figures,
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
        provenance={
            "ptmeval": __version__,
            "git commit": git_commit() or "unknown",
            "config hash": config_hash,
            **_versions(),
            "python": platform.python_version(),
            "report rendered on": ", ".join(f"{k}={v}" for k, v in hardware().items()),
            "full fine-tunes ran on": placements(_get(tables, "history")),
        },
        machines=table(
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
        ),
        machines_differ=len(_get(tables, "machines")) > 1,
        scorecard=scorecard_view(tables),
        failures=table(
            _get(tables, "failures"),
            [
                ("model", "model", text),
                ("failed_stage", "failed in", text),
                ("reason", "reason", text),
                ("jobs", "jobs not run or failed", count),
                ("stages", "stages affected", text),
            ],
        ),
        failed_runs=failed_runs(_get(tables, "difficulty")),
        pareto=pareto_figures(_get(tables, "pareto")),
        stages=table(
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
        ),
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
