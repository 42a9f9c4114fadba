"""The saturating power law of a learning curve and its robust fit.

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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from ptmeval.scaling.common import (
    A_BOUNDS,
    B_ZERO,
    BOUND_TOL,
    C_BOUNDS,
    DEFAULT_F_SCALE,
    MIN_FIT_POINTS,
)

_TOL = 1e-10


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
        return predict_err(np.array([[self.a, self.b, self.c]]), n)[0]

    def predict_score(self, n: Any) -> np.ndarray:
        """Predicted score ``1 - err`` at size(s) ``n``."""
        return 1.0 - self.predict(n)

    def invert(self, err: Any) -> np.ndarray:
        """Size at which the predicted error equals ``err``; NaN where it is never reached."""
        return invert_err(np.array([[self.a, self.b, self.c]]), err)[0]


def _nan_fit(n_points: int, message: str) -> PowerLawFit:
    nan = float("nan")
    return PowerLawFit(nan, nan, nan, False, False, nan, n_points, (), message)


def predict_err(params: np.ndarray, n: Any) -> np.ndarray:
    """Errors for parameter rows ``(a, b, c)`` (shape m x 3) at sizes n: shape m x len(n)."""
    n = np.atleast_1d(np.asarray(n, dtype=float))
    a, b, c = (params[:, i : i + 1] for i in range(3))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = a + b * np.exp(-c * np.log(np.where(n > 0, n, np.nan)))
    return np.asarray(out, dtype=float)


def invert_err(params: np.ndarray, err: Any) -> np.ndarray:
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


def _solve(
    starts: list[np.ndarray], dx: np.ndarray, err: np.ndarray, loss: str, f_scale: float
) -> Any:
    """`least_squares` from each start; the converged solution of lowest robust cost (else the
    lowest cost), None when every start failed."""
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
                args=(dx, err),
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
    return best


def _bounds_hit(a: float, big_b: float, c: float) -> list[str]:
    """The parameters at a bound (``"a=0"``, ``"a=1"``, ``"b=0"``, ``"c=min"``, ``"c=max"``)."""
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
    return hit


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
    best = _solve(starts, dx, e_arr, loss, f_scale)
    if best is None:  # pragma: no cover - defensive
        return _nan_fit(int(n_arr.size), "solver failed")
    a, big_b, c = (float(v) for v in best.x)
    b = big_b * float(np.exp(c * x0))
    hit = _bounds_hit(a, big_b, c)
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
