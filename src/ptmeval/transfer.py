"""Transferability scores: rank pretrained models on a target task *before* fine-tuning.

Every score here is computed on FROZEN features (or frozen source-head outputs) of a
pretrained model on the target task's examples; a higher score predicts a better model after
fine-tuning. :func:`score_predictions` then checks, once the models have really been
fine-tuned, how well a score predicted the actual ranking.

Scores and the papers they follow:

* :func:`logme` -- LogME: K. You, Y. Liu, J. Wang, M. Long, "LogME: Practical Assessment of
  Pre-trained Models for Transfer Learning", ICML 2021. Ported from the authors' reference
  implementation (https://github.com/thuml/LogME, ``LogME.py``, the default
  ``_fit_fixed_point`` solver of "Ranking and Tuning Pre-trained Models: A New Paradigm for
  Exploiting Model Hubs", JMLR 2022 / arXiv:2110.10545), with the log-determinant fix of
  thuml/LogME issue #23 (pull request #24) for rank-deficient features (e.g. n < D).
* :func:`h_score` -- H-score: Y. Bao, Y. Li, S.-L. Huang, L. Zhang, L. Zheng, A. Zamir,
  L. Guibas, "An Information-Theoretic Approach to Transferability in Task Transfer Learning",
  ICIP 2019. Optional Ledoit-Wolf shrinkage as in S. Ibrahim, N. Ponomareva, R. Mazumder,
  "Newer is not always better: Rethinking transferability metrics, their peculiarities,
  stability and performance" (2022).
* :func:`leep` -- LEEP: C. V. Nguyen, T. Hassner, M. Seeger, C. Archambeau, "LEEP: A New
  Measure to Evaluate Transferability of Learned Representations", ICML 2020.
* :func:`nce` -- NCE: A. T. Tran, C. V. Nguyen, T. Hassner, "Transferability and Hardness of
  Supervised Classification Tasks", ICCV 2019.
* :func:`knn_accuracy` -- cross-validated k-nearest-neighbour accuracy on the frozen features
  (a simple, assumption-light baseline; scikit-learn).

LEEP and NCE need the pretrained model's *source classification head*: a probability
distribution over the source task's classes (e.g. the 1000 ImageNet classes of an ImageNet
classifier). A decoder language model's LM head is **not** a source classifier -- its
"classes" are vocabulary tokens predicted at every position, not labels of the input -- so
LEEP/NCE are only meaningful for models with a real source classification head.
:func:`transfer_scores` therefore computes them only when ``source_probs`` is given.

All log-based scores use natural logarithms (nats). Inputs are plain numpy arrays; features
may be float32 (they are converted to float64 internally). Labels may be any integer (or
otherwise sortable) values; the classes are the distinct values present in ``labels``.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.stats import weightedtau
from sklearn.covariance import LedoitWolf
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ptmeval.config import FinetuneSettings
from ptmeval.io import read_table
from ptmeval.metrics import get_metric

__all__ = [
    "frozen_probe_scores",
    "h_score",
    "knn_accuracy",
    "leep",
    "logme",
    "nce",
    "read_subsets",
    "score_predictions",
    "transfer_scores",
]

_EPS64 = float(np.finfo(np.float64).eps)


# --------------------------------------------------------------------------- input checks


def _check_labels(labels: np.ndarray, n: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Return (class values, class index per example in 0..K-1); raise on bad input."""
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be a 1-D array, got shape {y.shape}")
    if y.shape[0] != n:
        raise ValueError(
            f"{what} and labels have mismatched lengths: {n} rows vs {y.shape[0]} labels"
        )
    classes, index = np.unique(y, return_inverse=True)
    if classes.shape[0] < 2:
        found = classes.tolist()
        raise ValueError(f"need at least 2 classes in labels, got {len(found)}: {found!r}")
    return classes, index.reshape(-1)


def _check_features(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (float64 features n x D, class index per example); raise on bad input."""
    f = np.asarray(features)
    if f.ndim != 2:
        raise ValueError(f"features must be a 2-D array (n x D), got shape {f.shape}")
    if f.shape[0] == 0 or f.shape[1] == 0:
        raise ValueError(f"features must be non-empty, got shape {f.shape}")
    f = f.astype(np.float64, copy=False)
    if not np.all(np.isfinite(f)):
        raise ValueError("features contain NaN or infinite values")
    _, y = _check_labels(labels, f.shape[0], "features")
    return f, y


def _check_probs(source_probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (row-normalised float64 probabilities n x Z, class index); raise on bad input."""
    p = np.asarray(source_probs)
    if p.ndim != 2:
        raise ValueError(f"source_probs must be a 2-D array (n x Z), got shape {p.shape}")
    p = p.astype(np.float64, copy=False)
    if not np.all(np.isfinite(p)):
        raise ValueError("source_probs contain NaN or infinite values")
    if np.any(p < 0):
        raise ValueError("source_probs must be probabilities (>= 0); got negative values")
    sums = p.sum(axis=1)
    if not np.allclose(sums, 1.0, atol=1e-3):
        raise ValueError(
            "source_probs rows must sum to 1 (probabilities over the source classes); "
            f"row sums range from {sums.min():.4g} to {sums.max():.4g}. "
            "Pass softmax(logits), not logits."
        )
    _, y = _check_labels(labels, p.shape[0], "source_probs")
    return p / sums[:, None], y


# --------------------------------------------------------------------------------- LogME


def _spectrum(f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Left singular vectors and squared singular values of ``f`` (n x D), numerically nonzero.

    Mirrors the reference implementation: when n > D the SVD is obtained from the D x D Gram
    matrix (cheap for many examples), otherwise from a thin SVD of ``f``. Squared singular
    values below ``max(n, D) * eps * largest`` are treated as zero (their directions go into
    the residual and their ``log(alpha)`` terms are added back to the log-determinant).
    """
    n, d = f.shape
    if n > d:
        sigma, v = np.linalg.eigh(f.T @ f)
        keep = sigma > max(n, d) * _EPS64 * max(float(sigma.max()), 0.0)
        sigma, v = sigma[keep], v[:, keep]
        u = (f @ v) / np.sqrt(sigma)
    else:
        u, s, _ = np.linalg.svd(f, full_matrices=False)
        sigma = s**2
        keep = sigma > max(n, d) * _EPS64 * float(sigma.max())
        sigma, u = sigma[keep], u[:, keep]
    return u, sigma


def _logme_evidence(
    u: np.ndarray,
    sigma: np.ndarray,
    target: np.ndarray,
    d: int,
    max_iter: int,
    tol: float,
) -> tuple[float, float, float]:
    """Maximised log evidence / n of one target column, with its (alpha, beta).

    Bayesian linear model ``y = f w + noise``, ``w ~ N(0, alpha^-1 I_D)``,
    ``noise ~ N(0, beta^-1 I_n)``. Fixed-point iteration (You et al.; thuml/LogME
    ``_fit_fixed_point``) in the eigenbasis of ``f^T f``, then the evidence

        D/2 log a + n/2 log b - 1/2 log|a I_D + b f^T f| - b/2 |f m - y|^2 - a/2 |m|^2
        - n/2 log 2 pi,

    with the log-determinant over all D eigenvalues (zeros padded, thuml/LogME #23).
    """
    n = target.shape[0]
    k = sigma.shape[0]
    x = u.T @ target
    x2 = x**2
    # squared norm of the part of y outside the column space of f (k < n)
    res_x2 = max(float(target @ target - x2.sum()), 0.0)
    alpha, beta = 1.0, 1.0
    m2 = res2 = 0.0
    for _ in range(max_iter):
        t = alpha / beta
        gamma = float((sigma / (sigma + t)).sum())
        m2 = float((sigma * x2 / (t + sigma) ** 2).sum())
        res2 = float((x2 / (1.0 + sigma / t) ** 2).sum()) + res_x2
        alpha = gamma / (m2 + 1e-5)
        beta = (n - gamma) / (res2 + 1e-5)
        t_new = alpha / beta
        if abs(t_new - t) / t <= tol:
            break
    logdet = float(np.log(alpha + beta * sigma).sum()) + (d - k) * math.log(alpha)
    evidence = (
        d / 2.0 * math.log(alpha)
        + n / 2.0 * math.log(beta)
        - 0.5 * logdet
        - beta / 2.0 * res2
        - alpha / 2.0 * m2
        - n / 2.0 * math.log(2.0 * math.pi)
    )
    return evidence / n, alpha, beta


def logme(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    max_iter: int = 1000,
    tol: float = 1e-6,
) -> float:
    """LogME: mean over classes of the maximised log evidence per example.

    Follows You et al., "LogME: Practical Assessment of Pre-trained Models for Transfer
    Learning", ICML 2021, ported from the authors' reference implementation
    (github.com/thuml/LogME, ``LogME._fit_fixed_point``, the library's default solver).
    For each class ``c`` the one-vs-rest target ``y_c = 1[labels == c]`` is modelled as a
    Bayesian linear regression on the raw (un-centred, un-scaled) features; the prior
    precision ``alpha`` and noise precision ``beta`` are found by the fixed-point updates

        gamma = sum_i sigma_i / (sigma_i + alpha/beta),
        alpha = gamma / (|m|^2 + 1e-5),  beta = (n - gamma) / (|f m - y|^2 + 1e-5),

    computed from the SVD of the feature matrix (``sigma_i`` = squared singular values), and
    the log evidence at the fixed point is divided by ``n``. The score is the mean over
    classes.

    Iteration stops when the relative change of ``alpha/beta`` is at most ``tol`` or after
    ``max_iter`` updates. The reference uses ``max_iter=11, tol=1e-3`` ("should converge
    after at most 10 steps"), which holds for ``n >> D`` but not when ``n <= D`` (few target
    examples, wide features): there the iteration converges slowly and 11 steps can leave
    the score ~0.05 below the maximum. The defaults here (1000, 1e-6) reach the fixed point
    (each step costs O(rank), negligible next to the SVD); pass ``max_iter=11, tol=1e-3``
    to reproduce the reference's numbers.

    Deviation from the reference, on purpose: the log-determinant ``log|alpha I + beta f^T
    f|`` includes ``log(alpha)`` for each of the ``D - rank(f)`` zero eigenvalues (bug
    reported in thuml/LogME issue #23, fix in pull request #24); the reference drops them
    when ``n < D``. With full-rank features and ``n > D`` the result is identical.

    Classes are the distinct values of ``labels`` (an absent class would give an all-zero
    target whose evidence is unbounded). For K = 2 both one-vs-rest targets are scored, as
    in the reference. A class with a single example is scored like any other (its target
    has one 1). Raises ``ValueError`` for mismatched lengths, fewer than 2 classes, non-finite
    or all-zero features.
    """
    f, y = _check_features(features, labels)
    if max_iter < 1 or tol <= 0:
        raise ValueError("max_iter must be >= 1 and tol > 0")
    if not np.any(f):
        raise ValueError("features are all zero: LogME is undefined for rank-0 features")
    d = f.shape[1]
    u, sigma = _spectrum(f)
    evidences = [
        _logme_evidence(u, sigma, (y == c).astype(np.float64), d, max_iter, tol)[0]
        for c in range(int(y.max()) + 1)
    ]
    return float(np.mean(evidences))


# ------------------------------------------------------------------------------- H-score


def h_score(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    regularization: Literal["pinv", "ledoit-wolf"] = "pinv",
) -> float:
    """H-score: ``tr(cov(f)^-1 cov(E[f | y]))``.

    Follows Bao et al., "An Information-Theoretic Approach to Transferability in Task
    Transfer Learning", ICIP 2019. Covariances are the (biased, 1/n) sample covariances of
    the features and of the class-conditional means ``E[f | y]`` (each example replaced by
    its class mean, classes weighted by their frequency). The score lies in ``[0, K - 1]``.

    ``regularization``:

    * ``"pinv"`` (default, the paper's estimator): ``cov(f)^-1`` is the Moore-Penrose
      pseudo-inverse, from an eigen-decomposition with eigenvalues below
      ``max(n, D) * eps * largest`` treated as zero. Degenerate when ``n <= D + 1``: the
      features then span only ``n - 1`` dimensions and the score equals ``K - 1`` whatever
      the features (a ``RuntimeWarning`` is issued).
    * ``"ledoit-wolf"``: the shrinkage H-score of Ibrahim et al. (2022),
      ``tr(cov_a(f)^-1 (1 - a) cov(E[f | y]))`` with ``cov_a`` the Ledoit-Wolf shrunk
      covariance and ``a`` its shrinkage (scikit-learn ``LedoitWolf``); well-defined for
      small n.

    A class with a single example contributes its one example as its mean. Constant
    features give 0. Raises ``ValueError`` for mismatched lengths or fewer than 2 classes.
    """
    f, y = _check_features(features, labels)
    n, d = f.shape
    fc = f - f.mean(axis=0)
    counts = np.bincount(y).astype(np.float64)
    means = np.zeros((counts.shape[0], d))
    np.add.at(means, y, fc)
    means /= counts[:, None]  # class means of the centred features
    weights = counts / n

    if regularization == "pinv":
        if n <= d + 1:
            warnings.warn(
                f"H-score with a pseudo-inverse is degenerate for n={n} <= D+1={d + 1} "
                "(it equals K-1 for any features); use regularization='ledoit-wolf'",
                RuntimeWarning,
                stacklevel=2,
            )
        cov = fc.T @ fc / n
        between_scale = 1.0
    elif regularization == "ledoit-wolf":
        lw = LedoitWolf(assume_centered=True).fit(fc)
        cov = lw.covariance_
        between_scale = 1.0 - float(lw.shrinkage_)
    else:
        raise ValueError(f"unknown regularization {regularization!r} (pinv, ledoit-wolf)")

    lam, vecs = np.linalg.eigh(cov)
    top = float(lam.max())
    if top <= 0.0:
        return 0.0
    keep = lam > max(n, d) * _EPS64 * top
    proj = (means @ vecs[:, keep]) / np.sqrt(lam[keep])
    # tr(C^+ sum_k w_k mu_k mu_k^T) = sum_k w_k |C^{+1/2} mu_k|^2
    return float(between_scale * (weights * (proj**2).sum(axis=1)).sum())


# ---------------------------------------------------------------------------- LEEP / NCE


def leep(source_probs: np.ndarray, labels: np.ndarray) -> float:
    """LEEP: average log-likelihood of the Expected Empirical Prediction.

    Follows Nguyen et al., "LEEP: A New Measure to Evaluate Transferability of Learned
    Representations", ICML 2020. With ``theta(x_i)`` the source model's probabilities over
    its Z source classes (``source_probs``, n x Z):

        P(y, z) = 1/n sum_{i: y_i = y} theta(x_i)_z,   P(y | z) = P(y, z) / sum_y' P(y', z),
        LEEP = 1/n sum_i log( sum_z P(y_i | z) theta(x_i)_z ).

    Source classes that receive no probability mass on the target data (``P(z) = 0``) are
    skipped (they contribute 0 to every example). Rows of ``source_probs`` are re-normalised
    to sum exactly to 1; rows that are far from summing to 1 (e.g. logits) raise
    ``ValueError``. The score is <= 0 (nats); higher is better. Only meaningful for a model
    with a real source classification head (not a language model's LM head).
    """
    p, y = _check_probs(source_probs, labels)
    n = p.shape[0]
    k = int(y.max()) + 1
    joint = np.zeros((k, p.shape[1]))
    np.add.at(joint, y, p)
    joint /= n  # P(y, z)
    pz = joint.sum(axis=0)
    cond = np.divide(joint, pz, out=np.zeros_like(joint), where=pz > 0)  # P(y | z)
    eep = (p * cond[y]).sum(axis=1)  # sum_z P(y_i | z) theta(x_i)_z
    return float(np.mean(np.log(eep)))


def nce(source_labels: np.ndarray, labels: np.ndarray) -> float:
    """NCE: negative conditional entropy ``-H(Y | Z)`` of target labels given source labels.

    Follows Tran et al., "Transferability and Hardness of Supervised Classification Tasks",
    ICCV 2019. ``Z`` are the source model's hard labels on the target examples (argmax of its
    source classification head), ``Y`` the target labels; from their empirical joint

        NCE = sum_{y, z} P(y, z) log P(y | z)   (nats, <= 0).

    It is 0 when Z determines Y and ``-H(Y)`` when Z is constant. Source labels may be any
    integer values (only equality matters). Raises ``ValueError`` for mismatched lengths or
    fewer than 2 target classes.
    """
    z = np.asarray(source_labels)
    if z.ndim != 1:
        raise ValueError(f"source_labels must be a 1-D array, got shape {z.shape}")
    _, y = _check_labels(labels, z.shape[0], "source_labels")
    _, zi = np.unique(z, return_inverse=True)
    zi = zi.reshape(-1)
    joint = np.zeros((int(y.max()) + 1, int(zi.max()) + 1))
    np.add.at(joint, (y, zi), 1.0)
    joint /= joint.sum()
    pz = joint.sum(axis=0)
    nz = joint > 0
    cond = joint[nz] / np.broadcast_to(pz, joint.shape)[nz]
    return float((joint[nz] * np.log(cond)).sum())


# ----------------------------------------------------------------------------------- k-NN


def knn_accuracy(
    features: np.ndarray,
    labels: np.ndarray,
    k: int = 5,
    folds: int = 5,
    seed: int = 0,
) -> float:
    """Stratified k-fold cross-validated k-NN accuracy of the frozen features.

    Each fold standardises the features (``StandardScaler`` fitted on the training part
    only, so no leakage) and classifies with ``KNeighborsClassifier(k, metric="cosine")``
    (brute force; majority vote, ties to the smallest class). Cosine on standardised
    features ignores feature scale and norm, which vary widely between pretrained models.
    Returns the pooled out-of-fold accuracy (fraction of all examples predicted correctly).

    Small classes: the number of folds is reduced to the size of the largest class when that
    is smaller than ``folds`` (scikit-learn's warning about classes smaller than the number
    of folds is silenced: such classes simply miss from some training folds), and ``k`` is
    reduced to the smallest training-fold size. Raises ``ValueError`` for mismatched
    lengths, fewer than 2 classes, ``k < 1``, ``folds < 2``, or when no class has 2 examples
    (no stratified split is possible).
    """
    f, y = _check_features(features, labels)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    n_folds = min(folds, int(np.bincount(y).max()))
    if n_folds < 2:
        raise ValueError("k-NN cross-validation needs at least one class with 2 examples")
    cv = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        splits = list(cv.split(f, y))
    smallest_train = min(len(train) for train, _ in splits)
    model = make_pipeline(
        StandardScaler(),
        KNeighborsClassifier(n_neighbors=min(k, smallest_train), metric="cosine"),
    )
    pred = cross_val_predict(model, f, y, cv=splits)
    return float(np.mean(pred == y))


# ------------------------------------------------------------------ checking predictions


def score_predictions(
    scores: dict[str, float],
    actual: dict[str, float],
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, float | int | str]:
    """How well a transferability score predicted the actual fine-tuned ranking of models.

    ``scores`` maps model name -> transferability score, ``actual`` model name -> test score
    after fine-tuning; both higher-is-better. Models present in both with finite values are
    compared. Returns

    * ``tau``: weighted Kendall tau (``scipy.stats.weightedtau``, hyperbolic weigher,
      averaged over both rankings), which weights agreement among the top models most;
      1 for identical rankings, -1 for reversed;
    * ``tau_lo``, ``tau_hi``: 95% percentile bootstrap interval of tau, resampling the
      models with replacement ``n_boot`` times (resamples where tau is undefined, e.g. all
      draws the same model, are dropped);
    * ``n_models``: number of models compared; ``n_boot``: bootstrap resamples used;
    * ``note``: empty when all is well, otherwise why a value is NaN (fewer than 3 models,
      constant scores, degenerate bootstrap) or which models were ignored.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    notes: list[str] = []
    common = sorted(set(scores) & set(actual))
    only_one = sorted(set(scores) ^ set(actual))
    if only_one:
        notes.append(f"ignored {len(only_one)} model(s) not in both: {', '.join(only_one)}")
    names = [
        m for m in common if math.isfinite(float(scores[m])) and math.isfinite(float(actual[m]))
    ]
    if len(names) < len(common):
        notes.append(f"ignored {len(common) - len(names)} model(s) with a non-finite value")
    x = np.array([float(scores[m]) for m in names])
    a = np.array([float(actual[m]) for m in names])
    result: dict[str, float | int | str] = {
        "tau": math.nan,
        "tau_lo": math.nan,
        "tau_hi": math.nan,
        "n_models": len(names),
        "n_boot": 0,
        "note": "",
    }
    if len(names) < 3:
        notes.append(f"need at least 3 models to compare rankings, got {len(names)}")
        result["note"] = "; ".join(notes)
        return result
    tau = float(weightedtau(x, a).statistic)
    if not math.isfinite(tau):
        notes.append("weighted tau undefined (scores or actual results are all equal)")
        result["note"] = "; ".join(notes)
        return result
    result["tau"] = tau

    rng = np.random.default_rng(seed)
    boots = np.empty(n_boot)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        for b in range(n_boot):
            idx = rng.integers(0, len(names), size=len(names))
            boots[b] = weightedtau(x[idx], a[idx]).statistic
    valid = boots[np.isfinite(boots)]
    result["n_boot"] = int(valid.shape[0])
    if valid.shape[0] < max(2, n_boot // 2):
        n_ok = valid.shape[0]
        notes.append(f"bootstrap degenerate: only {n_ok} of {n_boot} resamples defined tau")
    else:
        if valid.shape[0] < n_boot:
            notes.append(f"{n_boot - valid.shape[0]} degenerate bootstrap resample(s) dropped")
        result["tau_lo"] = float(np.percentile(valid, 2.5))
        result["tau_hi"] = float(np.percentile(valid, 97.5))
    result["note"] = "; ".join(notes)
    return result


# ------------------------------------------------------------------------------ all at once


def transfer_scores(
    features: np.ndarray,
    labels: np.ndarray,
    source_probs: np.ndarray | None = None,
) -> dict[str, float]:
    """All transferability scores that apply, with default settings.

    Always ``logme``, ``h_score`` (pseudo-inverse estimator; it warns when ``n <= D + 1``)
    and ``knn_accuracy``; ``leep`` and ``nce`` (``Z`` = argmax of ``source_probs``) only when
    ``source_probs`` -- the probabilities of a real source classification head, not a
    language model's LM head -- is given; otherwise those keys are absent.
    """
    out = {
        "logme": logme(features, labels),
        "h_score": h_score(features, labels),
        "knn_accuracy": knn_accuracy(features, labels),
    }
    if source_probs is not None:
        probs = np.asarray(source_probs)
        if probs.ndim != 2 or probs.shape[0] != np.asarray(features).shape[0]:
            raise ValueError(
                f"source_probs must be n x Z with the same n as features; got {probs.shape} "
                f"for {np.asarray(features).shape[0]} examples"
            )
        out["leep"] = leep(probs, labels)
        out["nce"] = nce(probs.argmax(axis=1), labels)
    return out


def score_task(
    model: str, task: str, features: pd.DataFrame, knn_k: int = 5, seed: int = 0
) -> pd.DataFrame:
    """`transfer_scores` on a cached feature table (the task's training pool only), as one row.

    LEEP and NCE are computed only when the table has `source_probs` (a real source classifier,
    such as EfficientNet-Lite0's ImageNet head); otherwise they are NaN with a note.
    """
    import time

    pool = features[features["split"] == "train"]
    x = np.stack(pool["feature"].to_numpy()).astype(np.float64)
    y = pool["label"].to_numpy()
    probs = np.stack(pool["source_probs"].to_numpy()) if "source_probs" in pool else None
    start = time.perf_counter()
    notes = []
    # with no more examples than dimensions the pseudo-inverse H-score is K-1 whatever the
    # features: use the shrinkage estimator (Ibrahim et al. 2022) there
    regularization: Literal["pinv", "ledoit-wolf"] = "pinv"
    if len(y) <= x.shape[1] + 1:
        regularization = "ledoit-wolf"
        notes.append("H-score: Ledoit-Wolf shrinkage (n <= feature dim + 1)")
    scores = {
        "logme": logme(x, y),
        "h_score": h_score(x, y, regularization=regularization),
        "knn_accuracy": knn_accuracy(x, y, k=knn_k, seed=seed),
    }
    if probs is not None:
        scores["leep"] = leep(probs, y)
        scores["nce"] = nce(probs.argmax(axis=1), y)
    else:
        notes.append("LEEP/NCE: no source classification head")
    probe = linear_probe_score(features)
    row = {
        "model": model,
        "task": task,
        "n_examples": len(y),
        "linear_probe_val_accuracy": probe,
        "feature_mean": x.mean(axis=0).astype(np.float32),
        "feature_var": x.var(axis=0).astype(np.float32),
        "feature_dim": x.shape[1],
        "logme": scores["logme"],
        "h_score": scores["h_score"],
        "knn_accuracy": scores["knn_accuracy"],
        "leep": scores.get("leep", float("nan")),
        "nce": scores.get("nce", float("nan")),
        "scores_wall_s": time.perf_counter() - start,
        "features_wall_s": (
            float(features["extract_wall_s"].iloc[0])
            if "extract_wall_s" in features
            else float("nan")
        ),
        "note": "; ".join(notes),
    }
    return pd.DataFrame([row])


def linear_probe_score(features: pd.DataFrame, c: float = 1.0) -> float:
    """Validation accuracy of a logistic-regression probe fitted on the training pool (a naive
    baseline for predicting fine-tuned performance)."""
    train = features[features["split"] == "train"]
    val = features[features["split"] == "validation"]
    if val.empty or train["label"].nunique() < 2:
        return float("nan")
    scaler = StandardScaler()
    x = scaler.fit_transform(np.stack(train["feature"].to_numpy()).astype(np.float64))
    clf = LogisticRegression(C=c, max_iter=1000).fit(x, train["label"].to_numpy())
    xv = scaler.transform(np.stack(val["feature"].to_numpy()).astype(np.float64))
    return float(np.mean(clf.predict(xv) == val["label"].to_numpy()))


# ------------------------------------------------------- frozen-feature reference scores

PROBE_C_GRID = tuple(FinetuneSettings().c_grid)  # the probes' and TF-IDF's grid: one place
PROBE_METRICS = ("accuracy", "macro_f1")
FROZEN_COLUMNS = [
    "model",
    "task",
    "init",
    "fraction",
    "seed",
    "n_train",
    "probe_c",
    "val_accuracy",
    "metric",
    "value",
    "note",
]


def read_subsets(paths: list[str] | list[Path]) -> dict[tuple[float, int], pd.DataFrame]:
    """The training subsets by (fraction, seed), read from their paths
    ``results/subsample/{task}/{fraction}/{seed}/{key}/train.parquet`` (only ``row_id`` is
    read)."""
    out: dict[tuple[float, int], pd.DataFrame] = {}
    for path in map(Path, paths):
        try:
            key = (float(path.parents[2].name), int(path.parents[1].name))
        except (ValueError, IndexError):
            raise ValueError(
                f"'{path}' is not a subset path .../{{fraction}}/{{seed}}/{{key}}/train.parquet"
            ) from None
        out[key] = read_table(path, columns=["row_id"])
    return out


def _matrix(rows: pd.DataFrame) -> np.ndarray:
    return np.stack(rows["feature"].to_numpy()).astype(np.float64)


def _full_probs(clf: LogisticRegression, x: np.ndarray, num_labels: int) -> np.ndarray:
    """Class probabilities with one column per label 0..num_labels-1 (unseen classes get 0)."""
    probs = np.zeros((x.shape[0], num_labels))
    probs[:, np.asarray(clf.classes_, dtype=int)] = clf.predict_proba(x)
    return probs


def frozen_probe_scores(
    model: str,
    task: str,
    features: pd.DataFrame,
    subsets: dict[tuple[float, int], pd.DataFrame],
    grid: tuple[float, ...] = PROBE_C_GRID,
    max_iter: int = 1000,
) -> pd.DataFrame:
    """Test scores of a logistic-regression probe on the frozen features, per training subset:
    the reference a full fine-tune of the same model at the same size should not fall below.

    For each (fraction, seed) in ``subsets`` (tables with ``row_id``, the exact training subset
    the fine-tunes of that size and seed use): the subset's rows of the feature table's training
    split are standardised (``StandardScaler`` fitted on the subset), one
    ``LogisticRegression(C)`` is fitted per ``C`` in ``grid``, the ``C`` with the best accuracy on
    the whole validation split is kept (ties to the smaller ``C``; ``C = 1`` without a
    validation split) and scored on the test split with :mod:`ptmeval.metrics` (``accuracy``,
    ``macro_f1``). Labels are class indices 0..K-1 as in the task table.

    Long form, one row per subset and metric: ``model, task, init`` ("pretrained"), ``fraction,
    seed, n_train, probe_c, val_accuracy, metric, value, note``. A subset with a single class
    gets NaN values and a note; a fit that stopped at ``max_iter`` is noted. Raises
    ``ValueError`` when a subset names a row that is not in the features' training split.
    """
    for col in ("row_id", "split", "label", "feature"):
        if col not in features:
            raise ValueError(f"{model}/{task}: the feature table lacks column '{col}'")
    pool = features[features["split"] == "train"].set_index("row_id")
    val = features[features["split"] == "validation"]
    test = features[features["split"] == "test"]
    if test.empty:
        raise ValueError(f"{model}/{task}: the feature table has no test split")
    num_labels = int(features["label"].max()) + 1
    has_val = len(val) > 0
    x_val = _matrix(val) if has_val else None
    y_val = val["label"].to_numpy()
    x_test, y_test = _matrix(test), test["label"].to_numpy()
    rows = []
    for (fraction, seed), subset in sorted(subsets.items()):
        ids = _subset_ids(pool, subset, model, task, fraction, seed)
        train = pool.loc[ids]
        base = {
            "model": model,
            "task": task,
            "init": "pretrained",
            "fraction": float(fraction),
            "seed": int(seed),
            "n_train": len(ids),
        }
        y = train["label"].to_numpy()
        if len(np.unique(y)) < 2:
            values = dict.fromkeys(PROBE_METRICS, np.nan)
            note = "single class in the training subset: no probe"
            rows += _metric_rows(base, np.nan, np.nan, values, note)
            continue
        scaler = StandardScaler().fit(_matrix(train))
        x = scaler.transform(_matrix(train))
        best, notes = _best_probe(scaler, x, y, x_val, y_val, grid, max_iter, num_labels)
        probs = _full_probs(best[2], scaler.transform(x_test), num_labels)
        values = {m: get_metric(m)(probs, y_test) for m in PROBE_METRICS}
        rows += _metric_rows(base, best[1], best[0], values, "; ".join(notes))
    return pd.DataFrame(rows, columns=FROZEN_COLUMNS)


def _subset_ids(
    pool: pd.DataFrame, subset: pd.DataFrame, model: str, task: str, fraction: float, seed: int
) -> pd.Index:
    """The subset's row_ids, checked to be rows of the features' training split ``pool``."""
    ids = pd.Index(subset["row_id"])
    unknown = ids[~ids.isin(pool.index)]
    if len(unknown):
        raise ValueError(
            f"{model}/{task}: {len(unknown)} row_id(s) of the training subset at fraction "
            f"{fraction:g}, seed {seed} are not in the features' training split "
            f"(e.g. {unknown[0]!r}); the features and the subsets come from different "
            "task tables: recompute them"
        )
    return ids


def _best_probe(
    scaler: StandardScaler,
    x: np.ndarray,
    y: np.ndarray,
    x_val: np.ndarray | None,
    y_val: np.ndarray,
    grid: tuple[float, ...],
    max_iter: int,
    num_labels: int,
) -> tuple[tuple[float, float, LogisticRegression], list[str]]:
    """The probe of best validation accuracy over ``grid`` (C = 1 without a validation split),
    as (validation accuracy, C, fitted model), and the notes on its fits."""
    best: tuple[float, float, LogisticRegression] | None = None
    notes = []
    for c in grid if x_val is not None else (1.0,):
        clf = LogisticRegression(C=c, max_iter=max_iter)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=ConvergenceWarning)  # noted below
            clf.fit(x, y)
        if int(np.max(clf.n_iter_)) >= max_iter:
            notes.append(f"C={c:g} stopped at {max_iter} iterations")
        acc = np.nan
        if x_val is not None:
            acc = get_metric("accuracy")(
                _full_probs(clf, scaler.transform(x_val), num_labels), y_val
            )
        if best is None or acc > best[0]:
            best = (acc, c, clf)
    assert best is not None
    if x_val is None:
        notes.append("no validation split: C = 1")
    return best, notes


def _metric_rows(
    base: dict[str, Any],
    probe_c: float,
    val_accuracy: float,
    values: dict[str, float],
    note: str,
) -> list[dict[str, Any]]:
    """The long-form rows of one subset's probe, one per metric of ``PROBE_METRICS``."""
    return [
        {
            **base,
            "probe_c": probe_c,
            "val_accuracy": val_accuracy,
            "metric": m,
            "value": values[m],
            "note": note,
        }
        for m in PROBE_METRICS
    ]


def frechet_diag(
    mean_a: np.ndarray, var_a: np.ndarray, mean_b: np.ndarray, var_b: np.ndarray
) -> float:
    """Fréchet distance between two Gaussians with diagonal covariances:
    ||μa − μb||² + Σ (σa² + σb² − 2 σa σb). A task-similarity measure on frozen features."""
    mean_a, mean_b = np.asarray(mean_a, float), np.asarray(mean_b, float)
    sa, sb = np.sqrt(np.asarray(var_a, float)), np.sqrt(np.asarray(var_b, float))
    return float(np.sum((mean_a - mean_b) ** 2) + np.sum((sa - sb) ** 2))
