"""Task sources (one registry) and the fixed, stratified, seeded train/validation/test split."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import pandas as pd

from ptmeval._names import unknown_name_message
from ptmeval.config import FileData, HFDatasetData, ImageFolderData, PackagedData, TaskEntry
from ptmeval.errors import DataError

log = logging.getLogger(__name__)

Loader = Callable[[object], pd.DataFrame]
SOURCES: dict[str, Loader] = {}


def register_source(kind: str) -> Callable[[Loader], Loader]:
    """Register a loader for a task-source kind. A loader returns a frame with a `text` or
    `image` (encoded bytes) column, `label_name`, and optionally `source_split`."""

    def wrap(fn: Loader) -> Loader:
        SOURCES[kind] = fn
        return fn

    return wrap


def load_source(source: PackagedData | FileData | ImageFolderData | HFDatasetData) -> pd.DataFrame:
    from ptmeval.tasks import _files, _packaged  # noqa: F401  (register the loaders)

    if source.kind not in SOURCES:
        raise DataError(unknown_name_message("task source kind", source.kind, SOURCES))
    return SOURCES[source.kind](source)


def stratified_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """A permutation of `range(len(labels))` whose every prefix is stratified.

    Each class's members are shuffled and given keys (i + u) / n_c (u a per-class random
    offset); sorting by key interleaves the classes so that a prefix of length n holds
    round(n · p_c) ± 1 members of class c. Taking prefixes of one order gives nested subsets.
    """
    rng = np.random.default_rng(seed)
    keys = np.empty(len(labels), dtype=np.float64)
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        rng.shuffle(members)
        keys[members] = (np.arange(len(members)) + rng.uniform()) / len(members)
    return np.argsort(keys, kind="stable")


def split_task(frame: pd.DataFrame, task: TaskEntry, seed: int) -> pd.DataFrame:
    """Assign every kept row to train/validation/test; rows beyond the caps are dropped."""
    names = sorted(frame["label_name"].astype(str).unique())
    if len(names) < 2:
        raise DataError(f"tasks '{task.slug}': only one class ({names[0] if names else 'none'})")
    label_of = {n: i for i, n in enumerate(names)}
    frame = frame.reset_index(drop=True).copy()
    frame["label_name"] = frame["label_name"].astype(str)
    frame["label"] = frame["label_name"].map(label_of).astype("int64")
    frame["row_id"] = np.arange(len(frame), dtype=np.int64)
    has_split = "source_split" in frame and (frame["source_split"] == "test").any()
    if has_split:
        test_pool = frame.index[frame["source_split"] == "test"].to_numpy()
        rest = frame.index[frame["source_split"] != "test"].to_numpy()
    else:
        test_pool = rest = frame.index.to_numpy()
    test = test_pool[stratified_order(frame["label"].to_numpy()[test_pool], seed)][: task.test_size]
    if not has_split:
        rest = np.setdiff1d(rest, test)
    order = rest[stratified_order(frame["label"].to_numpy()[rest], seed + 1)]
    val, train = (
        order[: task.val_examples],
        order[task.val_examples : task.val_examples + task.max_train],
    )
    if len(train) < 2 or len(test) < 2:
        raise DataError(
            f"tasks '{task.slug}': {len(frame)} examples are too few for test_size "
            f"{task.test_size} + val_size {task.val_examples} + a training pool"
        )
    missing = sorted(set(frame.loc[test, "label_name"]) - set(frame.loc[train, "label_name"]))
    if missing:
        counts = frame["label_name"].value_counts()
        detail = ", ".join(
            f"'{m}' ({counts[m]} example{'s' * int(counts[m] != 1)})" for m in missing[:5]
        )
        raise DataError(
            f"tasks '{task.slug}': class {detail} has no training example with test_size "
            f"{task.test_size}, val_size {task.val_examples}, max_train {task.max_train}; "
            "raise max_train or drop the class"
        )
    frame["split"] = None
    frame.loc[train, "split"] = "train"
    frame.loc[val, "split"] = "validation"
    frame.loc[test, "split"] = "test"
    kept = frame.loc[frame["split"].notna()].drop(columns=["source_split"], errors="ignore")
    return kept.sort_values(["split", "row_id"]).reset_index(drop=True)


def prepare_task(task: TaskEntry, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Load a task's data and fix its split; return (data, per-split class counts)."""
    raw = load_source(task.source)
    if "label_name" not in raw:
        raise DataError(f"tasks '{task.slug}': the loader returned no labels")
    data = split_task(raw, task, seed)
    summary = (
        data.groupby(["split", "label", "label_name"], as_index=False)
        .size()
        .rename(columns={"size": "count"})
    )
    summary.insert(0, "task", task.slug)
    summary["modality"] = task.modality
    log.info(
        "task %s: %d classes; %s",
        task.slug,
        data["label"].nunique(),
        data["split"].value_counts().to_dict(),
    )
    return data, summary
