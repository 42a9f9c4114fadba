import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from ptmeval.metrics import METRICS, accuracy, ece, get_metric, macro_f1


def random_probs(n=200, k=4, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return probs, rng.integers(0, k, size=n)


def test_accuracy_and_macro_f1_match_sklearn():
    probs, target = random_probs()
    pred = probs.argmax(1)
    assert accuracy(probs, target) == pytest.approx(accuracy_score(target, pred))
    assert macro_f1(probs, target) == pytest.approx(f1_score(target, pred, average="macro"))


def test_ece_of_perfectly_calibrated_and_overconfident():
    target = np.array([0, 1, 0, 1])
    half = np.full((4, 2), 0.5)
    assert ece(half, target) == pytest.approx(0.0)  # 50% confident, 50% right (argmax is class 0)
    sure_wrong = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    assert ece(sure_wrong, target) == pytest.approx(1.0)


def test_registry():
    assert set(METRICS) == {"accuracy", "macro_f1", "ece"}
    assert METRICS["ece"].higher_is_better is False
    with pytest.raises(KeyError, match="did you mean 'accuracy'"):
        get_metric("acuracy")
