"""`extract_features` and `finetune`: adapt a model to a training subset.

Three paths share one history table (one row per epoch):
- `full`: every weight trained with AdamW and a linear warm-up/decay schedule, plain PyTorch;
- `linear_probe`: a logistic-regression head (scikit-learn, L-BFGS) on standardised frozen
  features computed once per model × task × init by `extract_features`;
- classical baselines (`tfidf-logreg`), fitted by scikit-learn on the raw text.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ptmeval.adapters import get_adapter, get_spec
from ptmeval.errors import DataError
from ptmeval.jobs import FinetuneJob, ModelJob
from ptmeval.metrics import score_all

log = logging.getLogger(__name__)

HEAD_FILE = "probe_head.npz"
WEIGHTS_FILE = "model.safetensors"


def input_column(data: pd.DataFrame) -> str:
    """'text' or 'image'."""
    for col in ("text", "image"):
        if col in data:
            return col
    raise DataError("task table has neither a 'text' nor an 'image' column")


def num_labels(data: pd.DataFrame) -> int:
    return int(data["label"].max()) + 1


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, threads))


def load_for_task(job: ModelJob, snapshot: Path, labels: int, init: str) -> Any:
    adapter = get_adapter(job.adapter, job.options)
    return adapter.load(snapshot, labels, init, job.finetune, job.trust_remote_code)


def predict_probs(loaded: Any, items: Sequence[Any], batch_size: int) -> np.ndarray:
    """Softmax probabilities of `loaded` on raw `items`, in eval mode."""
    import torch

    loaded.model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(items), batch_size):
            batch = loaded.collate(items[start : start + batch_size])
            out.append(torch.softmax(loaded.logits(batch).float(), dim=-1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


def extract_features(
    job: ModelJob, snapshot: Path, data: pd.DataFrame, init: str, threads: int
) -> pd.DataFrame:
    """Frozen-backbone features of every row of a task (train pool, validation and test)."""
    import torch

    set_threads(threads)
    seed_everything(0)  # a scratch backbone's random weights are fixed by this seed
    loaded = load_for_task(job, snapshot, num_labels(data), init)
    loaded.model.eval()
    items = data[input_column(data)].tolist()
    size = job.finetune.eval_batch_size
    feats, source = [], []
    start_t = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(items), size):
            batch = loaded.collate(items[start : start + size])
            out = loaded.features(batch).float()
            feats.append(out.numpy())
            if loaded.source_head is not None:
                source.append(torch.softmax(loaded.source_head(out), dim=-1).numpy())
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
    if source:  # the pretrained source classifier's probabilities (for LEEP and NCE)
        frame["source_probs"] = list(np.concatenate(source).astype(np.float32))
    return frame


def _history_row(job: FinetuneJob, n_train: int, **values: Any) -> dict[str, Any]:
    return {
        "model": job.model,
        "task": job.task,
        "fraction": job.fraction,
        "seed": job.seed,
        "init": job.init,
        "method": job.method,
        "n_train": n_train,
        **values,
    }


def _val_scores(probs: np.ndarray, target: np.ndarray) -> dict[str, float]:
    scores = score_all(probs, target)
    return {"val_accuracy": scores["accuracy"], "val_macro_f1": scores["macro_f1"]}


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
    """Adapt the model to the training subset; write its state to `out_dir`; return history.
    Full fine-tuning checkpoints to `checkpoint_dir` and resumes from it after a kill."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train = data.set_index("row_id").loc[subset["row_id"]].reset_index()
    val = data[data["split"] == "validation"]
    if not get_spec(job.adapter).neural:
        return _finetune_classical(job, data, train, val, out)
    if job.method == "linear_probe":
        if features is None:
            raise DataError("linear_probe needs the cached features")
        return _finetune_probe(job, features, subset, out)
    assert snapshot is not None
    if job.method == "full" and job.finetune.engine == "deepspeed":
        from ptmeval.ds_engine import finetune_deepspeed  # deepspeed stays off the plain path

        return finetune_deepspeed(job, data, train, val, snapshot, out, threads)
    return _finetune_full(
        job,
        data,
        train,
        val,
        snapshot,
        out,
        threads,
        Path(checkpoint_dir) if checkpoint_dir is not None else None,
    )


def _finetune_classical(
    job: FinetuneJob, data: pd.DataFrame, train: pd.DataFrame, val: pd.DataFrame, out: Path
) -> pd.DataFrame:
    adapter = get_adapter(job.adapter, job.options)
    start = time.perf_counter()
    state = adapter.fit(train["text"].tolist(), train["label"].to_numpy(), job.seed)
    adapter.save(state, out)
    wall = time.perf_counter() - start
    probs = adapter.predict_proba(out, val["text"].tolist(), num_labels(data))
    row = _history_row(
        job,
        len(train),
        epoch=1,
        train_loss=state["train_log_loss"],
        **_val_scores(probs, val["label"].to_numpy()),
        epoch_wall_s=wall,
        wall_s=wall,
        samples_seen=len(train),
        trainable_params=state["n_params"],
        diverged=False,
    )
    return pd.DataFrame([row])


def _standardise(x: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return (x - mean) / scale


def _feature_matrix(features: pd.DataFrame) -> np.ndarray:
    return np.stack(features["feature"].to_numpy()).astype(np.float64)


def _finetune_probe(
    job: FinetuneJob, features: pd.DataFrame, subset: pd.DataFrame, out: Path
) -> pd.DataFrame:
    from sklearn.linear_model import LogisticRegression

    from ptmeval.adapters.tfidf import expand_classes

    labels = int(features["label"].max()) + 1
    train = features.set_index("row_id").loc[subset["row_id"]].reset_index()
    val = features[features["split"] == "validation"]
    start = time.perf_counter()
    x = _feature_matrix(train)
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    y = train["label"].to_numpy()
    if len(np.unique(y)) < 2:
        raise DataError(
            f"{job.task}: the training subset has a single class; use a larger fraction"
        )
    clf = LogisticRegression(C=job.finetune.probe_c, max_iter=job.finetune.probe_max_iter)
    clf.fit(_standardise(x, mean, scale), y)
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
    train_probs = clf.predict_proba(_standardise(x, mean, scale))
    loss = -np.mean(
        np.log(
            np.clip(train_probs[np.arange(len(y)), np.searchsorted(clf.classes_, y)], 1e-12, None)
        )
    )
    val_probs = expand_classes(
        clf.predict_proba(_standardise(_feature_matrix(val), mean, scale)), clf.classes_, labels
    )
    row = _history_row(
        job,
        len(train),
        epoch=1,
        train_loss=float(loss),
        **_val_scores(val_probs, val["label"].to_numpy()),
        epoch_wall_s=wall,
        wall_s=wall,
        samples_seen=len(train) * int(np.max(clf.n_iter_)),
        trainable_params=int(clf.coef_.size + clf.intercept_.size),
        diverged=False,
    )
    return pd.DataFrame([row])


def probe_probs(head_dir: Path, features: pd.DataFrame) -> np.ndarray:
    """Probabilities of a saved linear-probe head on cached features (numpy only)."""
    from ptmeval.adapters.tfidf import expand_classes, softmax

    head = np.load(Path(head_dir) / HEAD_FILE, allow_pickle=False)
    x = _standardise(_feature_matrix(features), head["mean"], head["scale"])
    scores = x @ head["coef"].T + head["intercept"]
    if scores.shape[1] == 1:  # binary logistic regression: one logit
        scores = np.hstack([np.zeros_like(scores), scores])
    return expand_classes(softmax(scores), head["classes"], int(head["num_labels"]))


def adamw_with_schedule(
    model: Any, settings: Any, n_examples: int, fused: bool = True
) -> tuple[Any, Any]:
    """AdamW (no weight decay on biases and norms) and the linear warm-up/decay factor per step,
    shared by the plain and the DeepSpeed paths (which keeps the unfused optimizer: ZeRO
    re-partitions its parameters)."""
    import torch

    steps_per_epoch = math.ceil(n_examples / settings.batch_size)
    total_steps = steps_per_epoch * settings.epochs
    warmup = int(settings.warmup_ratio * total_steps)
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, param in model.named_parameters():
        (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": settings.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=settings.lr,
        fused=fused,  # one kernel per step: measurably faster on CPU than the foreach default
    )

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return optimizer, schedule


def _finetune_full(
    job: FinetuneJob,
    data: pd.DataFrame,
    train: pd.DataFrame,
    val: pd.DataFrame,
    snapshot: Path,
    out: Path,
    threads: int,
    checkpoint_dir: Path | None = None,
) -> pd.DataFrame:
    """Plain PyTorch fine-tuning; resumable from `checkpoint_dir` (see ptmeval.checkpoint)."""
    import torch
    from safetensors.torch import save_model

    from ptmeval.checkpoint import load_checkpoint, remove_checkpoint, save_checkpoint
    from ptmeval.config import config_hash

    set_threads(threads)
    seed_everything(job.seed)
    settings = job.finetune
    loaded = load_for_task(job, snapshot, num_labels(data), job.init)
    model = loaded.model
    col = input_column(data)
    items = train[col].tolist()
    targets = torch.tensor(train["label"].to_numpy(), dtype=torch.long)
    optimizer, schedule = adamw_with_schedule(model, settings, len(items))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    generator = torch.Generator().manual_seed(job.seed)
    params_hash = config_hash(job.model_dump(mode="json"))
    progress: dict[str, Any] = {
        "epoch": 1,
        "position": 0,
        "order": None,
        "losses": [],
        "seen": 0,
        "wall": 0.0,
        "epoch_wall": 0.0,
        "rows": [],
    }
    if checkpoint_dir is not None:
        restored = load_checkpoint(
            checkpoint_dir, params_hash, model, optimizer, scheduler, generator
        )
        if restored is not None:
            progress = restored
            log.info(
                "resumed from %s at epoch %d, step %d",
                checkpoint_dir,
                progress["epoch"],
                progress["position"] // settings.batch_size,
            )
    every = settings.checkpoint_every_steps
    rows: list[dict[str, Any]] = progress["rows"]
    diverged = False
    for epoch in range(progress["epoch"], settings.epochs + 1):
        model.train()
        start = time.perf_counter() - progress["epoch_wall"]
        if progress["order"] is None:
            progress["order"] = torch.randperm(len(items), generator=generator).tolist()
        order, losses = progress["order"], progress["losses"]
        for s in range(progress["position"], len(order), settings.batch_size):
            idx = order[s : s + settings.batch_size]
            batch = loaded.collate([items[i] for i in idx])
            loss = torch.nn.functional.cross_entropy(loaded.logits(batch), targets[idx])
            if not torch.isfinite(loss):
                diverged = True
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            progress["seen"] += len(idx)
            progress["position"] = s + len(idx)
            step = len(losses)
            if (
                checkpoint_dir is not None
                and every
                and step % every == 0
                and progress["position"] < len(order)
            ):
                progress["epoch"], progress["epoch_wall"] = epoch, time.perf_counter() - start
                save_checkpoint(
                    checkpoint_dir, params_hash, model, optimizer, scheduler, generator, progress
                )
        epoch_wall = time.perf_counter() - start
        progress["wall"] += epoch_wall
        probs = predict_probs(loaded, val[col].tolist(), settings.eval_batch_size)
        rows.append(
            _history_row(
                job,
                len(items),
                epoch=epoch,
                train_loss=float(np.mean(losses)) if losses else float("nan"),
                **_val_scores(probs, val["label"].to_numpy()),
                epoch_wall_s=epoch_wall,
                wall_s=progress["wall"],
                samples_seen=progress["seen"],
                trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
                diverged=diverged,
            )
        )
        log.info(
            "epoch %d/%d: loss %.4f, val accuracy %.3f, %.1f s",
            epoch,
            settings.epochs,
            rows[-1]["train_loss"],
            rows[-1]["val_accuracy"],
            epoch_wall,
        )
        if diverged:
            log.warning("loss is not finite: training stopped (diverged)")
            break
        progress.update(
            epoch=epoch + 1, position=0, order=None, losses=[], epoch_wall=0.0, rows=rows
        )
        if checkpoint_dir is not None and epoch < settings.epochs:
            save_checkpoint(
                checkpoint_dir, params_hash, model, optimizer, scheduler, generator, progress
            )
    save_model(model, str(out / WEIGHTS_FILE))
    if checkpoint_dir is not None:
        remove_checkpoint(checkpoint_dir)
    return pd.DataFrame(rows)
