"""Adapting a model to a training subset: one loop (`loop`) with callbacks, and one strategy per
adaptation method — full fine-tuning on plain PyTorch (`full`) or DeepSpeed (`ds_engine`), the
linear probe on frozen features (`probe`), classical baselines (`classical`) — and the
hyperparameter selection on validation that they share (`tune`). Every strategy writes the same
history table (one row per validation point)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ptmeval.adapters import get_spec
from ptmeval.errors import DataError
from ptmeval.jobs import FinetuneJob
from ptmeval.training.basics import (
    HEAD_FILE,
    WEIGHTS_FILE,
    input_column,
    load_for_task,
    num_labels,
    predict_probs,
    seed_everything,
    set_threads,
)
from ptmeval.training.probe import extract_features, probe_probs

__all__ = [
    "HEAD_FILE",
    "WEIGHTS_FILE",
    "extract_features",
    "finetune",
    "input_column",
    "load_for_task",
    "num_labels",
    "predict_probs",
    "probe_probs",
    "seed_everything",
    "set_threads",
]


def finetune(
    job: FinetuneJob,
    data: pd.DataFrame,
    subset: pd.DataFrame,
    out_dir: str | Path,
    snapshot: Path | None = None,
    features: pd.DataFrame | None = None,
    threads: int = 1,
    checkpoint_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Adapt the model to the training subset with the job's method; write its state to
    `out_dir`; return the history. The job's hyperparameter (`lr` or `probe_c`) must be set
    (ptmeval.training.tune chooses it). Full fine-tuning checkpoints to `checkpoint_dir` and
    resumes from it after a kill."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train = data.set_index("row_id").loc[subset["row_id"]].reset_index()
    val = data[data["split"] == "validation"]
    if not get_spec(job.adapter).neural:
        from ptmeval.training.classical import finetune_classical

        return finetune_classical(job, data, train, val, out)
    if job.method == "linear_probe":
        from ptmeval.training.probe import finetune_probe

        if features is None:
            raise DataError("linear_probe needs the cached features")
        return finetune_probe(job, features, subset, out)
    if snapshot is None:
        raise DataError("full fine-tuning needs the model's snapshot")
    if job.finetune.engine == "deepspeed":
        from ptmeval.training.ds_engine import finetune_deepspeed

        return finetune_deepspeed(job, data, train, val, snapshot, out, threads)
    from ptmeval.training.full import finetune_full

    return finetune_full(
        job,
        data,
        train,
        val,
        snapshot,
        out,
        threads,
        Path(checkpoint_dir) if checkpoint_dir is not None else None,
    )
