"""Frozen features and the linear probe: `extract_features` computes a backbone's features of
every row of a task once (cached as Parquet); `finetune_probe` fits a logistic-regression head
(scikit-learn, L-BFGS, on standardised features) at the job's regularisation strength C;
`probe_probs` scores a saved head with numpy alone."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ptmeval.errors import DataError
from ptmeval.jobs import FinetuneJob, ModelJob
from ptmeval.training.basics import (
    HEAD_FILE,
    history_row,
    input_column,
    load_for_task,
    num_labels,
    placed,
    seed_everything,
    set_threads,
    val_scores,
)

log = logging.getLogger(__name__)


def extract_features(
    job: ModelJob, snapshot: Path, data: pd.DataFrame, init: str, threads: int
) -> pd.DataFrame:
    """Frozen-backbone features of every row of a task (train pool, validation and test)."""
    import torch

    set_threads(threads)
    seed_everything(0)  # a scratch backbone's random weights are fixed by this seed
    loaded = placed(job, load_for_task(job, snapshot, num_labels(data), init))
    loaded.model.eval()
    items = data[input_column(data)].tolist()
    size = job.finetune.eval_batch_size
    feats, source = [], []
    start_t = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(items), size):
            batch = loaded.collate(items[start : start + size])
            out = loaded.features(batch).float()
            feats.append(out.cpu().numpy())
            if loaded.source_head is not None:
                source.append(torch.softmax(loaded.source_head(out), dim=-1).cpu().numpy())
            log.info("features %d/%d", min(start + size, len(items)), len(items))
    matrix = np.concatenate(feats)
    log.info(
        "features of %d rows in %.1f s, dim %d",
        len(items),
        time.perf_counter() - start_t,
        matrix.shape[1],
    )
    frame = pd.DataFrame(
        {
            "row_id": data["row_id"].to_numpy(),
            "split": data["split"].to_numpy(),
            "label": data["label"].to_numpy(),
            "feature": list(matrix.astype(np.float32)),
        }
    )
    frame["extract_wall_s"] = time.perf_counter() - start_t
    for key, value in loaded.placement.columns().items():
        frame[key] = value
    if source:  # the pretrained source classifier's probabilities (for LEEP and NCE)
        frame["source_probs"] = list(np.concatenate(source).astype(np.float32))
    return frame


def standardise(x: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return (x - mean) / scale


def feature_matrix(features: pd.DataFrame) -> np.ndarray:
    return np.stack(features["feature"].to_numpy()).astype(np.float64)


def finetune_probe(
    job: FinetuneJob, features: pd.DataFrame, subset: pd.DataFrame, out: Path
) -> pd.DataFrame:
    """Fit the logistic-regression head at C = `job.finetune.probe_c`; write it; one history
    row with the validation scores."""
    from sklearn.linear_model import LogisticRegression

    from ptmeval.adapters.tfidf import expand_classes

    if job.finetune.probe_c is None:
        raise ValueError("no regularisation strength: select one first (ptmeval.training.tune)")
    labels = int(features["label"].max()) + 1
    train = features.set_index("row_id").loc[subset["row_id"]].reset_index()
    val = features[features["split"] == "validation"]
    start = time.perf_counter()
    x = feature_matrix(train)
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    y = train["label"].to_numpy()
    if len(np.unique(y)) < 2:
        raise DataError(
            f"{job.task}: the training subset has a single class; use a larger fraction"
        )
    clf = LogisticRegression(C=job.finetune.probe_c, max_iter=job.finetune.probe_max_iter)
    clf.fit(standardise(x, mean, scale), y)
    np.savez(
        out / HEAD_FILE,
        mean=mean,
        scale=scale,
        coef=clf.coef_,
        intercept=clf.intercept_,
        classes=clf.classes_,
        num_labels=np.array(labels),
    )
    wall = time.perf_counter() - start
    train_probs = expand_classes(
        clf.predict_proba(standardise(x, mean, scale)), clf.classes_, labels
    )
    val_probs = expand_classes(
        clf.predict_proba(standardise(feature_matrix(val), mean, scale)), clf.classes_, labels
    )
    row = history_row(
        job,
        len(train),
        step=int(np.max(clf.n_iter_)),
        epoch=float(np.max(clf.n_iter_)),
        train_loss=val_scores(train_probs, y)["val_loss"],
        **val_scores(val_probs, val["label"].to_numpy()),
        wall_s=wall,
        val_wall_s=0.0,
        samples_seen=len(train) * int(np.max(clf.n_iter_)),
        trainable_params=int(clf.coef_.size + clf.intercept_.size),
        c=job.finetune.probe_c,
        diverged=False,
        stop_reason="converged" if np.max(clf.n_iter_) < job.finetune.probe_max_iter else "budget",
    )
    history = pd.DataFrame([row])
    history["task_bytes"] = (out / HEAD_FILE).stat().st_size  # stored per extra task: the head
    return history


def probe_probs(head_dir: Path, features: pd.DataFrame) -> np.ndarray:
    """Probabilities of a saved linear-probe head on cached features (numpy only)."""
    from ptmeval.adapters.tfidf import expand_classes, softmax

    head = np.load(Path(head_dir) / HEAD_FILE, allow_pickle=False)
    x = standardise(feature_matrix(features), head["mean"], head["scale"])
    scores = x @ head["coef"].T + head["intercept"]
    if scores.shape[1] == 1:  # binary logistic regression: one logit
        scores = np.hstack([np.zeros_like(scores), scores])
    return expand_classes(softmax(scores), head["classes"], int(head["num_labels"]))
