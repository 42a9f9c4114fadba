"""The training loop's protocol with a scripted strategy: the step budget, validation points,
early stopping, the best validation point's weights and divergence."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ptmeval.config import FinetuneSettings
from ptmeval.jobs import FinetuneJob
from ptmeval.training.basics import val_scores
from ptmeval.training.loop import (
    Budget,
    DivergenceGuard,
    EarlyStopping,
    HistoryRecorder,
    Progress,
    run_loop,
)

TARGET = np.array([0, 1, 0, 1])


class Scripted:
    """Validation accuracy follows `accuracies` (one per validation point); the 'weights' are
    the number of steps taken; the loss turns NaN at step `nan_at`."""

    def __init__(self, accuracies: list[float], nan_at: int | None = None) -> None:
        self.accuracies, self.nan_at = list(accuracies), nan_at
        self.steps, self.calls = 0, 0

    def train_step(self, indices: list[int]) -> float:
        if self.nan_at is not None and self.steps + 1 == self.nan_at:
            return math.nan
        self.steps += 1
        return 1.0 / self.steps

    def validate(self) -> np.ndarray:
        acc = self.accuracies[min(self.calls, len(self.accuracies) - 1)]
        self.calls += 1
        right = int(round(acc * len(TARGET)))
        probs = np.full((len(TARGET), 2), 0.1)
        for i, label in enumerate(TARGET):
            probs[i, label if i < right else 1 - label] = 0.9
        return probs

    def agree(self, flag: bool) -> bool:
        return flag

    def snapshot(self) -> int:
        return self.steps


def settings(**kw) -> FinetuneSettings:
    base = {"epochs": 1, "batch_size": 4, "lr": 1e-3, "min_steps": 20, "eval_points": 10}
    return FinetuneSettings(**(base | kw))


def run(strategy: Scripted, s: FinetuneSettings, n: int = 8):
    job = FinetuneJob(
        model="m", adapter="hf-text", task="t", fraction=1.0, seed=0, init="scratch", finetune=s
    )
    budget = Budget.plan(n, s)
    early = EarlyStopping("accuracy", s.patience)
    callbacks = [DivergenceGuard(), HistoryRecorder(job, n, 10, budget), early]
    progress = run_loop(
        strategy,
        n,
        s.batch_size,
        budget,
        Progress(),
        callbacks,
        early,
        shuffle=lambda k: list(range(k)),
        score=lambda probs: val_scores(probs, TARGET),
    )
    return progress, early, budget


def test_budget_does_not_starve_small_subsets():
    assert Budget.plan(20, settings(epochs=3, min_steps=100)).steps == 100
    assert Budget.plan(2000, settings(epochs=3, min_steps=100)).steps == 3 * 500
    budget = Budget.plan(8, settings(min_steps=25, eval_points=10))
    assert budget.eval_every == 3 and budget.is_eval_step(25) and not budget.is_eval_step(4)


def test_runs_the_whole_budget_without_patience():
    progress, early, _ = run(Scripted([0.5, 0.75, 0.5]), settings(patience=0))
    assert progress.step == 20 and progress.stop_reason == "budget"
    assert [r["step"] for r in progress.rows] == [2, 4, 6, 8, 10, 12, 14, 16, 18, 20]
    assert [r["epoch"] for r in progress.rows][:2] == [1.0, 2.0]  # 2 steps of 4 = 8 examples
    assert progress.best_step == 4 and early.best_weights == 4  # the best point's weights


def test_early_stopping_keeps_the_best_point():
    progress, early, _ = run(
        Scripted([0.25, 0.5, 1.0, 0.75, 0.75, 0.75, 1.0]), settings(patience=3)
    )
    assert progress.stop_reason == "early_stopping"
    assert progress.step == 12  # 3 points without improvement after the best (step 6)
    assert progress.best_step == 6 and early.best_weights == 6
    assert {r["stop_reason"] for r in progress.rows} == {"early_stopping"}
    assert {r["best_step"] for r in progress.rows} == {6}


def test_ties_go_to_the_lower_validation_loss():
    early = EarlyStopping("accuracy", patience=2)
    progress = Progress()
    early.on_evaluate(progress, {"val_accuracy": 0.5, "val_loss": 1.0})
    progress.step = 2
    early.on_evaluate(progress, {"val_accuracy": 0.5, "val_loss": 0.8})
    assert progress.improved and progress.best_step == 2
    progress.step = 4
    early.on_evaluate(progress, {"val_accuracy": 0.5, "val_loss": 0.9})
    assert not progress.improved and progress.bad_points == 1


def test_divergence_stops_and_keeps_the_weights_before_it():
    progress, early, _ = run(Scripted([0.5, 0.75], nan_at=5), settings(patience=0))
    assert progress.stop_reason == "diverged" and progress.step == 4
    assert progress.rows[-1]["diverged"] and progress.rows[-1]["step"] == 4
    assert early.best_weights == 4


@pytest.mark.parametrize("n", [1, 3, 8])
def test_samples_seen_follow_the_passes(n):
    progress, _, budget = run(Scripted([0.5]), settings(patience=0), n=n)
    assert budget.steps == 20  # min_steps: every n here fills a pass in whole batches of <= 4
    assert progress.seen == budget.steps * min(n, 4)
    assert progress.rows[-1]["samples_seen"] == progress.seen


class NoBatchOfOne(Scripted):
    """Fails like BatchNorm does when a training batch holds one example."""

    def train_step(self, indices: list[int]) -> float:
        if len(indices) == 1:
            raise ValueError("Expected more than 1 value per channel when training")
        return super().train_step(indices)


@pytest.mark.parametrize("n, batch", [(5, 4), (17, 16)])
def test_a_last_batch_of_one_is_never_trained_on(n, batch):
    progress, _, budget = run(NoBatchOfOne([0.5]), settings(patience=0, batch_size=batch), n=n)
    assert progress.step == budget.steps and progress.stop_reason == "budget"
    assert progress.seen == budget.steps * (n - 1)  # the odd example waits for the next order


def test_batch_size_one_still_trains():
    progress, _, budget = run(Scripted([0.5]), settings(patience=0, batch_size=1), n=3)
    assert progress.step == budget.steps and progress.seen == budget.steps
