"""Full fine-tuning on the plain PyTorch path: every weight trained with AdamW and a linear
warm-up/decay schedule over the step budget, under the loop's protocol (ptmeval.training.loop);
resumable from a checkpoint after a kill (ptmeval.checkpoint). `method: lora` trains on the same
path, its base frozen and LoRA adapters added (ptmeval.training.lora)."""

from __future__ import annotations

import logging
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
    from safetensors.torch import save_model

    from ptmeval.checkpoint import load_checkpoint, remove_checkpoint
    from ptmeval.config import config_hash

    set_threads(threads)
    seed_everything(job.seed)
    settings = job.finetune
    loaded = load_for_task(job, snapshot, num_labels(data), job.init)
    if job.method == "lora":  # the base frozen, adapters and head trained (PEFT)
        from ptmeval.training.lora import apply_lora

        loaded = apply_lora(loaded, job)
    loaded = placed(job, loaded)
    col = input_column(data)
    items = train[col].tolist()
    targets = torch.tensor(train["label"].to_numpy(), dtype=torch.long)
    strategy = PlainStrategy(loaded, items, targets, val[col].tolist(), settings)
    budget = Budget.plan(len(items), settings)
    strategy.setup(budget.steps)
    generator = torch.Generator().manual_seed(job.seed)
    trainable = sum(p.numel() for p in loaded.model.parameters() if p.requires_grad)
    callbacks, early = protocol_callbacks(job, len(items), trainable, budget)
    progress = Progress()
    params_hash = config_hash(job.model_dump(mode="json"))
    if checkpoint_dir is not None:
        restored = load_checkpoint(
            checkpoint_dir,
            params_hash,
            loaded.model,
            strategy.optimizer,
            strategy.scheduler,
            generator,
        )
        if restored is not None:
            state, best = restored
            progress = Progress.from_json(state)
            early.best_weights = best
            log.info("resumed from %s at step %d", checkpoint_dir, progress.step)
    log.info(
        "%s: %d examples, budget %d steps (%d per epoch), validation every %d, lr %.2e",
        job.model,
        len(items),
        budget.steps,
        budget.steps_per_epoch,
        budget.eval_every,
        settings.lr,
    )
    saver = None
    if checkpoint_dir is not None:
        saver = CheckpointSaver(
            Path(checkpoint_dir),
            params_hash,
            strategy,
            generator,
            early,
            budget,
            settings.checkpoint_every_steps,
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
    if early.best_weights is not None:
        loaded.model.load_state_dict(early.best_weights)
    log.info(
        "stopped: %s after %d steps; kept the weights of step %d",
        progress.stop_reason,
        progress.step,
        progress.best_step,
    )
    test_probs = predict_probs(loaded, test_items or [], settings.eval_batch_size)
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
    if checkpoint_dir is not None:
        remove_checkpoint(checkpoint_dir)
    history = pd.DataFrame(progress.rows)
    for key, value in loaded.placement.columns().items():
        history[key] = value
    history["task_bytes"] = task_bytes  # stored per extra task: the weights, or the adapter
    return history, test_probs
