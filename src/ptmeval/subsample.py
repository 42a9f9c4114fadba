"""Stratified, nested training subsets: for one seed, every smaller subset is contained in
every larger one (prefixes of one stratified order), so learning curves vary only the size."""

from __future__ import annotations

import pandas as pd

from ptmeval.errors import DataError
from ptmeval.tasks import stratified_order


def subset_size(pool_size: int, fraction: float) -> int:
    """Examples in a subset: round(fraction × pool), at least 1."""
    return max(1, round(fraction * pool_size))


def subsample(data: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """Rows (`row_id`, `label`) of the training subset of size fraction × training pool."""
    if not 0 < fraction <= 1:
        raise DataError(f"fraction {fraction} is out of range (0, 1]")
    pool = data.loc[data["split"] == "train", ["row_id", "label"]].sort_values("row_id")
    order = stratified_order(pool["label"].to_numpy(), seed)
    chosen = pool.iloc[order[: subset_size(len(pool), fraction)]]
    out = chosen.sort_values("row_id").reset_index(drop=True)
    out["fraction"] = fraction
    out["seed"] = seed
    return out
