"""Scaling analysis: learning curves, data needed, transfer gain and fine-tuning difficulty.

Input is the tidy results table (columns ``model, task, init, method, fraction, seed, n_train,
metric, value``) and, for `finetune_process`, the per-epoch fine-tune history. Every public
function returns a tidy DataFrame (one row per curve, per level, per size or per job).

The model
---------
For a score metric (``accuracy`` or ``macro_f1``; higher is better, in [0, 1]) the *error* is
``1 - score``. The error of a curve (one model x task x init x method) is modelled as a
saturating power law in the number of training examples ``n``::

    err(n) = a + b * n ** (-c)

``a`` is the irreducible error (the asymptotic score is ``1 - a``), ``b`` the scale and ``c`` the
decay exponent. Bounds: ``a`` in [0, 1] (an error rate), ``b >= 0`` (error does not grow with
data), ``c`` in [0.01, 3] (`C_BOUNDS`: below 0.01 the curve is flat over any realistic range,
above 3 it is a step; in both cases ``c`` is not identified by the data).

The fitting method
------------------
`fit_power_law` works in ``x = log n`` centred on its mean ``x0`` (the geometric-mean size), i.e.
it fits ``err = a + B * exp(-c * (x - x0))`` with ``B = b * exp(-c * x0)``; centring makes ``B``
the error above the asymptote at a typical size, so ``B`` and ``c`` are far less correlated than
``b`` and ``c`` and the problem is well conditioned. It uses `scipy.optimize.least_squares`
(trust-region reflective, analytic Jacobian, tolerances 1e-10) with a robust loss (``soft_l1`` by
default, or ``huber``; ``linear`` is plain least squares) and ``f_scale = 0.02``
(`DEFAULT_F_SCALE`): residuals under about two points of error count quadratically, larger
ones linearly, so a single bad size does not drag the curve. Initialisation is a multi-start: for
``a0`` in {0, 0.5, 0.9} x min(err), a linear fit of ``log(err - a0)`` on ``x - x0`` gives ``c0``
(minus the slope) and ``B0`` (exp of the intercept), clipped into the bounds; the start with the
lowest robust cost wins. A fit needs at least 3 points (3 parameters); with exactly 3 it
interpolates. ``converged`` is the solver's success flag (and finite parameters); ``at_bound``
is True when ``c`` lies within 0.1 % of the width of its range of a bound, or when ``b`` is 0
(``B <= 1e-6``: no decay, so ``c`` is undetermined). ``a`` at 0 (a perfect asymptotic score) is
a legitimate value and is reported in ``bounds_hit`` but does not set ``at_bound``.

`learning_curve_fits` fits each curve to the per-size *mean* error over seeds (one point per
distinct ``n_train``; rows with a non-finite value are dropped, several rows of one seed at one
size are averaged first).

The bootstrap
-------------
Uncertainty comes from a nonparametric bootstrap over seeds: in each replicate, at every size
independently, the seeds observed at that size are resampled with replacement (same count), the
per-size mean error is recomputed and the curve refitted (warm-started from the point fit).
The resampled means are spread by ``sqrt(k / (k - 1))`` around the observed mean (``k`` seeds at
that size), which makes their variance the unbiased ``s**2 / k`` instead of the plain
bootstrap's ``(k - 1) / k`` of it. Confidence intervals are the 2.5 and 97.5 percentiles of the
converged replicates. Replicates are drawn from a generator seeded by ``(seed, crc32 of the
curve's key)``, so a curve's bootstrap does not depend on which other curves are in the table,
and `curve_band` / `data_needed` can reproduce it. When some size has a single seed there is
nothing to resample there: the bootstrap would give a zero-width interval that looks precise, so
the intervals are reported as NaN instead (``n_boot_ok = 0``). Even so, with few seeds the
intervals are too narrow: in a simulation (6 sizes, 3 seeds, noise 0.003) the nominal 95 %
intervals of ``a``, ``c`` and the score at the largest size covered the truth in only about
73-80 % of draws. Treat them as indicative, not as calibrated 95 % intervals.

What "trustworthy" means
------------------------
A curve's fit is ``trustworthy`` only when all of these hold; otherwise ``reason`` lists every
failed check (``"; "``-separated; ``"ok"`` when trustworthy):

* at least 4 distinct sizes (`MIN_SIZES`): 3 points determine 3 parameters exactly, leaving no
  check of the functional form (reason ``"too few points (...)"``);
* the observed mean score is monotone up to noise: no pair of sizes ``n_i < n_j`` whose mean
  score drops by more than ``max(2 * SE, 0.01)``, SE being the standard error of the difference
  of the two means (taken as 0 for a size with a single seed, leaving the 0.01 floor)
  (`MONOTONE_Z`, `MONOTONE_MIN_DROP`; reason ``"non-monotone beyond noise"``);
* the fit converged (reason ``"fit did not converge"``);
* ``c`` is not at a bound and ``b`` is not 0 (reason ``"c at bound"`` / ``"no decay (b = 0)"``);
* the extrapolation check passes: refitting without the largest size and predicting it misses
  the observed mean score by at most 0.05 (`EXTRAP_TOL`; reason ``"poor extrapolation"``).

Numbers derived from an untrustworthy fit are still reported (they are useful for debugging) but
always next to ``trustworthy = False`` and the reason; tables never mark them trustworthy.

Chance and collapsed runs
-------------------------
*Chance* is the best score a constant predictor gets on a task's test split
(`chance_scores`): the majority-class rate ``p`` for accuracy, and that predictor's macro-F1
``2p / ((1 + p) k)`` for macro-F1 (``k`` classes in the test split). It is not ``1 / k``: on
an imbalanced test set (80/20) always answering the majority class scores 0.8, far above 1/2.
A run whose test score is at or below chance (``at_chance``) learnt nothing a constant could not.
A run is *collapsed* (`prediction_collapse`) when its most frequent predicted class covers at
least `COLLAPSE_SHARE` (95 %) of its test predictions, and more of them than the most frequent
true label covers (so a good model on a 97/3 test set is not flagged). A curve that never rises
above chance, or whose every run collapsed, has no "examples needed": `data_needed` reports it
as ``never_reached`` (``n_needed`` NaN), never as 0.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

KEYS = ["model", "task", "init", "method"]
PAIR_KEYS = ["model", "task", "method"]
JOB_KEYS = [*KEYS, "fraction", "seed"]
SCORE_METRICS = ("accuracy", "macro_f1")

A_BOUNDS = (0.0, 1.0)
C_BOUNDS = (0.01, 3.0)
B_ZERO = 1e-6  # centred scale B at or below this: no decay
BOUND_TOL = 1e-3  # relative to the width of c's range
DEFAULT_F_SCALE = 0.02
MIN_FIT_POINTS = 3
MIN_SIZES = 4
MONOTONE_Z = 2.0
MONOTONE_MIN_DROP = 0.01
EXTRAP_TOL = 0.05
COLLAPSE_SHARE = 0.95  # top predicted class on at least this share of test rows: collapsed
CHANCE_TOL = 1e-9  # a score within this of chance counts as at chance (float round-off)
CI_PERCENTILES = (2.5, 97.5)
_TOL = 1e-10
_EDGE = 1e-6  # relative slack when comparing a computed size with an observed one


# --------------------------------------------------------------------------------------------
# The power law
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PowerLawFit:
    """A fitted saturating power law ``err(n) = a + b * n**(-c)`` (see the module docstring).

    ``rss`` is the plain (non-robust) residual sum of squares at the solution, ``n_points`` the
    number of points fitted, ``bounds_hit`` the parameters at a bound (``"a=0"``, ``"a=1"``,
    ``"b=0"``, ``"c=min"``, ``"c=max"``) and ``message`` the solver's message.
    """

    a: float
    b: float
    c: float
    converged: bool
    at_bound: bool
    rss: float
    n_points: int
    bounds_hit: tuple[str, ...] = ()
    message: str = ""

    @property
    def ok(self) -> bool:
        """Converged with finite parameters (usable for prediction)."""
        return self.converged and bool(np.isfinite([self.a, self.b, self.c]).all())

    def predict(self, n: Any) -> np.ndarray:
        """Predicted error at size(s) ``n`` (NaN where ``n <= 0`` or the fit is unusable)."""
        return _predict_err(np.array([[self.a, self.b, self.c]]), n)[0]

    def predict_score(self, n: Any) -> np.ndarray:
        """Predicted score ``1 - err`` at size(s) ``n``."""
        return 1.0 - self.predict(n)

    def invert(self, err: Any) -> np.ndarray:
        """Size at which the predicted error equals ``err``; NaN where it is never reached."""
        return _invert_err(np.array([[self.a, self.b, self.c]]), err)[0]


def _nan_fit(n_points: int, message: str) -> PowerLawFit:
    nan = float("nan")
    return PowerLawFit(nan, nan, nan, False, False, nan, n_points, (), message)


def _predict_err(params: np.ndarray, n: Any) -> np.ndarray:
    """Errors for parameter rows ``(a, b, c)`` (shape m x 3) at sizes n: shape m x len(n)."""
    n = np.atleast_1d(np.asarray(n, dtype=float))
    a, b, c = (params[:, i : i + 1] for i in range(3))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = a + b * np.exp(-c * np.log(np.where(n > 0, n, np.nan)))
    return np.asarray(out, dtype=float)


def _invert_err(params: np.ndarray, err: Any) -> np.ndarray:
    """``n = (b / (err - a)) ** (1 / c)`` per row (m x len(err)); NaN where ``err <= a``.

    With ``b = 0`` (flat curve) and ``err > a`` the level holds at any size and 0 is returned.
    """
    err = np.atleast_1d(np.asarray(err, dtype=float))
    a, b, c = (params[:, i : i + 1] for i in range(3))
    gap = err - a
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        n = np.exp((np.log(b) - np.log(gap)) / c)
    n = np.where(gap > 0, n, np.nan)
    n = np.where((gap > 0) & (b == 0), 0.0, n)
    return np.asarray(n, dtype=float)


def _residuals(p: np.ndarray, dx: np.ndarray, err: np.ndarray) -> np.ndarray:
    return p[0] + p[1] * np.exp(-p[2] * dx) - err


def _jacobian(p: np.ndarray, dx: np.ndarray, err: np.ndarray) -> np.ndarray:
    decay = np.exp(-p[2] * dx)
    return np.column_stack([np.ones_like(dx), decay, -p[1] * dx * decay])


def _clip_start(a: float, big_b: float, c: float) -> np.ndarray:
    eps = 1e-6
    return np.array(
        [
            float(np.clip(a, A_BOUNDS[0] + eps, A_BOUNDS[1] - eps)),
            float(max(big_b, 1e-4)),
            float(np.clip(c, C_BOUNDS[0] + 1e-3, C_BOUNDS[1] - 1e-3)),
        ]
    )


def _initial_guesses(dx: np.ndarray, err: np.ndarray) -> list[np.ndarray]:
    """Multi-start from log-log linear fits for a few asymptote guesses (module docstring)."""
    starts = []
    low = float(max(np.min(err), 0.0))
    for a0 in (0.0, 0.5 * low, 0.9 * low):
        y = err - a0
        mask = y > 0
        if mask.sum() >= 2 and np.ptp(dx[mask]) > 0:
            slope, intercept = np.polyfit(dx[mask], np.log(y[mask]), 1)
            starts.append(_clip_start(a0, float(np.exp(intercept)), float(-slope)))
        else:
            starts.append(_clip_start(a0, float(max(np.max(err) - a0, 1e-3)), 0.5))
    return starts


def fit_power_law(
    n: Any,
    err: Any,
    loss: str = "soft_l1",
    f_scale: float = DEFAULT_F_SCALE,
    start: tuple[float, float, float] | None = None,
) -> PowerLawFit:
    """Robust fit of ``err(n) = a + b * n**(-c)`` (method, bounds and flags: module docstring).

    ``n`` (sizes, > 0) and ``err`` (errors) are matched arrays; repeated sizes are allowed.
    ``loss`` is passed to `scipy.optimize.least_squares` (``soft_l1``, ``huber``, ``linear``,
    ...). ``start`` (``a, b, c`` in the original parameterisation) replaces the multi-start
    initialisation (used to warm-start bootstrap refits). Fewer than 3 finite points, or a single
    distinct size, give an all-NaN fit with ``converged = False``.
    """
    n_arr = np.asarray(n, dtype=float).ravel()
    e_arr = np.asarray(err, dtype=float).ravel()
    if n_arr.shape != e_arr.shape:
        raise ValueError(f"n and err differ in length ({n_arr.size} vs {e_arr.size})")
    keep = np.isfinite(n_arr) & np.isfinite(e_arr) & (n_arr > 0)
    n_arr, e_arr = n_arr[keep], e_arr[keep]
    if n_arr.size < MIN_FIT_POINTS or np.unique(n_arr).size < 2:
        return _nan_fit(int(n_arr.size), "too few points")
    x = np.log(n_arr)
    x0 = float(np.mean(x))
    dx = x - x0
    if start is not None and np.isfinite(start).all():
        a_s, b_s, c_s = (float(v) for v in start)
        starts = [_clip_start(a_s, b_s * float(np.exp(-c_s * x0)), c_s)]
    else:
        starts = _initial_guesses(dx, e_arr)
    lower = [A_BOUNDS[0], 0.0, C_BOUNDS[0]]
    upper = [A_BOUNDS[1], np.inf, C_BOUNDS[1]]
    best = None
    for p0 in starts:
        try:
            res = least_squares(
                _residuals,
                p0,
                jac=_jacobian,
                bounds=(lower, upper),
                loss=loss,
                f_scale=f_scale,
                args=(dx, e_arr),
                method="trf",
                ftol=_TOL,
                xtol=_TOL,
                gtol=_TOL,
                max_nfev=2000,
            )
        except (ValueError, np.linalg.LinAlgError):  # pragma: no cover - defensive
            continue
        if not np.isfinite(res.x).all():
            continue
        rank = (not res.success, float(res.cost))
        if best is None or rank < (not best.success, float(best.cost)):
            best = res
    if best is None:  # pragma: no cover - defensive
        return _nan_fit(int(n_arr.size), "solver failed")
    a, big_b, c = (float(v) for v in best.x)
    b = big_b * float(np.exp(c * x0))
    width = C_BOUNDS[1] - C_BOUNDS[0]
    hit = []
    if a <= A_BOUNDS[0] + 1e-6:
        hit.append("a=0")
    if a >= A_BOUNDS[1] - 1e-6:
        hit.append("a=1")
    if big_b <= B_ZERO:
        hit.append("b=0")
    if c <= C_BOUNDS[0] + BOUND_TOL * width:
        hit.append("c=min")
    if c >= C_BOUNDS[1] - BOUND_TOL * width:
        hit.append("c=max")
    at_bound = any(h in hit for h in ("b=0", "c=min", "c=max"))
    rss = float(np.sum(_residuals(best.x, dx, e_arr) ** 2))
    return PowerLawFit(
        a=a,
        b=b,
        c=c,
        converged=bool(best.success) and bool(np.isfinite([a, b, c]).all()),
        at_bound=at_bound,
        rss=rss,
        n_points=int(n_arr.size),
        bounds_hit=tuple(hit),
        message=str(best.message),
    )


# --------------------------------------------------------------------------------------------
# Curves: preparation, bootstrap, checks
# --------------------------------------------------------------------------------------------


def _check_columns(frame: pd.DataFrame, needed: Sequence[str], name: str) -> None:
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks column(s) {', '.join(missing)}")


def _check_score_metric(metric: str) -> None:
    if metric not in SCORE_METRICS:
        raise ValueError(
            f"learning curves need a score metric ({', '.join(SCORE_METRICS)}), got '{metric}'"
        )


def _seed_values(results: pd.DataFrame, metric: str, keys: Sequence[str]) -> pd.DataFrame:
    """One finite value per key x n_train x seed (duplicates averaged)."""
    _check_columns(results, [*keys, "n_train", "seed", "metric", "value"], "results")
    sub = results[results["metric"] == metric]
    sub = sub[np.isfinite(sub["value"].astype(float))]
    if sub.empty:
        return pd.DataFrame(columns=[*keys, "n_train", "seed", "value"])
    grouped = sub.groupby([*keys, "n_train", "seed"], as_index=False, sort=True)["value"]
    return grouped.mean()


def _rng(seed: int, key: Sequence[Any]) -> np.random.Generator:
    tag = zlib.crc32("\x1f".join(str(k) for k in key).encode("utf-8"))
    return np.random.default_rng([int(seed), tag])


def _band(values: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """2.5 / 97.5 percentiles ignoring NaN; +inf values (never reached) are order statistics,
    and a bound that is infinite is returned as NaN (never as infinity)."""
    values = np.asarray(values, dtype=float)
    if values.shape[axis] == 0:
        shape = np.delete(values.shape, axis)
        return np.full(shape, np.nan), np.full(shape, np.nan)
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices give NaN
        if np.isinf(values).any():  # order statistics: no inf - inf interpolation
            lo, hi = np.nanpercentile(values, CI_PERCENTILES, axis=axis, method="inverted_cdf")
        else:
            lo, hi = np.nanpercentile(values, CI_PERCENTILES, axis=axis)
    lo = np.where(np.isfinite(lo), lo, np.nan)
    hi = np.where(np.isfinite(hi), hi, np.nan)
    return lo, hi


def _monotone(sizes: np.ndarray, mean: np.ndarray, se: np.ndarray) -> tuple[bool, str]:
    """Largest drop of mean score between a smaller and a larger size, against the noise."""
    se = np.nan_to_num(se, nan=0.0)
    worst = None
    for i in range(len(sizes)):
        for j in range(i + 1, len(sizes)):
            drop = mean[i] - mean[j]
            threshold = max(MONOTONE_Z * float(np.hypot(se[i], se[j])), MONOTONE_MIN_DROP)
            if drop > threshold and (worst is None or drop - threshold > worst[0]):
                worst = (drop - threshold, drop, sizes[i], sizes[j])
    if worst is None:
        return True, ""
    _, drop, n_i, n_j = worst
    return False, (
        f"non-monotone beyond noise (mean score drops {drop:.3f} from n={n_i:g} to n={n_j:g})"
    )


def _resampled_means(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap means of ``values`` (resampled with replacement), spread out by
    ``sqrt(k / (k - 1))`` around the observed mean: the plain bootstrap variance of a mean of
    ``k`` values is ``(k - 1) / k`` times the usual unbiased estimate, too narrow for 2-5 seeds."""
    k = values.size
    means = values[rng.integers(0, k, size=(n_boot, k))].mean(axis=1)
    centre = values.mean()
    return np.asarray(centre + np.sqrt(k / (k - 1)) * (means - centre), dtype=float)


@dataclass
class _Curve:
    key: tuple[Any, ...]
    metric: str
    sizes: np.ndarray
    seed_errs: list[np.ndarray]
    mean_score: np.ndarray
    std_score: np.ndarray
    n_seeds: np.ndarray
    fit: PowerLawFit
    boot: np.ndarray  # converged replicates, rows (a, b, c)
    n_boot: int
    seed: int
    loss: str
    f_scale: float
    holdout: PowerLawFit | None
    monotone: bool
    trustworthy: bool
    reason: str

    @property
    def n_min(self) -> float:
        return float(self.sizes.min())

    @property
    def n_max(self) -> float:
        return float(self.sizes.max())

    @property
    def params(self) -> np.ndarray:
        return np.array([[self.fit.a, self.fit.b, self.fit.c]])

    @property
    def extrap_pred(self) -> float:
        if self.holdout is None or not self.holdout.ok:
            return float("nan")
        return float(self.holdout.predict_score(self.n_max)[0])

    @property
    def extrap_error(self) -> float:
        return self.extrap_pred - float(self.mean_score[-1])


def _analyse_one(
    key: tuple[Any, ...],
    seeds: pd.DataFrame,
    metric: str,
    n_boot: int,
    seed: int,
    loss: str,
    f_scale: float,
    extrap_tol: float,
) -> _Curve:
    by_size = [(float(n), g["value"].to_numpy(float)) for n, g in seeds.groupby("n_train")]
    sizes = np.array([n for n, _ in by_size])
    scores = [v for _, v in by_size]
    errs = [1.0 - v for v in scores]
    n_seeds = np.array([v.size for v in scores])
    mean_score = np.array([v.mean() for v in scores])
    std_score = np.array([v.std(ddof=1) if v.size > 1 else np.nan for v in scores])
    mean_err = 1.0 - mean_score
    fit = fit_power_law(sizes, mean_err, loss=loss, f_scale=f_scale)

    boot = np.empty((0, 3))
    if fit.n_points >= MIN_FIT_POINTS and n_boot > 0 and n_seeds.min() >= 2:
        rng = _rng(seed, key)
        means = np.column_stack([_resampled_means(e, n_boot, rng) for e in errs])
        start = (fit.a, fit.b, fit.c) if fit.ok else None
        rows = []
        for r in range(n_boot):
            rep = fit_power_law(sizes, means[r], loss=loss, f_scale=f_scale, start=start)
            if rep.ok:
                rows.append((rep.a, rep.b, rep.c))
        boot = np.array(rows, dtype=float).reshape(-1, 3)

    holdout = None
    if sizes.size >= MIN_SIZES:
        holdout = fit_power_law(sizes[:-1], mean_err[:-1], loss=loss, f_scale=f_scale)

    reasons = []
    if sizes.size < MIN_SIZES:
        reasons.append(f"too few points ({sizes.size} distinct sizes < {MIN_SIZES})")
    se = std_score / np.sqrt(n_seeds)
    monotone, note = _monotone(sizes, mean_score, se)
    if not monotone:
        reasons.append(note)
    if not fit.ok:
        if sizes.size >= MIN_FIT_POINTS:
            reasons.append("fit did not converge")
    else:
        if "b=0" in fit.bounds_hit:
            reasons.append("no decay (b = 0): c undetermined")
        if "c=min" in fit.bounds_hit or "c=max" in fit.bounds_hit:
            reasons.append(f"c at bound (c = {fit.c:.3g}, bounds {C_BOUNDS})")
    curve = _Curve(
        key=key,
        metric=metric,
        sizes=sizes,
        seed_errs=errs,
        mean_score=mean_score,
        std_score=std_score,
        n_seeds=n_seeds,
        fit=fit,
        boot=boot,
        n_boot=int(n_boot),
        seed=int(seed),
        loss=loss,
        f_scale=float(f_scale),
        holdout=holdout,
        monotone=monotone,
        trustworthy=False,
        reason="",
    )
    if holdout is not None and fit.ok:
        if not holdout.ok:
            reasons.append("poor extrapolation (fit without the largest size did not converge)")
        elif abs(curve.extrap_error) > extrap_tol:
            reasons.append(
                f"poor extrapolation (|predicted - observed| = {abs(curve.extrap_error):.3f} "
                f"> {extrap_tol:g} at n={curve.n_max:g})"
            )
    curve.trustworthy = not reasons
    curve.reason = "; ".join(reasons) if reasons else "ok"
    return curve


def _analyse(
    results: pd.DataFrame,
    metric: str,
    n_boot: int,
    seed: int,
    loss: str = "soft_l1",
    f_scale: float = DEFAULT_F_SCALE,
    extrap_tol: float = EXTRAP_TOL,
) -> list[_Curve]:
    _check_score_metric(metric)
    seeds = _seed_values(results, metric, KEYS)
    curves = []
    for key, group in seeds.groupby(KEYS, sort=True):
        curves.append(
            _analyse_one(tuple(key), group, metric, n_boot, seed, loss, f_scale, extrap_tol)
        )
    return curves


# --------------------------------------------------------------------------------------------
# Public tables
# --------------------------------------------------------------------------------------------

FIT_COLUMNS = [
    *KEYS,
    "metric",
    "n_sizes",
    "n_min",
    "n_max",
    "min_seeds",
    "a",
    "a_lo",
    "a_hi",
    "b",
    "b_lo",
    "b_hi",
    "c",
    "c_lo",
    "c_hi",
    "score_asymptote",
    "score_asymptote_lo",
    "score_asymptote_hi",
    "observed_at_max",
    "score_at_max",
    "score_at_max_lo",
    "score_at_max_hi",
    "rss",
    "converged",
    "at_bound",
    "bounds_hit",
    "monotone",
    "extrap_n",
    "extrap_pred",
    "extrap_obs",
    "extrap_error",
    "n_boot",
    "n_boot_ok",
    "boot_seed",
    "loss",
    "f_scale",
    "trustworthy",
    "reason",
]


def learning_curve_fits(
    results: pd.DataFrame,
    metric: str = "accuracy",
    n_boot: int = 200,
    seed: int = 0,
    loss: str = "soft_l1",
    f_scale: float = DEFAULT_F_SCALE,
    extrap_tol: float = EXTRAP_TOL,
) -> pd.DataFrame:
    """One row per model x task x init x method: the power-law fit of the error and its checks.

    Columns (``FIT_COLUMNS``): the keys and ``metric``; ``n_sizes`` (distinct ``n_train``),
    ``n_min``, ``n_max``, ``min_seeds`` (fewest seeds at any size); ``a, b, c`` with bootstrap
    ``*_lo``/``*_hi`` (2.5/97.5 %); ``score_asymptote`` (``1 - a``) with its interval;
    ``observed_at_max`` (mean score at the largest size) and ``score_at_max`` (fitted score there)
    with its band; ``rss``, ``converged``, ``at_bound``, ``bounds_hit`` (comma-separated);
    ``monotone``; the extrapolation check ``extrap_n`` (largest size), ``extrap_pred`` (score
    predicted there by the fit without it), ``extrap_obs`` and ``extrap_error`` (predicted minus
    observed; NaN with fewer than 4 sizes); ``n_boot``, ``n_boot_ok`` (converged replicates, 0 when
    a size has a single seed: intervals NaN), ``boot_seed``, ``loss``, ``f_scale`` (so that
    `curve_band` can reproduce the bootstrap); ``trustworthy`` and ``reason``.
    """
    rows = []
    for cv in _analyse(results, metric, n_boot, seed, loss, f_scale, extrap_tol):
        fit = cv.fit
        a_lo, a_hi = _band(cv.boot[:, 0])
        b_lo, b_hi = _band(cv.boot[:, 1])
        c_lo, c_hi = _band(cv.boot[:, 2])
        at_max_lo, at_max_hi = _band(1.0 - _predict_err(cv.boot, cv.n_max)[:, 0])
        rows.append(
            {
                **dict(zip(KEYS, cv.key, strict=True)),
                "metric": metric,
                "n_sizes": int(cv.sizes.size),
                "n_min": cv.n_min,
                "n_max": cv.n_max,
                "min_seeds": int(cv.n_seeds.min()),
                "a": fit.a,
                "a_lo": float(a_lo),
                "a_hi": float(a_hi),
                "b": fit.b,
                "b_lo": float(b_lo),
                "b_hi": float(b_hi),
                "c": fit.c,
                "c_lo": float(c_lo),
                "c_hi": float(c_hi),
                "score_asymptote": 1.0 - fit.a,
                "score_asymptote_lo": 1.0 - float(a_hi),
                "score_asymptote_hi": 1.0 - float(a_lo),
                "observed_at_max": float(cv.mean_score[-1]),
                "score_at_max": float(fit.predict_score(cv.n_max)[0]),
                "score_at_max_lo": float(at_max_lo),
                "score_at_max_hi": float(at_max_hi),
                "rss": fit.rss,
                "converged": fit.converged,
                "at_bound": fit.at_bound,
                "bounds_hit": ",".join(fit.bounds_hit),
                "monotone": cv.monotone,
                "extrap_n": cv.n_max if cv.holdout is not None else float("nan"),
                "extrap_pred": cv.extrap_pred,
                "extrap_obs": float(cv.mean_score[-1]) if cv.holdout is not None else np.nan,
                "extrap_error": cv.extrap_error,
                "n_boot": cv.n_boot,
                "n_boot_ok": int(cv.boot.shape[0]),
                "boot_seed": cv.seed,
                "loss": cv.loss,
                "f_scale": cv.f_scale,
                "trustworthy": cv.trustworthy,
                "reason": cv.reason,
            }
        )
    return pd.DataFrame(rows, columns=FIT_COLUMNS)


def curve_band(
    results: pd.DataFrame,
    fits: pd.DataFrame,
    metric: str = "accuracy",
    grid: Any = None,
    n_grid: int = 50,
) -> pd.DataFrame:
    """Fitted score and its bootstrap band on a grid of sizes, for plotting.

    ``fits`` is the output of `learning_curve_fits`; its ``n_boot``, ``boot_seed``, ``loss`` and
    ``f_scale`` columns are used to redraw exactly the same bootstrap replicates. ``grid`` is an
    array of sizes shared by all curves; by default each curve gets ``n_grid`` log-spaced sizes
    from its smallest size to 4x its largest.

    Columns: the keys, ``metric``, ``n``, ``score`` (fitted), ``score_lo``, ``score_hi``
    (2.5/97.5 % of the bootstrap replicates; NaN when there is no bootstrap), ``extrapolated``
    (``n`` beyond the largest observed size), ``trustworthy`` and ``reason`` (of the fit).
    """
    columns = [*KEYS, "metric", "n", "score", "score_lo", "score_hi", "extrapolated"]
    columns += ["trustworthy", "reason"]
    _check_score_metric(metric)
    seeds = _seed_values(results, metric, KEYS)
    fits = fits[fits["metric"] == metric] if "metric" in fits.columns else fits
    frames = []
    for _, row in fits.iterrows():
        key = tuple(row[k] for k in KEYS)
        mask = np.logical_and.reduce([seeds[k] == v for k, v in zip(KEYS, key, strict=True)])
        group = seeds[mask]
        if group.empty:
            continue
        cv = _analyse_one(
            key,
            group,
            metric,
            int(row.get("n_boot", 200)),
            int(row.get("boot_seed", 0)),
            str(row.get("loss", "soft_l1")),
            float(row.get("f_scale", DEFAULT_F_SCALE)),
            EXTRAP_TOL,
        )
        n = (
            np.geomspace(cv.n_min, 4.0 * cv.n_max, n_grid)
            if grid is None
            else np.asarray(grid, dtype=float)
        )
        score = 1.0 - _predict_err(cv.params, n)[0] if cv.fit.ok else np.full(n.shape, np.nan)
        lo, hi = _band(1.0 - _predict_err(cv.boot, n), axis=0)
        frame = pd.DataFrame(
            {
                "n": n,
                "score": score,
                "score_lo": lo,
                "score_hi": hi,
                "extrapolated": n > cv.n_max,
            }
        )
        for k, v in zip(KEYS, key, strict=True):
            frame[k] = v
        frame["metric"] = metric
        frame["trustworthy"] = bool(row.get("trustworthy", cv.trustworthy))
        frame["reason"] = str(row.get("reason", cv.reason))
        frames.append(frame[columns])
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)


def data_needed(
    results: pd.DataFrame,
    metric: str = "accuracy",
    levels: Sequence[float] = (0.9, 0.95),
    target: float | Sequence[float] | None = None,
    n_boot: int = 200,
    seed: int = 0,
    loss: str = "soft_l1",
    f_scale: float = DEFAULT_F_SCALE,
    chance: float | Mapping[str, float] | None = None,
    process: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Training examples needed to reach a score, read off each fitted curve by inverting it.

    For each curve and each ``level``, the target score is ``level x best observed mean score``
    of that curve (``kind = "relative"``); each absolute ``target`` score adds a row
    (``kind = "absolute"``, ``level`` NaN). The size is ``n = (b / (err* - a)) ** (1 / c)`` with
    ``err* = 1 - target score``. The interval inverts each bootstrap replicate at the same fixed
    target score; replicates whose asymptote never reaches it count as +infinity, so an interval
    bound at infinity is reported as NaN and ``boot_reachable`` gives the share of replicates
    that reach the target.

    A curve that never rises above chance has nothing to read off: a flat curve at chance
    would otherwise "reach" a fraction of its own score at 0 examples. ``chance`` is the chance
    score (a float for all tasks, or a mapping task -> chance, as from `chance_scores`); when
    every size's mean score is at or below it, or when every run of the curve in ``process``
    (the per-job table of `finetune_process`; its keys and ``collapsed`` are read) collapsed,
    the curve's rows are ``never_reached``: ``n_needed``, its interval and ``boot_reachable``
    NaN, ``reachable`` False, and ``never_reached_reason`` says why.

    Columns: the keys, ``metric``, ``kind``, ``level``, ``target_score``, ``best_observed``,
    ``n_needed``, ``n_lo``, ``n_hi``, ``boot_reachable``, ``observed_at`` (the smallest
    training size whose mean score already reaches the target: the data answer where a fit
    cannot, e.g. with fewer sizes than a fit needs), ``reachable`` (True when the fit or the
    observed scores reach the target; False, and ``n_needed`` NaN, when neither does, or the
    curve never rises above chance), ``never_reached`` and
    ``never_reached_reason`` ("" otherwise), ``extrapolated`` (``n_needed`` beyond the largest
    observed size),
    ``below_smallest`` (below the smallest observed size: also outside the data), ``n_min``,
    ``n_max``, ``trustworthy`` and ``reason`` (of the fit).
    """
    columns = [*KEYS, "metric", "kind", "level", "target_score", "best_observed"]
    columns += ["n_needed", "n_lo", "n_hi", "boot_reachable", "observed_at", "reachable"]
    columns += ["never_reached", "never_reached_reason", "extrapolated", "below_smallest"]
    columns += ["n_min", "n_max", "trustworthy", "reason"]
    if target is None:
        targets: list[float] = []
    elif np.ndim(target) == 0:
        targets = [float(target)]  # type: ignore[arg-type]
    else:
        targets = [float(t) for t in target]  # type: ignore[union-attr]
    all_collapsed = _all_collapsed(process)
    rows = []
    for cv in _analyse(results, metric, n_boot, seed, loss, f_scale):
        best = float(cv.mean_score.max())
        never = _never_above_chance(cv, _chance(cv.key[1], chance), all_collapsed)
        wanted = [("relative", float(lv), float(lv) * best) for lv in levels]
        wanted += [("absolute", float("nan"), t) for t in targets]
        for kind, level, score in wanted:
            err_star = 1.0 - score
            n_star = boot_reachable = lo = hi = float("nan")
            if cv.fit.ok and not never:
                n_star = float(_invert_err(cv.params, err_star)[0, 0])
            if cv.boot.shape[0] and not never:
                reps = _invert_err(cv.boot, err_star)[:, 0]
                boot_reachable = float(np.mean(np.isfinite(reps)))
                lo_a, hi_a = _band(np.where(np.isfinite(reps), reps, np.inf))
                lo, hi = float(lo_a), float(hi_a)
            hit = cv.sizes[cv.mean_score >= score - 1e-12] if not never else cv.sizes[:0]
            observed_at = float(hit.min()) if len(hit) else float("nan")
            reachable = bool(np.isfinite(n_star) or np.isfinite(observed_at))
            rows.append(
                {
                    **dict(zip(KEYS, cv.key, strict=True)),
                    "metric": metric,
                    "kind": kind,
                    "level": level,
                    "target_score": score,
                    "best_observed": best,
                    "n_needed": n_star,
                    "n_lo": lo,
                    "n_hi": hi,
                    "boot_reachable": boot_reachable,
                    "observed_at": observed_at,
                    "reachable": reachable,
                    "never_reached": bool(never),
                    "never_reached_reason": never,
                    "extrapolated": bool(np.isfinite(n_star) and n_star > cv.n_max * (1 + _EDGE)),
                    "below_smallest": bool(np.isfinite(n_star) and n_star < cv.n_min * (1 - _EDGE)),
                    "n_min": cv.n_min,
                    "n_max": cv.n_max,
                    "trustworthy": cv.trustworthy,
                    "reason": cv.reason,
                }
            )
    return pd.DataFrame(rows, columns=columns)


def _all_collapsed(process: pd.DataFrame | None) -> dict[tuple[Any, ...], bool]:
    """Per curve key: True when the per-job table has runs for it and every one collapsed."""
    if process is None or process.empty or "collapsed" not in process.columns:
        return {}
    _check_columns(process, KEYS, "process")
    flags = process["collapsed"].astype("boolean").fillna(False).astype(bool)
    grouped = flags.groupby([process[k] for k in KEYS], sort=True).all()
    return {tuple(k): bool(v) for k, v in grouped.items()}


def _never_above_chance(
    cv: _Curve, chance: float, all_collapsed: Mapping[tuple[Any, ...], bool]
) -> str:
    """Why a curve never rises above chance ("" when it does, or nothing says otherwise)."""
    if all_collapsed.get(tuple(cv.key), False):
        return "every run collapsed to (nearly) one predicted class"
    if np.isfinite(chance) and bool(np.all(cv.mean_score <= chance + CHANCE_TOL)):
        return f"mean score at or below chance ({chance:.3f}) at every size"
    return ""


def transfer_gain(
    results: pd.DataFrame,
    metric: str = "accuracy",
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Pretrained minus scratch mean value, per model x task x method x n_train with both inits.

    Any metric is accepted; for a lower-is-better metric (``ece``) a negative gain means the
    pretrained model is better. The interval is a bootstrap over seeds, resampling the seeds of
    each init independently with replacement (the two inits are different models, so seeds are
    not paired); it is NaN when either side has a single seed.

    Columns: ``model, task, method, metric, n_train``, ``mean_pretrained``, ``mean_scratch``,
    ``gain``, ``gain_lo``, ``gain_hi`` (2.5/97.5 %), ``n_seeds_pretrained``,
    ``n_seeds_scratch``, ``ci_excludes_zero`` (False when there is no interval).
    """
    columns = [*PAIR_KEYS, "metric", "n_train", "mean_pretrained", "mean_scratch", "gain"]
    columns += ["gain_lo", "gain_hi", "n_seeds_pretrained", "n_seeds_scratch", "ci_excludes_zero"]
    seeds = _seed_values(results, metric, [*PAIR_KEYS, "init"])
    rows = []
    for key, group in seeds.groupby([*PAIR_KEYS, "n_train"], sort=True):
        pre = group.loc[group["init"] == "pretrained", "value"].to_numpy(float)
        scr = group.loc[group["init"] == "scratch", "value"].to_numpy(float)
        if pre.size == 0 or scr.size == 0:
            continue
        gain = float(pre.mean() - scr.mean())
        lo = hi = float("nan")
        if pre.size >= 2 and scr.size >= 2 and n_boot > 0:
            rng = _rng(seed, key)
            pre_means = pre[rng.integers(0, pre.size, size=(n_boot, pre.size))].mean(axis=1)
            scr_means = scr[rng.integers(0, scr.size, size=(n_boot, scr.size))].mean(axis=1)
            reps = pre_means - scr_means
            lo_a, hi_a = _band(reps)
            lo, hi = float(lo_a), float(hi_a)
        rows.append(
            {
                **dict(zip([*PAIR_KEYS, "n_train"], key, strict=True)),
                "metric": metric,
                "mean_pretrained": float(pre.mean()),
                "mean_scratch": float(scr.mean()),
                "gain": gain,
                "gain_lo": lo,
                "gain_hi": hi,
                "n_seeds_pretrained": int(pre.size),
                "n_seeds_scratch": int(scr.size),
                "ci_excludes_zero": bool(np.isfinite(lo) and (lo > 0 or hi < 0)),
            }
        )
    return pd.DataFrame(rows, columns=columns)


def effective_data_transferred(
    results: pd.DataFrame,
    fits: pd.DataFrame,
    metric: str = "accuracy",
) -> pd.DataFrame:
    """How many extra scratch examples pretraining is worth, at each pretrained size.

    For each pretrained mean score at ``n_train`` (observed, averaged over seeds), the scratch
    curve's fit (from ``fits``, the output of `learning_curve_fits`) is inverted at that score:
    ``scratch_equivalent_n`` is the size a scratch model would need, ``effective_data =
    scratch_equivalent_n - n_train`` and ``data_multiplier = scratch_equivalent_n / n_train``.

    Columns: ``model, task, method, metric, n_train``, ``score_pretrained``,
    ``score_scratch_fit`` (the scratch fit at ``n_train``), ``scratch_equivalent_n``,
    ``effective_data``, ``data_multiplier``, ``reachable`` (False, and the sizes NaN, when the
    scratch asymptote never reaches the pretrained score, or the scratch fit is unusable),
    ``extrapolated`` (equivalent size beyond the scratch curve's largest size),
    ``below_smallest`` (below its smallest size), ``scratch_n_min``, ``scratch_n_max``,
    ``trustworthy`` and ``reason`` (of the scratch fit).
    """
    columns = [*PAIR_KEYS, "metric", "n_train", "score_pretrained", "score_scratch_fit"]
    columns += ["scratch_equivalent_n", "effective_data", "data_multiplier", "reachable"]
    columns += ["extrapolated", "below_smallest", "scratch_n_min", "scratch_n_max"]
    columns += ["trustworthy", "reason"]
    _check_score_metric(metric)
    _check_columns(fits, [*KEYS, "a", "b", "c", "converged", "n_min", "n_max"], "fits")
    scratch = fits[fits["init"] == "scratch"]
    if "metric" in scratch.columns:
        scratch = scratch[scratch["metric"] == metric]
    seeds = _seed_values(results, metric, [*PAIR_KEYS, "init"])
    pre = seeds[seeds["init"] == "pretrained"]
    means = pre.groupby([*PAIR_KEYS, "n_train"], as_index=False, sort=True)["value"].mean()
    merged = means.merge(scratch, on=PAIR_KEYS, how="inner")
    rows = []
    for _, row in merged.iterrows():
        params = np.array([[row["a"], row["b"], row["c"]]], dtype=float)
        usable = bool(row["converged"]) and bool(np.isfinite(params).all())
        n = float(row["n_train"])
        score = float(row["value"])
        n_eq = float(_invert_err(params, 1.0 - score)[0, 0]) if usable else float("nan")
        reachable = bool(np.isfinite(n_eq))
        rows.append(
            {
                **{k: row[k] for k in PAIR_KEYS},
                "metric": metric,
                "n_train": row["n_train"],
                "score_pretrained": score,
                "score_scratch_fit": (
                    float(1.0 - _predict_err(params, n)[0, 0]) if usable else float("nan")
                ),
                "scratch_equivalent_n": n_eq,
                "effective_data": n_eq - n,
                "data_multiplier": n_eq / n if n > 0 else float("nan"),
                "reachable": reachable,
                "extrapolated": bool(reachable and n_eq > float(row["n_max"]) * (1 + _EDGE)),
                "below_smallest": bool(reachable and n_eq < float(row["n_min"]) * (1 - _EDGE)),
                "scratch_n_min": float(row["n_min"]),
                "scratch_n_max": float(row["n_max"]),
                "trustworthy": bool(row.get("trustworthy", False)),
                "reason": str(row.get("reason", "")),
            }
        )
    return pd.DataFrame(rows, columns=columns)


# --------------------------------------------------------------------------------------------
# Fine-tuning process
# --------------------------------------------------------------------------------------------

PROCESS_COLUMNS = [
    *JOB_KEYS,
    "n_train",
    "epochs",
    "total_wall_s",
    "total_samples_seen",
    "final_val",
    "level_val",
    "epoch_to_level",
    "wall_s_to_level",
    "samples_to_level",
    "test_score",
    "chance",
    "diverged_flag",
    "nonfinite_loss",
    "at_chance",
    "top_pred_share",
    "collapsed",
    "diverged",
    "diverged_reason",
]


def chance_scores(labels: pd.DataFrame, metric: str = "accuracy") -> dict[str, float]:
    """Chance score per task: the best score of a constant predictor on the task's test split.

    ``labels`` is either a task summary (``task, split, label, count``; rows of other splits
    are ignored) or one row per test example (``task, label``, e.g. the per-example predictions
    of any jobs: with a ``row_id`` column, rows are counted once per task and ``row_id``). With
    ``p`` the majority-class rate of the test split and ``k`` its number of classes, chance is
    ``p`` for accuracy (always answering the majority class) and ``2p / ((1 + p) k)`` for
    macro-F1 (that predictor's score under `ptmeval.metrics.macro_f1`). Both exceed ``1 / k``
    on an imbalanced test set, where ``1 / k`` would call a constant predictor a success.
    """
    _check_score_metric(metric)
    if labels.empty:
        return {}
    _check_columns(labels, ["task", "label"], "labels")
    frame = labels
    if "split" in frame.columns:
        frame = frame[frame["split"] == "test"]
    if "row_id" in frame.columns:
        frame = frame.drop_duplicates(["task", "row_id"])
    counts = frame["count"] if "count" in frame.columns else pd.Series(1, index=frame.index)
    per_label = counts.astype(float).groupby([frame["task"], frame["label"]]).sum()
    out = {}
    for task, group in per_label.groupby(level=0, sort=True):
        group = group[group > 0]
        if group.empty:
            continue
        p = float(group.max() / group.sum())
        out[str(task)] = p if metric == "accuracy" else 2 * p / ((1 + p) * len(group))
    return out


def prediction_collapse(predictions: pd.DataFrame) -> pd.DataFrame:
    """Per job (``model, task, init, method, fraction, seed``): how concentrated its test
    predictions are, from the per-example predictions table (``pred`` and ``label`` read).

    Columns: the job keys, ``n_test``, ``top_pred_share`` (share of test rows given the most
    frequent predicted class), ``top_label_share`` (majority-class rate of the same rows) and
    ``collapsed``: ``top_pred_share >= COLLAPSE_SHARE`` and above ``top_label_share`` (a model
    that is right on a test set that is itself 97 % one class is not collapsed).
    """
    columns = [*JOB_KEYS, "n_test", "top_pred_share", "top_label_share", "collapsed"]
    if predictions.empty:
        return pd.DataFrame(columns=columns)
    _check_columns(predictions, [*JOB_KEYS, "pred", "label"], "predictions")

    def top_share(column: str) -> pd.DataFrame:
        sizes = predictions.groupby([*JOB_KEYS, column], sort=True, dropna=False).size()
        by_job = sizes.groupby(level=list(range(len(JOB_KEYS))), sort=True)
        return pd.DataFrame({"n": by_job.sum(), "top": by_job.max()})

    preds, labels = top_share("pred"), top_share("label")
    out = pd.DataFrame(index=preds.index)
    out["n_test"] = preds["n"].astype(int)
    out["top_pred_share"] = preds["top"] / preds["n"]
    out["top_label_share"] = labels["top"] / labels["n"]
    out["collapsed"] = (out["top_pred_share"] >= COLLAPSE_SHARE - CHANCE_TOL) & (
        out["top_pred_share"] > out["top_label_share"] + CHANCE_TOL
    )
    return out.reset_index()[columns]


def _chance(task: Any, chance: float | Mapping[str, float] | None) -> float:
    if chance is None:
        return float("nan")
    value = chance.get(str(task)) if isinstance(chance, Mapping) else chance
    return float(value) if value is not None else float("nan")


def finetune_process(
    history: pd.DataFrame,
    results: pd.DataFrame,
    metric: str = "accuracy",
    chance: float | Mapping[str, float] | None = None,
    level: float = 0.9,
    predictions: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per fine-tune job: time and data to reach ``level`` of the final validation score, and
    whether the run diverged. Summarise with `training_difficulty`.

    A job is ``model, task, init, method, fraction, seed``. From its history (sorted by epoch):
    ``epochs``, ``total_wall_s`` (largest cumulative ``wall_s``), ``total_samples_seen``,
    ``final_val`` (last epoch's ``val_<metric>``), ``level_val = level x final_val`` and the
    first epoch whose validation score reaches it: ``epoch_to_level``, ``wall_s_to_level``
    (cumulative wall time at the end of that epoch) and ``samples_to_level``; NaN when the
    final validation score is not finite. ``test_score`` is the job's final test value of
    ``metric`` in ``results``.

    A run is ``diverged`` when any of: the history's ``diverged`` flag (``diverged_flag``), a
    non-finite ``train_loss`` at any epoch (``nonfinite_loss``), a final test score at or below
    chance (``at_chance``), or test predictions collapsed to (nearly) one class
    (``collapsed``). ``chance`` is the best score of a constant predictor on the task's test
    split (a float for all tasks, or a mapping task -> chance, as from `chance_scores`: the
    majority-class rate for accuracy); without it (or for a task missing from the mapping) the
    column is NaN and the chance check is skipped. ``top_pred_share`` and ``collapsed`` come
    from `prediction_collapse` of ``predictions`` (the per-example test predictions); NaN and
    False for a job without predictions. ``diverged_reason`` lists the triggered checks. Jobs
    found only in ``results`` are kept with NaN history columns.
    """
    _check_score_metric(metric)
    val_col = f"val_{metric}"
    _check_columns(history, [*JOB_KEYS, "epoch", "train_loss", val_col, "wall_s"], "history")
    jobs = []
    for key, group in history.groupby(JOB_KEYS, sort=True, dropna=False):
        g = group.sort_values("epoch")
        val = g[val_col].to_numpy(float)
        final = float(val[-1]) if val.size else float("nan")
        target = level * final
        epoch = wall = samples = float("nan")
        if np.isfinite(final):
            hits = np.flatnonzero(np.nan_to_num(val, nan=-np.inf) >= target - 1e-12)
            if hits.size:
                first = g.iloc[int(hits[0])]
                epoch = float(first["epoch"])
                wall = float(first["wall_s"])
                samples = float(first["samples_seen"]) if "samples_seen" in g else np.nan
        loss = g["train_loss"].to_numpy(float)
        flag = bool(g["diverged"].fillna(False).astype(bool).any()) if "diverged" in g else False
        jobs.append(
            {
                **dict(zip(JOB_KEYS, key, strict=True)),
                "n_train_h": float(g["n_train"].iloc[-1]) if "n_train" in g else np.nan,
                "epochs": int(g["epoch"].max()),
                "total_wall_s": float(g["wall_s"].max()),
                "total_samples_seen": (
                    float(g["samples_seen"].max()) if "samples_seen" in g else np.nan
                ),
                "final_val": final,
                "level_val": target,
                "epoch_to_level": epoch,
                "wall_s_to_level": wall,
                "samples_to_level": samples,
                "diverged_flag": flag,
                "nonfinite_loss": bool((~np.isfinite(loss)).any()),
            }
        )
    hist_columns = [*JOB_KEYS, "n_train_h", "epochs", "total_wall_s", "total_samples_seen"]
    hist_columns += ["final_val", "level_val", "epoch_to_level", "wall_s_to_level"]
    hist_columns += ["samples_to_level", "diverged_flag", "nonfinite_loss"]
    hist = pd.DataFrame(jobs, columns=hist_columns)

    _check_columns(results, [*JOB_KEYS, "n_train", "metric", "value"], "results")
    res = results[results["metric"] == metric]
    test = res.groupby(JOB_KEYS, as_index=False, sort=True, dropna=False).agg(
        test_score=("value", "mean"), n_train_r=("n_train", "first")
    )
    out = hist.merge(test, on=JOB_KEYS, how="outer")
    out["n_train"] = out["n_train_r"].astype(float).fillna(out["n_train_h"].astype(float))
    out["chance"] = [_chance(t, chance) for t in out["task"]]
    out["diverged_flag"] = out["diverged_flag"].astype("boolean").fillna(False).astype(bool)
    out["nonfinite_loss"] = out["nonfinite_loss"].astype("boolean").fillna(False).astype(bool)
    score = out["test_score"].astype(float)
    chance_score = out["chance"].astype(float)
    out["at_chance"] = np.isfinite(chance_score) & (score <= chance_score + CHANCE_TOL)
    collapse = prediction_collapse(predictions if predictions is not None else pd.DataFrame())
    if collapse.empty:
        out["top_pred_share"], out["collapsed"] = np.nan, False
    else:
        collapse = collapse[[*JOB_KEYS, "top_pred_share", "collapsed"]]
        out = out.merge(collapse, on=JOB_KEYS, how="left")
    out["top_pred_share"] = out["top_pred_share"].astype(float)
    out["collapsed"] = out["collapsed"].astype("boolean").fillna(False).astype(bool)
    out["diverged"] = (
        out["diverged_flag"] | out["nonfinite_loss"] | out["at_chance"] | out["collapsed"]
    )
    labels = {
        "diverged_flag": "diverged flag",
        "nonfinite_loss": "non-finite loss",
        "at_chance": "test score at or below chance",
        "collapsed": f"predictions collapsed (one class on >= {COLLAPSE_SHARE:.0%} of test rows)",
    }
    out["diverged_reason"] = [
        "; ".join(text for col, text in labels.items() if row[col])
        for _, row in out[list(labels)].iterrows()
    ]
    out = out.sort_values(JOB_KEYS).reset_index(drop=True)
    return out[PROCESS_COLUMNS]


def training_difficulty(process: pd.DataFrame, by_size: bool = False) -> pd.DataFrame:
    """The "training difficulty" table: per model x task x init x method (x ``n_train`` when
    ``by_size``), from the per-job table of `finetune_process`.

    Seed spread is measured within a size (different sizes have different means): the standard
    deviation (ddof = 1) of the final test score across seeds at each size, then its mean
    (``seed_std``) and maximum (``seed_std_max``) over sizes; NaN with a single seed. All runs,
    diverged ones included, enter the spread (instability is part of the difficulty).

    Columns: the keys (and ``n_train``), ``n_jobs``, ``n_sizes``, ``test_score_mean``,
    ``chance`` (the task's chance score, see `chance_scores`), ``seed_std``, ``seed_std_max``,
    ``n_diverged``, ``diverged_rate``, ``n_at_chance``, ``at_chance_rate``, ``n_collapsed``,
    ``collapsed_rate`` (runs whose test predictions collapsed to one class, see
    `prediction_collapse`), ``collapsed`` (True when any run collapsed), ``top_pred_share``
    (the largest share of one predicted class over the runs; NaN without predictions),
    ``median_total_wall_s``, ``median_wall_s_to_level``, ``median_samples_to_level``.
    """
    keys = [*KEYS, "n_train"] if by_size else list(KEYS)
    columns = [*keys, "n_jobs", "n_sizes", "test_score_mean", "chance", "seed_std"]
    columns += ["seed_std_max", "n_diverged", "diverged_rate", "n_at_chance", "at_chance_rate"]
    columns += ["n_collapsed", "collapsed_rate", "collapsed", "top_pred_share"]
    columns += ["median_total_wall_s", "median_wall_s_to_level", "median_samples_to_level"]
    if process.empty:
        return pd.DataFrame(columns=columns)
    process = process.assign(
        **{
            col: process[col] if col in process.columns else default
            for col, default in (
                ("chance", np.nan),
                ("at_chance", False),
                ("collapsed", False),
                ("top_pred_share", np.nan),
            )
        }
    )
    per_size = process.groupby([*KEYS, "n_train"], as_index=False, sort=True, dropna=False)
    spread = per_size["test_score"].std(ddof=1).rename(columns={"test_score": "std"})
    spread = spread.groupby(keys, as_index=False, sort=True, dropna=False)["std"].agg(
        seed_std="mean", seed_std_max="max"
    )
    grouped = process.groupby(keys, as_index=False, sort=True, dropna=False)
    table = grouped.agg(
        n_jobs=("seed", "size"),
        n_sizes=("n_train", "nunique"),
        test_score_mean=("test_score", "mean"),
        chance=("chance", "first"),
        n_diverged=("diverged", "sum"),
        n_at_chance=("at_chance", "sum"),
        n_collapsed=("collapsed", "sum"),
        top_pred_share=("top_pred_share", "max"),
        median_total_wall_s=("total_wall_s", "median"),
        median_wall_s_to_level=("wall_s_to_level", "median"),
        median_samples_to_level=("samples_to_level", "median"),
    )
    table["diverged_rate"] = table["n_diverged"] / table["n_jobs"]
    table["at_chance_rate"] = table["n_at_chance"] / table["n_jobs"]
    table["collapsed_rate"] = table["n_collapsed"] / table["n_jobs"]
    table["collapsed"] = table["n_collapsed"] > 0
    table = table.merge(spread, on=keys, how="left")
    return table[columns]
