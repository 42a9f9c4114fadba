"""`aggregate`: gather the per-job tables into the tidy tables the report is rendered from, and
derive the statistics: learning-curve fits, data needed, transfer gain, training difficulty,
paired comparisons and rank intervals, transferability checked against reality, task
similarity, hardware verdicts and the compatibility matrix."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ptmeval import comparison, scaling, verdicts
from ptmeval.io import read_table
from ptmeval.transfer import frechet_diag, score_predictions

log = logging.getLogger(__name__)

KEYS = ["model", "task", "init", "method"]
PREDICTORS = [
    "logme",
    "h_score",
    "leep",
    "nce",
    "knn_accuracy",
    "linear_probe_val_accuracy",
    "params_total",
    "flops_forward_per_sample",
]
NAIVE = {"linear_probe_val_accuracy", "params_total", "flops_forward_per_sample"}


def concat_tables(paths: Iterable[str | Path]) -> pd.DataFrame:
    frames = [read_table(p) for p in paths]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def learning_curves(results: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation, min and max of each metric over seeds, per training size."""
    if results.empty:
        return pd.DataFrame()
    grouped = results.groupby([*KEYS, "fraction", "n_train", "metric"], as_index=False)["value"]
    curve = grouped.agg(mean="mean", std="std", min="min", max="max", n_seeds="count")
    curve["std"] = curve["std"].fillna(0.0)
    return curve.sort_values([*KEYS, "metric", "n_train"]).reset_index(drop=True)


def fine_tune_cost(history: pd.DataFrame) -> pd.DataFrame:
    """Per job: final epoch's wall time, samples seen and divergence."""
    if history.empty:
        return pd.DataFrame()
    last = history.sort_values("epoch").groupby([*KEYS, "fraction", "seed"], as_index=False).last()
    return last[
        [*KEYS, "fraction", "seed", "n_train", "epoch", "wall_s", "samples_seen", "diverged"]
    ]


def final_scores(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean test score per model × task at the largest training size, pretrained init."""
    sub = results[(results["metric"] == metric) & (results["init"] == "pretrained")]
    if sub.empty:
        return pd.DataFrame(columns=["model", "task", "score"])
    largest = sub.groupby(["model", "task"])["n_train"].transform("max")
    top = sub[sub["n_train"] == largest]
    return (
        top.groupby(["model", "task"], as_index=False)["value"]
        .mean()
        .rename(columns={"value": "score"})
    )


def transfer_prediction(
    transfer: pd.DataFrame,
    profile: pd.DataFrame,
    results: pd.DataFrame,
    metric: str,
    n_boot: int,
) -> pd.DataFrame:
    """Weighted Kendall τ between each transferability score (and each naive baseline) and the
    fine-tuned test score, per task and pooled over tasks (scores ranked within each task)."""
    if transfer.empty or results.empty:
        return pd.DataFrame()
    table = transfer.merge(final_scores(results, metric), on=["model", "task"], how="inner")
    if not profile.empty:
        table = table.merge(
            profile[["model", "params_total", "flops_forward_per_sample"]], on="model", how="left"
        )
    rows = []
    for predictor in PREDICTORS:
        if predictor not in table or table[predictor].isna().all():
            continue
        for task, group in table.groupby("task"):
            res = score_predictions(
                dict(zip(group["model"], group[predictor], strict=True)),
                dict(zip(group["model"], group["score"], strict=True)),
                n_boot=n_boot,
            )
            rows.append({"predictor": predictor, "task": task, **res})
        ranked = table.assign(
            p=table.groupby("task")[predictor].rank(pct=True),
            s=table.groupby("task")["score"].rank(pct=True),
        )
        keys = [f"{m}@{t}" for m, t in zip(ranked["model"], ranked["task"], strict=True)]
        res = score_predictions(
            dict(zip(keys, ranked["p"], strict=True)),
            dict(zip(keys, ranked["s"], strict=True)),
            n_boot=n_boot,
        )
        rows.append({"predictor": predictor, "task": "pooled (ranks within task)", **res})
    out = pd.DataFrame(rows)
    if not out.empty:
        out["kind"] = np.where(out["predictor"].isin(NAIVE), "naive baseline", "transferability")
    return out


def task_similarity(transfer: pd.DataFrame) -> pd.DataFrame:
    """Per model: Fréchet distance (diagonal covariances) between its frozen-feature
    distributions on every pair of tasks."""
    rows = []
    if transfer.empty or "feature_mean" not in transfer:
        return pd.DataFrame()
    for model, group in transfer.groupby("model"):
        for (_, a), (_, b) in combinations(group.iterrows(), 2):
            rows.append(
                {
                    "model": model,
                    "task_a": a["task"],
                    "task_b": b["task"],
                    "frechet_distance": frechet_diag(
                        a["feature_mean"], a["feature_var"], b["feature_mean"], b["feature_var"]
                    ),
                    "feature_dim": len(a["feature_mean"]),
                }
            )
    return pd.DataFrame(rows)


def comparisons(
    predictions: pd.DataFrame, n_boot: int, alpha: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Paired tests between every pair of systems and rank intervals, per task."""
    pairs, ranks = [], []
    for task in sorted(predictions["task"].unique()) if len(predictions) else []:
        try:
            pairs.append(
                comparison.pairwise_comparisons(predictions, task, n_boot=n_boot, alpha=alpha)
            )
            ranks.append(comparison.rank_intervals(predictions, task, n_boot=n_boot, alpha=alpha))
        except ValueError as err:  # a finding, e.g. systems evaluated on different rows
            log.warning("comparisons on %s skipped: %s", task, err)
    cat = lambda frames: pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()  # noqa: E731
    return cat(pairs), cat(ranks)


def aggregate(
    metrics: Iterable[str | Path],
    histories: Iterable[str | Path],
    profiles: Iterable[str | Path],
    manifests: Iterable[str | Path],
    task_summaries: Iterable[str | Path],
    predictions: Iterable[str | Path] = (),
    runtimes: Iterable[str | Path] = (),
    exports: Iterable[str | Path] = (),
    transfers: Iterable[str | Path] = (),
    settings: dict[str, Any] | None = None,
) -> dict[str, pd.DataFrame]:
    """The report's tables, by name."""
    settings = settings or {}
    metric = settings.get("metric", "accuracy")
    n_boot = int(settings.get("n_boot", 1000))
    alpha = float(settings.get("alpha", 0.05))
    results = concat_tables(metrics)
    history = concat_tables(histories)
    profile = concat_tables(profiles)
    tasks = concat_tables(task_summaries)
    runtime = concat_tables(runtimes)
    export = concat_tables(exports)
    transfer = concat_tables(transfers)
    preds = concat_tables(predictions)
    classes = tasks.groupby("task")["label"].nunique().to_dict() if len(tasks) else {}
    fits = band = needed = gain = effective = process = difficulty = pd.DataFrame()
    if len(results):
        fits = scaling.learning_curve_fits(results, metric=metric, n_boot=min(n_boot, 500))
        band = scaling.curve_band(results, fits, metric=metric)
        target = settings.get("target_score")
        needed = scaling.data_needed(results, metric=metric, target=target, n_boot=min(n_boot, 500))
        gain = scaling.transfer_gain(results, metric=metric, n_boot=n_boot)
        effective = scaling.effective_data_transferred(results, fits, metric=metric)
        process = scaling.finetune_process(history, results, metric=metric, n_classes=classes)
        difficulty = scaling.training_difficulty(process)
    pairwise, ranks = comparisons(preds, n_boot=n_boot, alpha=alpha)
    models = settings.get("models") or dict.fromkeys(sorted(results["model"].unique()), "")
    return {
        "results": results,
        "learning_curve": learning_curves(results),
        "history": history,
        "finetune_cost": fine_tune_cost(history),
        "profile": profile,
        "manifest": concat_tables(manifests),
        "tasks": tasks,
        "runtime": runtime,
        "accessibility": verdicts.accessibility(runtime, settings.get("hardware", [])),
        "export": export,
        "compatibility": verdicts.compatibility(models, results, export),
        "structure": verdicts.structure(profile),
        "fits": fits,
        "curve_band": band,
        "data_needed": needed,
        "transfer_gain": gain,
        "effective_data": effective,
        "process": process,
        "difficulty": difficulty,
        "pairwise": pairwise,
        "ranks": ranks,
        "transfer": transfer,
        "transfer_prediction": transfer_prediction(transfer, profile, results, metric, n_boot),
        "task_similarity": task_similarity(transfer),
    }
