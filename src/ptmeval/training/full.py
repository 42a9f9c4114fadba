"""Full fine-tuning on the plain PyTorch path: every weight trained with AdamW and a linear
warm-up/decay schedule over the step budget, under the loop's protocol (ptmeval.training.loop);
resumable from a checkpoint after a kill (ptmeval.checkpoint). `method: lora` trains on the same
path, its base frozen and LoRA adapters added (ptmeval.training.lora)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ptmeval import stopping
from ptmeval.jobs import FinetuneJob
from ptmeval.training.basics import (
    WEIGHTS_FILE,
    adamw_with_schedule,
    input_column,
    load_for_task,
    note_weights_not_kept,
    num_labels,
    placed,
    predict_probs,
    seed_everything,
    set_threads,
    val_scores,
)
from ptmeval.training.loop import (
    Budget,
    Callback,
    EarlyStopping,
    Progress,
    protocol_callbacks,
    run_loop,
)

log = logging.getLogger(__name__)


class PlainStrategy:
    """One process, one device: the optimizer step and validation of plain PyTorch."""

    def __init__(
        self, loaded: Any, items: list[Any], targets: Any, val_items: list[Any], settings: Any
    ) -> None:
        self.loaded, self.items, self.targets = loaded, items, targets
        self.val_items, self.settings = val_items, settings
        self.optimizer: Any = None
        self.scheduler: Any = None
        self.scaler = loaded.placement.grad_scaler()

    def setup(self, total_steps: int) -> None:
        import torch

        self.optimizer, schedule = adamw_with_schedule(
            self.loaded.model,
            self.settings,
            total_steps,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)

    def train_step(self, indices: list[int]) -> float:
        import torch

        model = self.loaded.model
        model.train()
        batch = self.loaded.collate([self.items[i] for i in indices])
        target = self.targets[indices].to(self.loaded.placement.device)
        # the logits are computed in the placement's precision (autocast), the loss in fp32
        loss = torch.nn.functional.cross_entropy(self.loaded.logits(batch).float(), target)
        if not torch.isfinite(loss):
            return float("nan")
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            self.optimizer.step()
        else:  # fp16: scaled loss, unscaled before clipping; a step with inf grads is skipped
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.scheduler.step()
        return float(loss.item())

    def validate(self) -> np.ndarray:
        return predict_probs(self.loaded, self.val_items, self.settings.eval_batch_size)

    def agree(self, flag: bool) -> bool:
        return flag

    def snapshot(self) -> dict[str, Any]:
        # on the host: a GPU's memory is not spent on a second copy of the model
        return {
            k: v.detach().to("cpu", copy=True) for k, v in self.loaded.model.state_dict().items()
        }


class CheckpointSaver(Callback):
    """Writes a resumable checkpoint every `every` steps (0: at every validation point)."""

    def __init__(
        self,
        folder: Path,
        params_hash: str,
        strategy: PlainStrategy,
        generator: Any,
        early: EarlyStopping,
        budget: Budget,
        every: int,
    ) -> None:
        self.folder, self.params_hash, self.strategy = folder, params_hash, strategy
        self.generator, self.early, self.budget, self.every = generator, early, budget, every

    def due(self, progress: Progress) -> bool:
        if progress.step >= self.budget.steps or progress.stop_reason is not None:
            return False
        if self.every:
            return progress.step % self.every == 0
        return self.budget.is_eval_step(progress.step)

    def save(self, progress: Progress) -> None:
        from ptmeval.checkpoint import save_checkpoint

        s = self.strategy
        save_checkpoint(
            self.folder,
            self.params_hash,
            s.loaded.model,
            s.optimizer,
            s.scheduler,
            self.generator,
            progress.to_json(),
            extra=self.early.best_weights,
        )


def _loaded_model(job: FinetuneJob, data: pd.DataFrame, snapshot: Path) -> Any:
    """The job's model for the task (LoRA adapters added for `method: lora`), placed on its
    device and precision."""
    loaded = load_for_task(job, snapshot, num_labels(data), job.init)
    if job.method == "lora":  # the base frozen, adapters and head trained (PEFT)
        from ptmeval.training.lora import apply_lora

        loaded = apply_lora(loaded, job)
    return placed(job, loaded)


def _resumed(
    checkpoint_dir: Path | None,
    params_hash: str,
    strategy: PlainStrategy,
    generator: Any,
    early: EarlyStopping,
) -> Progress:
    """The progress to start from: restored from `checkpoint_dir` (with the model, optimizer,
    schedule, generator and best weights) when it holds this job's checkpoint, else fresh."""
    from ptmeval.checkpoint import load_checkpoint

    progress = Progress()
    if checkpoint_dir is not None:
        restored = load_checkpoint(
            checkpoint_dir,
            params_hash,
            strategy.loaded.model,
            strategy.optimizer,
            strategy.scheduler,
            generator,
        )
        if restored is not None:
            state, best = restored
            progress = Progress.from_json(state)
            early.best_weights = best
            log.info("resumed from %s at step %d", checkpoint_dir, progress.step)
    return progress


def _after_step(
    checkpoint_dir: Path | None,
    params_hash: str,
    strategy: PlainStrategy,
    generator: Any,
    early: EarlyStopping,
    budget: Budget,
) -> Callable[[Progress], None]:
    """The loop's after-step hook: with `checkpoint_dir`, a checkpoint when one is due
    (`checkpoint_every_steps`); on a stop request, a checkpoint (with `checkpoint_dir`) and
    leave."""
    saver = None
    if checkpoint_dir is not None:
        every = strategy.settings.checkpoint_every_steps
        saver = CheckpointSaver(
            Path(checkpoint_dir), params_hash, strategy, generator, early, budget, every
        )

    def after_step(p: Progress) -> None:
        why = stopping.stop_requested()  # Snakemake killed, Ctrl-C, SIGTERM: checkpoint, stop
        if why is not None:
            if saver is not None:
                saver.save(p)
                why += f"; checkpointed step {p.step} to resume from"
            stopping.leave(why)
        if saver is not None and saver.due(p):
            saver.save(p)

    return after_step


def _keep_best(loaded: Any, early: EarlyStopping, progress: Progress) -> None:
    """Load the best validation point's weights (when one was kept) and log where the run
    stopped."""
    if early.best_weights is not None:
        loaded.model.load_state_dict(early.best_weights)
    log.info(
        "stopped: %s after %d steps; kept the weights of step %d",
        progress.stop_reason,
        progress.step,
        progress.best_step,
    )


def _write_weights(job: FinetuneJob, loaded: Any, out: Path, keep_weights: bool) -> int:
    """Write the LoRA adapter (then merge it in place) and, with `keep_weights`, the weights to
    `out`; return the bytes one more task stores."""
    from safetensors.torch import save_model

    if job.method == "lora":
        from ptmeval.training.lora import merge, save_adapter

        task_bytes = save_adapter(loaded, out)  # what one more task costs to store
        loaded = merge(loaded)  # what later stages read: a plain model, as a full fine-tune's
    else:
        task_bytes = sum(p.numel() * p.element_size() for p in loaded.model.parameters())
    if keep_weights:
        save_model(loaded.model.cpu(), str(out / WEIGHTS_FILE))
    else:
        note_weights_not_kept(out)
    return task_bytes


def _history(progress: Progress, loaded: Any, task_bytes: int) -> pd.DataFrame:
    """The history: one row per validation point, with the placement's columns and the bytes
    stored per extra task."""
    history = pd.DataFrame(progress.rows)
    for key, value in loaded.placement.columns().items():
        history[key] = value
    history["task_bytes"] = task_bytes  # stored per extra task: the weights, or the adapter
    return history


def finetune_full(
    job: FinetuneJob,
    data: pd.DataFrame,
    train: pd.DataFrame,
    val: pd.DataFrame,
    snapshot: Path,
    out: Path,
    threads: int,
    checkpoint_dir: Path | None = None,
    test_items: list[Any] | None = None,
    keep_weights: bool = True,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Plain PyTorch fine-tuning under the loop's protocol on the job's device and precision
    (ptmeval.compute); resumable from `checkpoint_dir`. Returns the history and the best
    validation point's class probabilities on `test_items`; its weights are written to `out`
    with `keep_weights`."""
    import torch

    from ptmeval.checkpoint import remove_checkpoint
    from ptmeval.config import config_hash

    set_threads(threads)
    seed_everything(job.seed)
    settings = job.finetune
    loaded = _loaded_model(job, data, snapshot)
    col = input_column(data)
    items = train[col].tolist()
    targets = torch.tensor(train["label"].to_numpy(), dtype=torch.long)
    strategy = PlainStrategy(loaded, items, targets, val[col].tolist(), settings)
    budget = Budget.plan(len(items), settings)
    strategy.setup(budget.steps)
    generator = torch.Generator().manual_seed(job.seed)
    trainable = sum(p.numel() for p in loaded.model.parameters() if p.requires_grad)
    callbacks, early = protocol_callbacks(job, len(items), trainable, budget)
    params_hash = config_hash(job.model_dump(mode="json"))
    progress = _resumed(checkpoint_dir, params_hash, strategy, generator, early)
    log.info(
        "%s: %d examples, budget %d steps (%d per epoch), validation every %d, lr %.2e",
        job.model,
        len(items),
        budget.steps,
        budget.steps_per_epoch,
        budget.eval_every,
        settings.lr,
    )
    after_step = _after_step(checkpoint_dir, params_hash, strategy, generator, early, budget)
    target = val["label"].to_numpy()
    with stopping.cooperating():
        progress = run_loop(
            strategy,
            len(items),
            settings.batch_size,
            budget,
            progress,
            callbacks,
            early,
            shuffle=lambda n: torch.randperm(n, generator=generator).tolist(),
            score=lambda probs: val_scores(probs, target),
            after_step=after_step,
        )
    _keep_best(loaded, early, progress)
    test_probs = predict_probs(loaded, test_items or [], settings.eval_batch_size)
    task_bytes = _write_weights(job, loaded, out, keep_weights)  # a LoRA model is merged
    if checkpoint_dir is not None:
        remove_checkpoint(checkpoint_dir)
    return _history(progress, loaded, task_bytes), test_probs
