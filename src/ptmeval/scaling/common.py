"""What the scaling modules share: the table keys, the thresholds, the input checks, the
seeded generator per curve and the percentile band of bootstrap replicates."""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

KEYS = ["model", "task", "init", "method"]
PAIR_KEYS = ["model", "task", "method"]
JOB_KEYS = [*KEYS, "fraction", "seed"]
SCORE_METRICS = ("accuracy", "macro_f1")

A_BOUNDS = (0.0, 1.0)
C_BOUNDS = (0.01, 3.0)
B_ZERO = 1e-6  # centred scale B at or below this: no decay
BOUND_TOL = 1e-3  # relative to the width of c's range
DEFAULT_F_SCALE = 0.02
MIN_FIT_POINTS = 3
MIN_SIZES = 4
MONOTONE_Z = 2.0
MONOTONE_MIN_DROP = 0.01
EXTRAP_TOL = 0.05
COLLAPSE_SHARE = 0.95  # top predicted class on at least this share of test rows: collapsed
CHANCE_TOL = 1e-9  # a score within this of chance counts as at chance (float round-off)
CI_PERCENTILES = (2.5, 97.5)
EDGE = 1e-6  # relative slack when comparing a computed size with an observed one


def check_columns(frame: pd.DataFrame, needed: Sequence[str], name: str) -> None:
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks column(s) {', '.join(missing)}")


def check_score_metric(metric: str) -> None:
    if metric not in SCORE_METRICS:
        raise ValueError(
            f"learning curves need a score metric ({', '.join(SCORE_METRICS)}), got '{metric}'"
        )


def seed_values(results: pd.DataFrame, metric: str, keys: Sequence[str]) -> pd.DataFrame:
    """One finite value per key x n_train x seed (duplicates averaged)."""
    check_columns(results, [*keys, "n_train", "seed", "metric", "value"], "results")
    sub = results[results["metric"] == metric]
    sub = sub[np.isfinite(sub["value"].astype(float))]
    if sub.empty:
        return pd.DataFrame(columns=[*keys, "n_train", "seed", "value"])
    grouped = sub.groupby([*keys, "n_train", "seed"], as_index=False, sort=True)["value"]
    return grouped.mean()


def key_rng(seed: int, key: Sequence[Any]) -> np.random.Generator:
    tag = zlib.crc32("\x1f".join(str(k) for k in key).encode("utf-8"))
    return np.random.default_rng([int(seed), tag])


def percentile_band(values: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """2.5 / 97.5 percentiles ignoring NaN; +inf values (never reached) are order statistics,
    and a bound that is infinite is returned as NaN (never as infinity)."""
    values = np.asarray(values, dtype=float)
    if values.shape[axis] == 0:
        shape = np.delete(values.shape, axis)
        return np.full(shape, np.nan), np.full(shape, np.nan)
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices give NaN
        if np.isinf(values).any():  # order statistics: no inf - inf interpolation
            lo, hi = np.nanpercentile(values, CI_PERCENTILES, axis=axis, method="inverted_cdf")
        else:
            lo, hi = np.nanpercentile(values, CI_PERCENTILES, axis=axis)
    lo = np.where(np.isfinite(lo), lo, np.nan)
    hi = np.where(np.isfinite(hi), hi, np.nan)
    return lo, hi


def chance_of(task: Any, chance: float | Mapping[str, float] | None) -> float:
    """The chance score of ``task`` from a float for all tasks or a mapping task -> chance."""
    if chance is None:
        return float("nan")
    value = chance.get(str(task)) if isinstance(chance, Mapping) else chance
    return float(value) if value is not None else float("nan")
