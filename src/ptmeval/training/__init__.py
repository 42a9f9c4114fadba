"""Adapting a model to a training subset: one loop (`loop`) with callbacks, and one strategy per
adaptation method — full fine-tuning on plain PyTorch (`full`) or DeepSpeed (`ds_engine`), the
linear probe on frozen features (`probe`), classical baselines (`classical`) — and the
hyperparameter selection on validation that they share (`tune`). Every strategy writes the same
history table (one row per validation point)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ptmeval.adapters import get_adapter, get_spec
from ptmeval.errors import DataError
from ptmeval.jobs import FinetuneJob
from ptmeval.training.basics import (
    HEAD_FILE,
    WEIGHTS_FILE,
    input_column,
    load_finetuned,
    load_for_task,
    note_weights_not_kept,
    num_labels,
    predict_probs,
    saved_model_probs,
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
    "load_finetuned",
    "load_for_task",
    "num_labels",
    "predict_probs",
    "probe_probs",
    "saved_model_probs",
    "seed_everything",
    "set_threads",
]


def stored_bytes(weights: Path) -> int:
    """Bytes of the tensors in a safetensors file: what a fully fine-tuned task stores. Read
    from the file's header (each tensor's byte range), without loading the weights again."""
    import json
    import struct

    with open(weights, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    return sum(
        end - start
        for name, t in header.items()
        if name != "__metadata__"
        for start, end in [t["data_offsets"]]
    )


def finetune(
    job: FinetuneJob,
    data: pd.DataFrame,
    subset: pd.DataFrame,
    out_dir: str | Path,
    snapshot: Path | None = None,
    features: pd.DataFrame | None = None,
    threads: int = 1,
    checkpoint_dir: str | Path | None = None,
    keep_weights: bool = True,
    predict_test: bool = True,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Adapt the model to the training subset with the job's method; return the history and
    the adapted model's class probabilities on the task's test split (in its row order),
    computed in this process while the model is in memory. The job's hyperparameter (`lr` or
    `probe_c`) must be set (ptmeval.training.tune chooses it). A full fine-tune's weights are
    written to `out_dir` only with `keep_weights` (probe heads and classical models, small,
    always are); it checkpoints to `checkpoint_dir` and resumes from it after a kill. Without
    `predict_test` (the selection runs) the probabilities are an empty array."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train = data.set_index("row_id").loc[subset["row_id"]].reset_index()
    val = data[data["split"] == "validation"]
    test = data[data["split"] == "test"].reset_index(drop=True)
    if not predict_test:
        test = test.iloc[:0]
    if not get_spec(job.adapter).neural:
        from ptmeval.training.classical import finetune_classical

        history = finetune_classical(job, data, train, val, out)
        if test.empty:
            return history, np.zeros((0, num_labels(data)))
        adapter = get_adapter(job.adapter, job.options)
        return history, adapter.predict_proba(out, test["text"].tolist(), num_labels(data))
    if job.method == "linear_probe":
        from ptmeval.training.probe import finetune_probe

        if features is None:
            raise DataError("linear_probe needs the cached features")
        history = finetune_probe(job, features, subset, out)
        if test.empty:
            return history, np.zeros((0, num_labels(data)))
        rows = features.set_index("row_id").loc[test["row_id"]].reset_index()
        return history, probe_probs(out, rows)
    if snapshot is None:
        raise DataError("full fine-tuning needs the model's snapshot")
    if job.finetune.engine == "deepspeed":
        from ptmeval.training.ds_engine import finetune_deepspeed

        history = finetune_deepspeed(job, data, train, val, snapshot, out, threads)
        # DeepSpeed's workers train in fp32, on GPUs with use_gpus (ptmeval.training.ds_engine)
        history["device"] = "cuda" if job.finetune.use_gpus else "cpu"
        history["precision"] = "fp32"
        # stored per extra task, last as in the plain path's: a LoRA worker wrote its
        # adapter's size, a full fine-tune stores its weights
        history["task_bytes"] = (
            history.pop("task_bytes")
            if "task_bytes" in history
            else stored_bytes(out / WEIGHTS_FILE)
        )
        probs = saved_model_probs(job, data, test, out, snapshot, threads)
        if not keep_weights:
            (out / WEIGHTS_FILE).unlink()
            note_weights_not_kept(out)
        return history, probs
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
        test_items=test[input_column(data)].tolist(),
        keep_weights=keep_weights,
    )
