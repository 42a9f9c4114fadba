"""What every training strategy shares: inputs, seeding, threads, loading, prediction, the
history row and the AdamW set-up with its warm-up/decay schedule."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ptmeval.adapters import get_adapter
from ptmeval.errors import DataError
from ptmeval.jobs import FinetuneJob, ModelJob
from ptmeval.metrics import score_all

HEAD_FILE = "probe_head.npz"
WEIGHTS_FILE = "model.safetensors"
NOT_KEPT_FILE = "WEIGHTS_NOT_KEPT.txt"


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
            out.append(torch.softmax(loaded.logits(batch).float(), dim=-1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


def placed(job: ModelJob, loaded: Any) -> Any:
    """`loaded` on the job's device and precision (ptmeval.compute), resolved here."""
    from ptmeval.compute import place, resolve

    return place(loaded, resolve(job.finetune.device, job.finetune.precision))


def load_finetuned(job: ModelJob, snapshot: Path, model_dir: Path, labels: int) -> Any:
    """The fully fine-tuned weights saved in `model_dir`, in the model's architecture (built
    from the snapshot without its weights); a folder without them is a one-line error."""
    from safetensors.torch import load_model

    if not (model_dir / WEIGHTS_FILE).exists():
        raise DataError(
            f"{model_dir}: no fine-tuned weights (the fine-tune ran when this job was not "
            "the export check's); rerun it: snakemake -R finetune, or keep_weights: true"
        )
    loaded = load_for_task(job, snapshot, labels, "scratch")  # architecture only
    load_model(loaded.model, str(model_dir / WEIGHTS_FILE))
    return loaded


def saved_model_probs(
    job: ModelJob,
    data: pd.DataFrame,
    rows: pd.DataFrame,
    model_dir: Path,
    snapshot: Path,
    threads: int = 1,
) -> np.ndarray:
    """Class probabilities on `rows` (of the task table `data`) of the fully fine-tuned
    weights saved in `model_dir`."""
    set_threads(threads)
    loaded = load_finetuned(job, snapshot, Path(model_dir), num_labels(data))
    return predict_probs(
        placed(job, loaded), rows[input_column(data)].tolist(), job.finetune.eval_batch_size
    )


def note_weights_not_kept(out: Path) -> None:
    """Say in the model folder why it holds no weights."""
    (out / NOT_KEPT_FILE).write_text(
        "The fine-tuned weights were not kept: no later stage reads them, and the test-set "
        "predictions were computed while the model was in memory. Set keep_weights: true in "
        "the config (then rerun with -R finetune) to keep every fine-tune's weights.\n"
    )


def history_row(job: FinetuneJob, n_train: int, **values: Any) -> dict[str, Any]:
    """One row of a fine-tune's history table (one per validation point)."""
    return {**job.keys(), "n_train": n_train, **values}


def val_scores(probs: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Validation accuracy, macro-F1 and mean cross-entropy of class probabilities."""
    scores = score_all(probs, target)
    picked = probs[np.arange(len(target)), target] if len(target) else np.ones(0)
    loss = float(-np.mean(np.log(np.clip(picked, 1e-12, None)))) if len(target) else np.nan
    return {
        "val_accuracy": scores["accuracy"],
        "val_macro_f1": scores["macro_f1"],
        "val_loss": loss,
    }


def adamw_with_schedule(
    model: Any, settings: Any, total_steps: int, fused: bool = True
) -> tuple[Any, Any]:
    """AdamW (no weight decay on biases and norms) at `settings.lr` and the linear warm-up/decay
    factor per step over `total_steps`, shared by the plain and the DeepSpeed paths (which keeps
    the unfused optimizer: ZeRO re-partitions its parameters)."""
    import torch

    if settings.lr is None:
        raise ValueError("no learning rate: select one first (ptmeval.training.tune)")
    warmup = int(settings.warmup_ratio * total_steps)
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, param in model.named_parameters():
        if param.requires_grad:
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
