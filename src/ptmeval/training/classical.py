"""Classical baselines (`tfidf-logreg`): fitted by scikit-learn on the raw text at the job's
regularisation strength C."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from ptmeval.adapters import get_adapter
from ptmeval.jobs import FinetuneJob
from ptmeval.training.basics import history_row, num_labels, val_scores


def finetune_classical(
    job: FinetuneJob, data: pd.DataFrame, train: pd.DataFrame, val: pd.DataFrame, out: Path
) -> pd.DataFrame:
    options = dict(job.options)
    if job.finetune.probe_c is not None:
        options["c"] = job.finetune.probe_c
    adapter = get_adapter(job.adapter, options)
    start = time.perf_counter()
    state = adapter.fit(train["text"].tolist(), train["label"].to_numpy(), job.seed)
    adapter.save(state, out)
    wall = time.perf_counter() - start
    probs = adapter.predict_proba(out, val["text"].tolist(), num_labels(data))
    row = history_row(
        job,
        len(train),
        step=1,
        epoch=1.0,
        train_loss=state["train_log_loss"],
        **val_scores(probs, val["label"].to_numpy()),
        wall_s=wall,
        val_wall_s=0.0,
        samples_seen=len(train),
        trainable_params=state["n_params"],
        c=options.get("c"),
        diverged=False,
        stop_reason="converged",
    )
    return pd.DataFrame([row])
