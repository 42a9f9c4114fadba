"""The one training loop of every gradient-based strategy (plain PyTorch, DeepSpeed).

The protocol is the same for every model:
- a **step budget** that does not starve small subsets: ``max(min_steps, epochs × steps per
  epoch)`` optimizer steps over seeded random orders of the subset (a new order every pass);
- **validation at regular intervals**: ``eval_points`` points spread evenly over the budget, and
  always one after the last step;
- **early stopping**: after ``patience`` validation points without improvement of the primary
  validation metric (ties broken by the validation loss) training stops;
- the **best validation point's weights** are the ones kept;
- a non-finite loss stops training (``diverged``); the weights before that step are kept.

The history has one row per validation point and records the steps, epochs, samples and the
reason training stopped (``budget``, ``early_stopping``, ``diverged``). Callbacks do one job each
(`on_evaluate`, `on_step_end`): the history rows, early stopping with the best weights,
divergence, checkpoints and the progress log.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from ptmeval.jobs import FinetuneJob
from ptmeval.training.basics import history_row

log = logging.getLogger(__name__)

STOP_REASONS = ("budget", "early_stopping", "diverged")


@dataclasses.dataclass(frozen=True)
class Budget:
    """Optimizer steps of one fine-tune and where validation happens."""

    steps: int
    steps_per_epoch: int
    eval_every: int

    @classmethod
    def plan(cls, n_examples: int, settings: Any) -> Budget:
        per_epoch = max(1, math.ceil(n_examples / settings.batch_size))
        steps = max(settings.min_steps, settings.epochs * per_epoch)
        return cls(steps, per_epoch, max(1, math.ceil(steps / settings.eval_points)))

    def is_eval_step(self, step: int) -> bool:
        return step % self.eval_every == 0 or step == self.steps


@dataclasses.dataclass
class Progress:
    """Where a fine-tune stands; JSON-able, so that a checkpoint can carry it."""

    step: int = 0
    position: int = 0
    order: list[int] | None = None
    losses: list[float] = dataclasses.field(default_factory=list)  # since the last validation
    seen: int = 0
    wall: float = 0.0
    val_wall: float = 0.0
    rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    best_score: float = -math.inf
    best_loss: float = math.inf
    best_step: int = 0
    bad_points: int = 0
    improved: bool = False
    stop_reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["best_score"] = None if math.isinf(self.best_score) else self.best_score
        data["best_loss"] = None if math.isinf(self.best_loss) else self.best_loss
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Progress:
        data = dict(data)
        data["best_score"] = -math.inf if data["best_score"] is None else data["best_score"]
        data["best_loss"] = math.inf if data["best_loss"] is None else data["best_loss"]
        return cls(**data)


class Strategy(Protocol):
    """How one optimizer step and one validation are done (plain PyTorch, DeepSpeed)."""

    def train_step(self, indices: list[int]) -> float:
        """One optimizer step on the global batch `indices`; its mean loss (NaN: not taken)."""

    def validate(self) -> np.ndarray | None:
        """Validation class probabilities (None on processes that do not score)."""

    def agree(self, flag: bool) -> bool:
        """The decision of the process that scores, on every process."""

    def snapshot(self) -> Any:
        """A copy of the current weights (None on processes that do not keep it)."""


class Callback:
    """Hooks of the loop; each callback does one job."""

    def on_evaluate(self, progress: Progress, scores: dict[str, float]) -> None:
        """After a validation point (on the process that scores)."""

    def on_step_end(self, progress: Progress, loss: float) -> None:
        """After each optimizer step (on every process)."""


class HistoryRecorder(Callback):
    """Appends one history row per validation point."""

    def __init__(self, job: FinetuneJob, n_train: int, trainable: int, budget: Budget) -> None:
        self.job, self.n_train, self.trainable, self.budget = job, n_train, trainable, budget

    def on_evaluate(self, progress: Progress, scores: dict[str, float]) -> None:
        losses = progress.losses
        progress.rows.append(
            history_row(
                self.job,
                self.n_train,
                step=progress.step,
                epoch=progress.seen / max(1, self.n_train),
                train_loss=float(np.mean(losses)) if losses else float("nan"),
                **scores,
                wall_s=progress.wall,
                val_wall_s=progress.val_wall,
                samples_seen=progress.seen,
                trainable_params=self.trainable,
                lr=self.job.finetune.lr,
                budget_steps=self.budget.steps,
                diverged=progress.stop_reason == "diverged",
            )
        )


class EarlyStopping(Callback):
    """Tracks the best validation point (primary metric, ties broken by the lower validation
    loss) and stops after `patience` points without improvement (0: never)."""

    def __init__(self, metric: str, patience: int) -> None:
        self.key, self.patience = f"val_{metric}", patience
        self.best_weights: Any = None

    def on_evaluate(self, progress: Progress, scores: dict[str, float]) -> None:
        score, loss = scores[self.key], scores["val_loss"]
        better = score > progress.best_score or (
            score == progress.best_score and loss < progress.best_loss
        )
        progress.improved = bool(better and np.isfinite(score))
        if progress.improved:
            progress.best_score, progress.best_loss = score, loss
            progress.best_step, progress.bad_points = progress.step, 0
        else:
            progress.bad_points += 1
            if self.patience and progress.bad_points >= self.patience and not progress.stop_reason:
                progress.stop_reason = "early_stopping"


class DivergenceGuard(Callback):
    """A non-finite loss stops training; the step was not taken."""

    def on_step_end(self, progress: Progress, loss: float) -> None:
        if not math.isfinite(loss):
            progress.stop_reason = "diverged"
            log.warning("loss is not finite at step %d: training stopped (diverged)", progress.step)


class ProgressLog(Callback):
    """One log line per validation point."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget

    def on_evaluate(self, progress: Progress, scores: dict[str, float]) -> None:
        row = progress.rows[-1] if progress.rows else {}
        log.info(
            "step %d/%d (epoch %.1f): loss %.4f, val loss %.4f, val accuracy %.3f, %.1f s%s",
            progress.step,
            self.budget.steps,
            row.get("epoch", float("nan")),
            row.get("train_loss", float("nan")),
            scores["val_loss"],
            scores["val_accuracy"],
            progress.wall,
            " (best so far)" if progress.improved else "",
        )


def protocol_callbacks(
    job: FinetuneJob, n_train: int, trainable: int, budget: Budget
) -> tuple[list[Callback], EarlyStopping]:
    """The protocol's callbacks, in order (divergence, history, early stopping, log), and the
    early-stopping one, which holds the best weights."""
    early = EarlyStopping(job.metric, job.finetune.patience)
    callbacks = [DivergenceGuard(), HistoryRecorder(job, n_train, trainable, budget), early]
    return [*callbacks, ProgressLog(budget)], early


def run_loop(
    strategy: Strategy,
    n_items: int,
    batch_size: int,
    budget: Budget,
    progress: Progress,
    callbacks: Sequence[Callback],
    early: EarlyStopping,
    shuffle: Callable[[int], list[int]],
    score: Callable[[np.ndarray], dict[str, float]],
    after_step: Callable[[Progress], None] | None = None,
) -> Progress:
    """Train until the budget is spent, early stopping or divergence; `early.best_weights`
    then holds the best validation point's weights (on the process that keeps them)."""
    while progress.step < budget.steps and progress.stop_reason is None:
        start = time.perf_counter()
        if progress.order is None:
            progress.order, progress.position = shuffle(n_items), 0
        idx = progress.order[progress.position : progress.position + batch_size]
        if len(idx) == 1 < batch_size and n_items > 1:  # one example breaks batch statistics:
            progress.order, progress.position = shuffle(n_items), 0  # start the next epoch
            continue
        loss = strategy.train_step(idx)
        if math.isfinite(loss):
            progress.step += 1
            progress.losses.append(loss)
            progress.seen += len(idx)
            progress.position += len(idx)
            if progress.position >= n_items:
                progress.order = None
        for callback in callbacks:
            callback.on_step_end(progress, loss)
        progress.wall += time.perf_counter() - start
        if budget.is_eval_step(progress.step) or progress.stop_reason is not None:
            _evaluate(strategy, progress, callbacks, early, score)
        if after_step is not None and progress.stop_reason is None:
            after_step(progress)
    if progress.stop_reason is None:
        progress.stop_reason = "budget"
    if progress.rows:
        progress.rows[-1]["stop_reason"] = progress.stop_reason
        for row in progress.rows:
            row["best_step"] = progress.best_step
            row["stop_reason"] = progress.stop_reason
    return progress


def _evaluate(
    strategy: Strategy,
    progress: Progress,
    callbacks: Sequence[Callback],
    early: EarlyStopping,
    score: Callable[[np.ndarray], dict[str, float]],
) -> None:
    start = time.perf_counter()
    probs = strategy.validate()
    progress.val_wall += time.perf_counter() - start
    progress.improved = False
    stopping = progress.stop_reason
    if probs is not None:
        scores = score(probs)
        for callback in callbacks:
            callback.on_evaluate(progress, scores)
        progress.losses = []
    if strategy.agree(progress.improved):
        weights = strategy.snapshot()
        if weights is not None:
            early.best_weights = weights
    if strategy.agree(progress.stop_reason is not None) and progress.stop_reason is None:
        progress.stop_reason = stopping or "early_stopping"
