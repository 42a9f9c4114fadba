"""Statistical comparison of systems evaluated on the same test split.

A *system* is one model + initialisation + fine-tuning method, e.g. ``minilm-l6 (pretrained,
full)``. Every system of a task is scored on the same fixed test split, so the per-example
correctness vectors of two systems are *paired*: row ``r`` of system A and row ``r`` of system B
are the same test example. All tests here exploit that pairing, which removes the variance that
comes from which examples happen to be in the test set and makes them much more sensitive than
comparing two accuracies as if they were independent samples:

* McNemar's test uses only the discordant examples (right for one system, wrong for the other).
* The paired bootstrap resamples test *examples*, with the same resampled indices for every
  system, so each replicate compares all systems on the same pseudo test set.

Rows are matched by ``row_id`` (never by position); when two systems (or two seeds of one system)
were not scored on exactly the same ``row_id`` s, a :class:`ValueError` is raised.

Seeds. A system usually has several seeds (training runs) at a training size. They are used in
two ways, and the output says which number comes from which:

* **Seed-paired McNemar.** Seed ``s`` of A is paired with seed ``s`` of B for every seed both
  have (if they share no seed, the seeds are paired in sorted order, ``seed_pairing="by order"``).
  One McNemar test is run per seed pair and the p-values are combined with a median rule that is
  valid under any dependence between them (:func:`combine_seed_pvalues`). Fisher's or Stouffer's
  method is *not* used: they assume independent p-values, whereas the seed-paired tests share the
  same test examples (and training data), so they are strongly positively dependent and those
  methods would count the same evidence once per seed (anti-conservative).
* **Pooled bootstrap.** Each system's per-example correctness is averaged over all its seeds
  (a fraction in [0, 1]); its mean is the system's mean accuracy over seeds. The paired bootstrap
  (difference CI, Cohen's h CI, bootstrap p-value, rank intervals) runs on these pooled vectors.
  It captures test-set sampling variability only; the seed-to-seed variability is averaged out,
  not propagated into the intervals.

Training size: comparisons are made at one ``n_train`` per system, by default the largest one each
system has on the task (so two systems can be compared at different sizes; both are reported).

All distributions come from scipy/statsmodels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar as _sm_mcnemar
from statsmodels.stats.multitest import multipletests

__all__ = [
    "cohens_h",
    "combine_seed_pvalues",
    "five_by_two_cv_f_test",
    "mcnemar",
    "paired_bootstrap",
    "pairwise_comparisons",
    "rank_intervals",
    "paired_test",
    "system_label",
]

#: Below this many discordant pairs McNemar's test uses the exact binomial distribution.
EXACT_MCNEMAR_BELOW = 25

_REQUIRED = ["model", "task", "init", "method", "seed", "n_train", "row_id", "correct"]
_ROUND = 12  # decimals used to compare bootstrap accuracies for ties (removes float noise)
_CHUNK_CELLS = 2_000_000  # bootstrap weights generated per chunk (n_boot_chunk * n_examples)

PAIRWISE_COLUMNS = [
    "task",
    "system_a",
    "system_b",
    "n_train_a",
    "n_train_b",
    "n_test",
    "n_seeds_a",
    "n_seeds_b",
    "n_seed_pairs",
    "seed_pairing",
    "acc_a",
    "acc_b",
    "diff",
    "diff_lo",
    "diff_hi",
    "cohens_h",
    "cohens_h_lo",
    "cohens_h_hi",
    "mcnemar_test",
    "mcnemar_p_median",
    "mcnemar_p",
    "bootstrap_p",
    "mcnemar_p_holm",
    "bootstrap_p_holm",
    "significant",
]

RANK_COLUMNS = [
    "task",
    "system",
    "model",
    "init",
    "method",
    "n_train",
    "n_seeds",
    "n_test",
    "accuracy",
    "accuracy_lo",
    "accuracy_hi",
    "rank",
    "rank_lo",
    "rank_hi",
    "p_best",
]


# --------------------------------------------------------------------------------------------
# Two-system tests on correctness vectors
# --------------------------------------------------------------------------------------------


def _align_pair(
    correct_a: npt.ArrayLike | pd.Series, correct_b: npt.ArrayLike | pd.Series
) -> tuple[np.ndarray, np.ndarray]:
    """Two 1-D vectors over the same examples; pandas Series are matched on their index."""
    if isinstance(correct_a, pd.Series) and isinstance(correct_b, pd.Series):
        _check_same_rows(correct_a.index, correct_b.index, "system a", "system b")
        correct_b = correct_b.loc[correct_a.index]
    a = np.asarray(correct_a)
    b = np.asarray(correct_b)
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError("correctness vectors must be one-dimensional")
    if a.shape != b.shape:
        raise ValueError(
            f"the two systems have different test rows ({a.size} vs {b.size} examples); "
            "paired tests need both scored on the same test split"
        )
    if a.size == 0:
        raise ValueError("no test examples to compare")
    return a, b


def _as_binary(values: np.ndarray, name: str) -> np.ndarray:
    if values.dtype == bool:
        return values
    if not np.isin(values, (0, 1)).all():
        raise ValueError(f"{name} must be boolean (or 0/1) per-example correctness")
    return values.astype(bool)


def mcnemar(
    correct_a: npt.ArrayLike | pd.Series, correct_b: npt.ArrayLike | pd.Series
) -> tuple[float, float]:
    """McNemar's test of equal accuracy for two systems scored on the same examples.

    Only the discordant examples carry information about which system is more accurate: ``b`` =
    A right and B wrong, ``c`` = A wrong and B right. Under the null hypothesis of equal accuracy
    each discordant example is equally likely to go either way, so ``b ~ Binomial(b + c, 1/2)``.
    With fewer than 25 discordant pairs that exact binomial test is used (statistic ``min(b, c)``);
    otherwise the chi-square approximation with continuity correction,
    ``(|b - c| - 1)^2 / (b + c)`` on 1 degree of freedom. Both come from
    :func:`statsmodels.stats.contingency_tables.mcnemar`.

    Parameters are boolean (or 0/1) vectors of per-example correctness, in the same example order;
    two pandas Series are aligned on their index (``row_id``) instead. Returns
    ``(statistic, p_value)``; identical systems give ``p = 1``.
    """
    a, b = _align_pair(correct_a, correct_b)
    a = _as_binary(a, "correct_a")
    b = _as_binary(b, "correct_b")
    table = np.array(
        [
            [np.sum(a & b), np.sum(a & ~b)],
            [np.sum(~a & b), np.sum(~a & ~b)],
        ]
    )
    discordant = int(table[0, 1] + table[1, 0])
    result = _sm_mcnemar(table, exact=discordant < EXACT_MCNEMAR_BELOW, correction=True)
    return float(result.statistic), float(result.pvalue)


def cohens_h(p_a: float | np.ndarray, p_b: float | np.ndarray) -> float | np.ndarray:
    """Cohen's h effect size between two proportions: ``2 asin(sqrt(p_a)) - 2 asin(sqrt(p_b))``.

    Rough guide (Cohen 1988): 0.2 small, 0.5 medium, 0.8 large.
    """
    p_a = np.clip(p_a, 0.0, 1.0)
    p_b = np.clip(p_b, 0.0, 1.0)
    h = 2.0 * np.arcsin(np.sqrt(p_a)) - 2.0 * np.arcsin(np.sqrt(p_b))
    return float(h) if np.ndim(h) == 0 else h


def _bootstrap_means(values: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Means of the columns of ``values`` (examples x systems) over ``n_boot`` resamples of rows.

    Every replicate resamples the examples with replacement, with the same resample for all
    columns (that is what keeps the comparison paired). The resample is drawn as multinomial
    counts, which depend only on ``seed``, ``n_boot`` and the number of examples, so the same
    seed gives the same resamples whatever the number of systems. Returns ``(n_boot, systems)``.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    n = values.shape[0]
    rng = np.random.default_rng(seed)
    pvals = np.full(n, 1.0 / n)
    chunk = max(1, _CHUNK_CELLS // n)
    out = np.empty((n_boot, values.shape[1]))
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        counts = rng.multinomial(n, pvals, size=stop - start)
        out[start:stop] = counts @ values / n
    return out


def _percentile_ci(samples: np.ndarray, alpha: float) -> tuple[float, float]:
    low, high = np.quantile(samples, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def _bootstrap_pvalue(boot: np.ndarray, observed: float) -> float:
    """Two-sided p of "no difference", from the bootstrap distribution shifted to the null.

    The replicates centred on the observed value approximate the null distribution of the
    statistic; ``p = (1 + #{|boot - obs| >= |obs|}) / (1 + n_boot)`` (the +1 keeps it above 0).
    """
    extreme = np.abs(boot - observed) >= abs(observed) - 1e-12
    return float((1 + np.sum(extreme)) / (1 + boot.size))


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def paired_bootstrap(
    correct_a: npt.ArrayLike | pd.Series,
    correct_b: npt.ArrayLike | pd.Series,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """Paired bootstrap of the difference in accuracy, ``acc(a) - acc(b)``.

    The test examples are resampled with replacement ``n_boot`` times, using the *same* resampled
    indices for both systems, and the difference in mean correctness is recomputed on each
    replicate. Correctness may be boolean, or a fraction in [0, 1] (correctness averaged over
    seeds). Vectors are matched by position, or by index when both are pandas Series.

    Returns a dict with ``acc_a``, ``acc_b``, ``diff`` (observed difference), ``diff_lo`` and
    ``diff_hi`` (percentile interval at level ``1 - alpha``), ``p_value`` (two-sided, from the
    replicates shifted to the null of no difference: ``(1 + #{|d* - d| >= |d|}) / (1 + n_boot)``,
    so its resolution is ``1 / (n_boot + 1)``), ``se`` (bootstrap standard error), ``n`` (examples),
    ``n_boot`` and ``alpha``. The percentile method is used because the difference of two means
    is close to symmetric and unbiased, where it behaves well.
    """
    _check_alpha(alpha)
    a, b = _align_pair(correct_a, correct_b)
    values = np.column_stack([a.astype(float), b.astype(float)])
    if not np.isfinite(values).all():
        raise ValueError("correctness vectors must not contain NaN or infinity")
    boot = _bootstrap_means(values, n_boot, seed)
    acc_a, acc_b = float(values[:, 0].mean()), float(values[:, 1].mean())
    diff = acc_a - acc_b
    boot_diff = boot[:, 0] - boot[:, 1]
    low, high = _percentile_ci(boot_diff, alpha)
    return {
        "acc_a": acc_a,
        "acc_b": acc_b,
        "diff": diff,
        "diff_lo": low,
        "diff_hi": high,
        "p_value": _bootstrap_pvalue(boot_diff, diff),
        "se": float(boot_diff.std(ddof=1)) if n_boot > 1 else 0.0,
        "n": int(values.shape[0]),
        "n_boot": int(n_boot),
        "alpha": float(alpha),
    }


def combine_seed_pvalues(pvalues: Sequence[float] | np.ndarray) -> float:
    """Combine the p-values of the seed-paired tests of one comparison into one p-value.

    Rule: with ``k`` p-values sorted ascending, ``j = floor(k / 2) + 1`` and
    ``p = min(1, k / j * p_(j))``. ``p_(j)`` is the median for odd ``k`` (the upper middle value
    for even ``k``); the factor ``k / j`` (1 for k = 1 or 2, 1.5 for 3, 5/3 for 5) makes the
    result a valid p-value under *any* dependence between the tests, by Markov's inequality:
    ``P(p_(j) <= t) = P(#{p_i <= t} >= j) <= E#{p_i <= t} / j <= k t / j``.

    Why not Fisher or Stouffer (:func:`scipy.stats.combine_pvalues`): they assume independent
    tests. The seed-paired tests are run on the same test examples with models trained on the
    same data, so they are strongly positively dependent; Fisher would treat ``k`` near-copies of
    one result as ``k`` independent confirmations and give far too small p-values. The median
    rule asks that the evidence hold for a typical seed, which is what a reader expects.
    """
    p = np.sort(np.asarray(pvalues, dtype=float))
    if p.size == 0:
        raise ValueError("no p-values to combine")
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("p-values must lie in [0, 1]")
    k = p.size
    j = k // 2 + 1
    return float(min(1.0, k / j * p[j - 1]))


def five_by_two_cv_f_test(diffs: npt.ArrayLike) -> tuple[float, float]:
    """Alpaydın's combined 5x2 cv F test (Neural Computation 11(8), 1999).

    ``diffs[i, j]`` is the difference in performance between the two systems on fold ``j`` of
    replication ``i`` of 2-fold cross-validation (5 replications). With ``m_i`` the mean and
    ``s_i^2 = sum_j (diffs[i, j] - m_i)^2`` the variance estimate of replication ``i``,

        F = sum_ij diffs[i, j]^2 / (2 * sum_i s_i^2),

    approximately F-distributed with (10, 5) degrees of freedom under the null of equal
    performance; the p-value is the upper tail, ``scipy.stats.f.sf(F, 10, 5)``. This combined test
    is preferred over Dietterich's 5x2 cv t test, whose statistic depends on which single
    difference is put in the numerator. Use it when cross-validated runs exist; the predictions
    tables of this project have a fixed test split instead (see :func:`pairwise_comparisons`).

    Degenerate input: if every replication has zero variance, returns ``(nan, 1.0)`` when all
    differences are zero and ``(inf, 0.0)`` otherwise.
    """
    d = np.asarray(diffs, dtype=float)
    if d.shape != (5, 2):
        raise ValueError(f"diffs must have shape (5, 2) (5 replications x 2 folds), got {d.shape}")
    if not np.isfinite(d).all():
        raise ValueError("diffs must be finite")
    mean = d.mean(axis=1, keepdims=True)
    variance = ((d - mean) ** 2).sum(axis=1)
    numerator = float((d**2).sum())
    denominator = float(2.0 * variance.sum())
    if denominator == 0.0:
        return (math.nan, 1.0) if numerator == 0.0 else (math.inf, 0.0)
    f_stat = numerator / denominator
    return f_stat, float(stats.f.sf(f_stat, 10, 5))


# --------------------------------------------------------------------------------------------
# Systems from a predictions table
# --------------------------------------------------------------------------------------------


def paired_test(pairwise: pd.DataFrame, task: str, a: str, b: str) -> dict[str, Any] | None:
    """The `pairwise` row of systems a and b on a task (stored either way round), with
    ``sign`` +1 when it is stored as (a, b), so that ``sign * diff`` is acc(a) - acc(b); None
    when the two were not compared."""
    if pairwise.empty:
        return None
    on_task = pairwise[pairwise["task"] == task]
    for sign, (x, y) in ((1, (a, b)), (-1, (b, a))):
        hit = on_task[(on_task["system_a"] == x) & (on_task["system_b"] == y)]
        if len(hit):
            return {**hit.iloc[0].to_dict(), "sign": sign}
    return None


def system_label(model: str, init: str, method: str) -> str:
    """The display name of a system, e.g. ``minilm-l6 (pretrained, full)`` (a model one of
    several methods of a base model, e.g. ``minilm-l6.lora``, shows as its base)."""
    return f"{model.removesuffix('.' + method)} ({init}, {method})"


@dataclass
class _System:
    label: str
    model: str
    init: str
    method: str
    n_train: int
    seeds: list[Any]
    correct: np.ndarray  # (n_seeds, n_test) bool, columns in the order of the shared row_ids

    @property
    def pooled(self) -> np.ndarray:
        """Per-example correctness averaged over seeds."""
        return np.asarray(self.correct.mean(axis=0), dtype=float)


def _check_same_rows(rows_a: pd.Index, rows_b: pd.Index, name_a: str, name_b: str) -> None:
    if rows_a.has_duplicates or rows_b.has_duplicates:
        which = name_a if rows_a.has_duplicates else name_b
        raise ValueError(f"{which} has duplicate row_ids; expected one prediction per test row")
    if len(rows_a) == len(rows_b) and rows_a.isin(rows_b).all():
        return
    only_a = int((~rows_a.isin(rows_b)).sum())
    only_b = int((~rows_b.isin(rows_a)).sum())
    raise ValueError(
        f"{name_a} and {name_b} were not scored on the same test rows "
        f"({only_a} row_ids only in {name_a}, {only_b} only in {name_b}); "
        "paired comparisons need every system evaluated on the same fixed test split"
    )


def _systems(predictions: pd.DataFrame, task: str, n_train: int | None) -> list[_System]:
    """The systems of a task at the chosen training size, with row-aligned correctness."""
    missing = [c for c in _REQUIRED if c not in predictions.columns]
    if missing:
        raise ValueError(f"predictions table lacks column(s): {', '.join(missing)}")
    data = predictions.loc[predictions["task"] == task]
    if data.empty:
        known = ", ".join(sorted(map(str, predictions["task"].unique())))
        raise ValueError(f"no predictions for task '{task}' (tasks: {known or 'none'})")

    systems: list[_System] = []
    reference: tuple[str, pd.Index] | None = None
    for (model, init, method), group in data.groupby(["model", "init", "method"], sort=True):
        label = system_label(str(model), str(init), str(method))
        size = int(group["n_train"].max()) if n_train is None else int(n_train)
        rows = group.loc[group["n_train"] == size]
        if rows.empty:
            continue  # this system was not trained at the requested size
        seeds = sorted(rows["seed"].unique().tolist())
        per_seed: dict[Any, pd.Series] = {}
        for seed in seeds:
            one = rows.loc[rows["seed"] == seed]
            index = pd.Index(one["row_id"])
            name = f"'{label}' seed {seed} (n_train={size})"
            if reference is None:
                if index.has_duplicates:
                    raise ValueError(
                        f"{name} has duplicate row_ids; expected one prediction per test row"
                    )
                reference = (name, index.sort_values())
            _check_same_rows(reference[1], index, reference[0], name)
            per_seed[seed] = pd.Series(one["correct"].to_numpy(), index=index)
        assert reference is not None
        order = reference[1]
        correct = np.vstack(
            [_as_binary(per_seed[s].loc[order].to_numpy(), "correct") for s in seeds]
        )
        systems.append(_System(label, str(model), str(init), str(method), size, seeds, correct))
    if not systems:
        raise ValueError(f"no system of task '{task}' has predictions at n_train={n_train}")
    return systems


def _seed_pairs(a: _System, b: _System) -> tuple[list[tuple[int, int]], str]:
    """Row indices (into ``a.correct``, ``b.correct``) of the seed pairs, and how they were made."""
    common = [s for s in a.seeds if s in set(b.seeds)]
    if common:
        return [(a.seeds.index(s), b.seeds.index(s)) for s in common], "matched"
    n = min(len(a.seeds), len(b.seeds))
    return [(i, i) for i in range(n)], "by order"


# --------------------------------------------------------------------------------------------
# Table-level comparisons
# --------------------------------------------------------------------------------------------


def pairwise_comparisons(
    predictions: pd.DataFrame,
    task: str,
    n_train: int | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    test: Literal["mcnemar", "bootstrap"] = "mcnemar",
) -> pd.DataFrame:
    """Compare every pair of systems of ``task`` on the shared test split.

    ``n_train``: the training size to compare at; ``None`` takes the largest ``n_train`` each
    system has on the task (then two systems may be compared at different sizes, see the
    ``n_train_a``/``n_train_b`` columns); an integer keeps only the systems trained at that size.

    One row per unordered pair, ``system_a`` being the more accurate (so ``diff >= 0``):

    * ``acc_a``, ``acc_b``: mean accuracy over each system's seeds; ``diff = acc_a - acc_b``.
    * ``diff_lo/hi``: percentile CI (level ``1 - alpha``) of the difference from the paired
      bootstrap of test examples on the seed-pooled correctness (:func:`paired_bootstrap`).
    * ``cohens_h`` and its CI (from the same bootstrap replicates): effect size for two
      proportions, which unlike the raw difference accounts for accuracies near 0 or 1.
    * ``mcnemar_p``: McNemar's test (:func:`mcnemar`) run per seed pair, the ``n_seed_pairs``
      p-values combined with :func:`combine_seed_pvalues` (valid under dependence);
      ``mcnemar_p_median`` is their plain median, for reference; ``mcnemar_test`` says whether the
      exact, chi-square or both versions were used across the seed pairs.
    * ``bootstrap_p``: two-sided paired-bootstrap p-value on the pooled correctness.
    * ``*_holm``: Holm's step-down adjustment across all pairs of the task
      (:func:`statsmodels.stats.multitest.multipletests`), controlling the family-wise error rate
      without assumptions on the dependence between the pairwise tests.
    * ``significant``: the Holm-adjusted p of ``test`` (McNemar by default: exact, and its
      resolution does not depend on ``n_boot``) is below ``alpha``.

    The bootstrap uses the same resampled examples for every pair (one resample of the task).
    Raises ValueError when systems (or seeds) were not scored on the same ``row_id`` s.
    """
    _check_alpha(alpha)
    if test not in ("mcnemar", "bootstrap"):
        raise ValueError(f"test must be 'mcnemar' or 'bootstrap', got {test!r}")
    systems = _systems(predictions, task, n_train)
    if len(systems) < 2:
        return pd.DataFrame(columns=PAIRWISE_COLUMNS)

    pooled = np.column_stack([s.pooled for s in systems])
    observed = pooled.mean(axis=0)
    boot = _bootstrap_means(pooled, n_boot, seed)
    # More accurate system first; ties by name (the systems are sorted by name already).
    order = sorted(range(len(systems)), key=lambda i: (-round(observed[i], _ROUND), i))

    n_test = pooled.shape[0]
    rows = [
        _pair_row(task, systems[i], systems[j], observed, boot, (i, j), n_test, alpha)
        for i, j in combinations(order, 2)
    ]
    table = pd.DataFrame(rows)
    for name in ("mcnemar_p", "bootstrap_p"):
        table[f"{name}_holm"] = multipletests(table[name].to_numpy(), method="holm")[1]
    table["significant"] = table[f"{test}_p_holm"] < alpha
    return table[PAIRWISE_COLUMNS]


def _seed_mcnemar(
    a: _System, b: _System, pairs: list[tuple[int, int]]
) -> tuple[list[str], list[float]]:
    """McNemar's test on each seed pair of two systems: the kinds used (sorted), the p-values."""
    tests = []
    for ia, ib in pairs:
        ca, cb = a.correct[ia], b.correct[ib]
        discordant = int(np.sum(ca != cb))
        tests.append(("exact" if discordant < EXACT_MCNEMAR_BELOW else "chi2", mcnemar(ca, cb)))
    kinds = sorted({kind for kind, _ in tests})
    pvals = [p for _, (_, p) in tests]
    return kinds, pvals


def _pair_row(
    task: str,
    a: _System,
    b: _System,
    observed: np.ndarray,
    boot: np.ndarray,
    columns: tuple[int, int],
    n_test: int,
    alpha: float,
) -> dict[str, Any]:
    """The pairwise row of systems a and b (their ``columns`` in ``observed`` and ``boot``)."""
    i, j = columns
    pairs, pairing = _seed_pairs(a, b)
    kinds, pvals = _seed_mcnemar(a, b, pairs)
    diff = float(observed[i] - observed[j])
    boot_diff = boot[:, i] - boot[:, j]
    h = float(cohens_h(observed[i], observed[j]))
    boot_h = np.asarray(cohens_h(boot[:, i], boot[:, j]))
    d_low, d_high = _percentile_ci(boot_diff, alpha)
    h_low, h_high = _percentile_ci(boot_h, alpha)
    return {
        "task": task,
        "system_a": a.label,
        "system_b": b.label,
        "n_train_a": a.n_train,
        "n_train_b": b.n_train,
        "n_test": n_test,
        "n_seeds_a": len(a.seeds),
        "n_seeds_b": len(b.seeds),
        "n_seed_pairs": len(pairs),
        "seed_pairing": pairing,
        "acc_a": float(observed[i]),
        "acc_b": float(observed[j]),
        "diff": diff,
        "diff_lo": d_low,
        "diff_hi": d_high,
        "cohens_h": h,
        "cohens_h_lo": h_low,
        "cohens_h_hi": h_high,
        "mcnemar_test": "+".join(kinds),
        "mcnemar_p_median": float(np.median(pvals)),
        "mcnemar_p": combine_seed_pvalues(pvals),
        "bootstrap_p": _bootstrap_pvalue(boot_diff, diff),
    }


def rank_intervals(
    predictions: pd.DataFrame,
    task: str,
    n_train: int | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Which ranks each system of ``task`` could plausibly hold, by a paired bootstrap.

    The test examples are resampled ``n_boot`` times (the same resample for all systems, on the
    seed-pooled correctness); in each replicate the systems are ranked by accuracy, 1 = best, tied
    systems sharing the average of their ranks. Per system (one row each, best first):

    * ``accuracy`` (mean over seeds) with its percentile CI ``accuracy_lo/hi``;
    * ``rank``: rank of the observed accuracy;
    * ``rank_lo``/``rank_hi``: the ``alpha/2`` and ``1 - alpha/2`` quantiles of the bootstrap
      ranks, taken outward (lower/higher order statistic) so they are ranks that actually occur;
      a clearly best system gets ``[1, 1]``, systems whose intervals overlap are not separated;
    * ``p_best``: fraction of replicates in which the system has the top accuracy (a tie for the
      top splits the replicate equally, so ``p_best`` sums to 1 over systems).

    Intervals are marginal (per system), not simultaneous. ``n_train`` as in
    :func:`pairwise_comparisons`.
    """
    _check_alpha(alpha)
    systems = _systems(predictions, task, n_train)
    pooled = np.column_stack([s.pooled for s in systems])
    observed = np.round(pooled.mean(axis=0), _ROUND)
    boot = np.round(_bootstrap_means(pooled, n_boot, seed), _ROUND)

    observed_rank = stats.rankdata(-observed, method="average")
    boot_rank = stats.rankdata(-boot, method="average", axis=1)
    rank_low = np.quantile(boot_rank, alpha / 2, axis=0, method="lower")
    rank_high = np.quantile(boot_rank, 1 - alpha / 2, axis=0, method="higher")
    acc_low, acc_high = np.quantile(boot, [alpha / 2, 1 - alpha / 2], axis=0)
    top = boot == boot.max(axis=1, keepdims=True)
    p_best = (top / top.sum(axis=1, keepdims=True)).mean(axis=0)

    table = pd.DataFrame(
        {
            "task": task,
            "system": [s.label for s in systems],
            "model": [s.model for s in systems],
            "init": [s.init for s in systems],
            "method": [s.method for s in systems],
            "n_train": [s.n_train for s in systems],
            "n_seeds": [len(s.seeds) for s in systems],
            "n_test": pooled.shape[0],
            "accuracy": pooled.mean(axis=0),
            "accuracy_lo": acc_low,
            "accuracy_hi": acc_high,
            "rank": observed_rank,
            "rank_lo": rank_low,
            "rank_hi": rank_high,
            "p_best": p_best,
        }
    )
    table = table.sort_values(["rank", "system"], kind="stable").reset_index(drop=True)
    return table[RANK_COLUMNS]
