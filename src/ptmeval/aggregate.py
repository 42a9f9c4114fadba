"""`aggregate`: gather the per-job tables into the tidy tables the report is rendered from."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from ptmeval.io import read_table

KEYS = ["model", "task", "init", "method"]


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


def aggregate(
    metrics: Iterable[str | Path],
    histories: Iterable[str | Path],
    profiles: Iterable[str | Path],
    manifests: Iterable[str | Path],
    task_summaries: Iterable[str | Path],
) -> dict[str, pd.DataFrame]:
    """The report's tables, by name."""
    results = concat_tables(metrics)
    history = concat_tables(histories)
    return {
        "results": results,
        "learning_curve": learning_curves(results),
        "history": history,
        "finetune_cost": fine_tune_cost(history),
        "profile": concat_tables(profiles),
        "manifest": concat_tables(manifests),
        "tasks": concat_tables(task_summaries),
    }
