"""Learning curves: one fitted curve per model x task x init x method, its bootstrap over
seeds, its checks, the band for plotting and the examples needed to reach a score.

The fit itself is `ptmeval.scaling.powerlaw`.

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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ptmeval.scaling.common import (
    C_BOUNDS,
    CHANCE_TOL,
    DEFAULT_F_SCALE,
    EDGE,
    EXTRAP_TOL,
    KEYS,
    MIN_FIT_POINTS,
    MIN_SIZES,
    MONOTONE_MIN_DROP,
    MONOTONE_Z,
    chance_of,
    check_columns,
    check_score_metric,
    key_rng,
    percentile_band,
    seed_values,
)
from ptmeval.scaling.powerlaw import PowerLawFit, fit_power_law, invert_err, predict_err


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


def _bootstrap(
    fit: PowerLawFit,
    sizes: np.ndarray,
    errs: list[np.ndarray],
    n_boot: int,
    rng: np.random.Generator,
    loss: str,
    f_scale: float,
) -> np.ndarray:
    """The converged refits, rows ``(a, b, c)``, of ``n_boot`` replicates resampling the seeds at
    every size (warm-started from the point fit when it is usable)."""
    means = np.column_stack([_resampled_means(e, n_boot, rng) for e in errs])
    start = (fit.a, fit.b, fit.c) if fit.ok else None
    rows = []
    for r in range(n_boot):
        rep = fit_power_law(sizes, means[r], loss=loss, f_scale=f_scale, start=start)
        if rep.ok:
            rows.append((rep.a, rep.b, rep.c))
    return np.array(rows, dtype=float).reshape(-1, 3)


def _fit_reasons(fit: PowerLawFit, n_sizes: int, monotone_note: str) -> list[str]:
    """The failed checks of the module docstring that do not need the hold-out fit."""
    reasons = []
    if n_sizes < MIN_SIZES:
        reasons.append(f"too few points ({n_sizes} distinct sizes < {MIN_SIZES})")
    if monotone_note:
        reasons.append(monotone_note)
    if not fit.ok:
        if n_sizes >= MIN_FIT_POINTS:
            reasons.append("fit did not converge")
    else:
        if "b=0" in fit.bounds_hit:
            reasons.append("no decay (b = 0): c undetermined")
        if "c=min" in fit.bounds_hit or "c=max" in fit.bounds_hit:
            reasons.append(f"c at bound (c = {fit.c:.3g}, bounds {C_BOUNDS})")
    return reasons


def _extrapolation_reasons(curve: _Curve, extrap_tol: float) -> list[str]:
    """The extrapolation check: the fit without the largest size predicts it within tolerance."""
    if curve.holdout is None or not curve.holdout.ok:
        return ["poor extrapolation (fit without the largest size did not converge)"]
    if abs(curve.extrap_error) > extrap_tol:
        return [
            f"poor extrapolation (|predicted - observed| = {abs(curve.extrap_error):.3f} "
            f"> {extrap_tol:g} at n={curve.n_max:g})"
        ]
    return []


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
        boot = _bootstrap(fit, sizes, errs, n_boot, key_rng(seed, key), loss, f_scale)

    holdout = None
    if sizes.size >= MIN_SIZES:
        holdout = fit_power_law(sizes[:-1], mean_err[:-1], loss=loss, f_scale=f_scale)

    monotone, note = _monotone(sizes, mean_score, std_score / np.sqrt(n_seeds))
    reasons = _fit_reasons(fit, sizes.size, note)
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
        reasons += _extrapolation_reasons(curve, extrap_tol)
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
    check_score_metric(metric)
    seeds = seed_values(results, metric, KEYS)
    curves = []
    for key, group in seeds.groupby(KEYS, sort=True):
        curves.append(
            _analyse_one(tuple(key), group, metric, n_boot, seed, loss, f_scale, extrap_tol)
        )
    return curves


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
        a_lo, a_hi = percentile_band(cv.boot[:, 0])
        b_lo, b_hi = percentile_band(cv.boot[:, 1])
        c_lo, c_hi = percentile_band(cv.boot[:, 2])
        at_max_lo, at_max_hi = percentile_band(1.0 - predict_err(cv.boot, cv.n_max)[:, 0])
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
    check_score_metric(metric)
    seeds = seed_values(results, metric, KEYS)
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
        score = 1.0 - predict_err(cv.params, n)[0] if cv.fit.ok else np.full(n.shape, np.nan)
        lo, hi = percentile_band(1.0 - predict_err(cv.boot, n), axis=0)
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


def _as_list(target: float | Sequence[float] | None) -> list[float]:
    """The absolute target scores of `data_needed` as a list (none, one or several)."""
    if target is None:
        return []
    if np.ndim(target) == 0:
        return [float(target)]  # type: ignore[arg-type]
    return [float(t) for t in target]  # type: ignore[union-attr]


def _needed_row(
    cv: _Curve, kind: str, level: float, score: float, best: float, never: str
) -> dict[str, Any]:
    """One row of `data_needed`: the curve's size (and bootstrap interval) at a target score."""
    err_star = 1.0 - score
    n_star = boot_reachable = lo = hi = float("nan")
    if cv.fit.ok and not never:
        n_star = float(invert_err(cv.params, err_star)[0, 0])
    if cv.boot.shape[0] and not never:
        reps = invert_err(cv.boot, err_star)[:, 0]
        boot_reachable = float(np.mean(np.isfinite(reps)))
        lo_a, hi_a = percentile_band(np.where(np.isfinite(reps), reps, np.inf))
        lo, hi = float(lo_a), float(hi_a)
    hit = cv.sizes[cv.mean_score >= score - 1e-12] if not never else cv.sizes[:0]
    observed_at = float(hit.min()) if len(hit) else float("nan")
    reachable = bool(np.isfinite(n_star) or np.isfinite(observed_at))
    return {
        **dict(zip(KEYS, cv.key, strict=True)),
        "metric": cv.metric,
        "kind": kind,
        "level": level,
        "target_score": score,
        "best_observed": best,
        "n_needed": n_star,
        "n_needed_lo": lo,
        "n_needed_hi": hi,
        "boot_reachable": boot_reachable,
        "observed_at": observed_at,
        "reachable": reachable,
        "never_reached": bool(never),
        "never_reached_reason": never,
        "extrapolated": bool(np.isfinite(n_star) and n_star > cv.n_max * (1 + EDGE)),
        "below_smallest": bool(np.isfinite(n_star) and n_star < cv.n_min * (1 - EDGE)),
        "n_min": cv.n_min,
        "n_max": cv.n_max,
        "trustworthy": cv.trustworthy,
        "reason": cv.reason,
    }


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
    ``n_needed`` and its interval ``n_needed_lo``, ``n_needed_hi``, ``boot_reachable``, ``observed_at`` (the smallest
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
    columns += [
        "n_needed",
        "n_needed_lo",
        "n_needed_hi",
        "boot_reachable",
        "observed_at",
        "reachable",
    ]
    columns += ["never_reached", "never_reached_reason", "extrapolated", "below_smallest"]
    columns += ["n_min", "n_max", "trustworthy", "reason"]
    targets = _as_list(target)
    all_collapsed = _all_collapsed(process)
    rows = []
    for cv in _analyse(results, metric, n_boot, seed, loss, f_scale):
        best = float(cv.mean_score.max())
        never = _never_above_chance(cv, chance_of(cv.key[1], chance), all_collapsed)
        wanted = [("relative", float(lv), float(lv) * best) for lv in levels]
        wanted += [("absolute", float("nan"), t) for t in targets]
        rows += [_needed_row(cv, *want, best, never) for want in wanted]
    return pd.DataFrame(rows, columns=columns)


def _all_collapsed(process: pd.DataFrame | None) -> dict[tuple[Any, ...], bool]:
    """Per curve key: True when the per-job table has runs for it and every one collapsed."""
    if process is None or process.empty or "collapsed" not in process.columns:
        return {}
    check_columns(process, KEYS, "process")
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
