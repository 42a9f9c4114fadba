"""Metric registry. A metric is a pure function `name(probs, target) -> float` over class
probabilities (n × k) and integer targets (n), with a `higher_is_better` attribute."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ptmeval._names import unknown_name_message

Metric = Callable[[np.ndarray, np.ndarray], float]
METRICS: dict[str, Metric] = {}


def metric(higher_is_better: bool) -> Callable[[Metric], Metric]:
    def wrap(fn: Metric) -> Metric:
        fn.higher_is_better = higher_is_better  # type: ignore[attr-defined]
        METRICS[fn.__name__] = fn
        return fn

    return wrap


@metric(higher_is_better=True)
def accuracy(probs: np.ndarray, target: np.ndarray) -> float:
    """Share of examples whose most probable class is the target."""
    return float(np.mean(np.argmax(probs, axis=1) == target))


@metric(higher_is_better=True)
def macro_f1(probs: np.ndarray, target: np.ndarray) -> float:
    """Unweighted mean of per-class F1 over the classes present in target or prediction."""
    pred = np.argmax(probs, axis=1)
    classes = np.union1d(pred, target)
    scores = []
    for c in classes:
        tp = np.sum((pred == c) & (target == c))
        fp = np.sum((pred == c) & (target != c))
        fn = np.sum((pred != c) & (target == c))
        denom = 2 * tp + fp + fn
        scores.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(scores))


@metric(higher_is_better=False)
def ece(probs: np.ndarray, target: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error of the top-class confidence (equal-width bins)."""
    conf = probs.max(axis=1)
    correct = np.argmax(probs, axis=1) == target
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.mean() * abs(correct[mask].mean() - conf[mask].mean())
    return float(total)


def get_metric(name: str) -> Metric:
    if name not in METRICS:
        raise KeyError(unknown_name_message("metric", name, METRICS))
    return METRICS[name]


def score_all(probs: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Every registered metric."""
    return {name: fn(probs, target) for name, fn in METRICS.items()}
