"""What pretraining buys: the score difference over scratch at each size, and the scratch
examples a pretrained score is worth (inverting the scratch curve's fit)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ptmeval.scaling.common import (
    EDGE,
    KEYS,
    PAIR_KEYS,
    check_columns,
    check_score_metric,
    key_rng,
    percentile_band,
    seed_values,
)
from ptmeval.scaling.powerlaw import invert_err, predict_err


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
    seeds = seed_values(results, metric, [*PAIR_KEYS, "init"])
    rows = []
    for key, group in seeds.groupby([*PAIR_KEYS, "n_train"], sort=True):
        pre = group.loc[group["init"] == "pretrained", "value"].to_numpy(float)
        scr = group.loc[group["init"] == "scratch", "value"].to_numpy(float)
        if pre.size == 0 or scr.size == 0:
            continue
        gain = float(pre.mean() - scr.mean())
        lo = hi = float("nan")
        if pre.size >= 2 and scr.size >= 2 and n_boot > 0:
            rng = key_rng(seed, key)
            pre_means = pre[rng.integers(0, pre.size, size=(n_boot, pre.size))].mean(axis=1)
            scr_means = scr[rng.integers(0, scr.size, size=(n_boot, scr.size))].mean(axis=1)
            reps = pre_means - scr_means
            lo_a, hi_a = percentile_band(reps)
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
    check_score_metric(metric)
    check_columns(fits, [*KEYS, "a", "b", "c", "converged", "n_min", "n_max"], "fits")
    scratch = fits[fits["init"] == "scratch"]
    if "metric" in scratch.columns:
        scratch = scratch[scratch["metric"] == metric]
    seeds = seed_values(results, metric, [*PAIR_KEYS, "init"])
    pre = seeds[seeds["init"] == "pretrained"]
    means = pre.groupby([*PAIR_KEYS, "n_train"], as_index=False, sort=True)["value"].mean()
    merged = means.merge(scratch, on=PAIR_KEYS, how="inner")
    rows = []
    for _, row in merged.iterrows():
        params = np.array([[row["a"], row["b"], row["c"]]], dtype=float)
        usable = bool(row["converged"]) and bool(np.isfinite(params).all())
        n = float(row["n_train"])
        score = float(row["value"])
        n_eq = float(invert_err(params, 1.0 - score)[0, 0]) if usable else float("nan")
        reachable = bool(np.isfinite(n_eq))
        rows.append(
            {
                **{k: row[k] for k in PAIR_KEYS},
                "metric": metric,
                "n_train": row["n_train"],
                "score_pretrained": score,
                "score_scratch_fit": (
                    float(1.0 - predict_err(params, n)[0, 0]) if usable else float("nan")
                ),
                "scratch_equivalent_n": n_eq,
                "effective_data": n_eq - n,
                "data_multiplier": n_eq / n if n > 0 else float("nan"),
                "reachable": reachable,
                "extrapolated": bool(reachable and n_eq > float(row["n_max"]) * (1 + EDGE)),
                "below_smallest": bool(reachable and n_eq < float(row["n_min"]) * (1 - EDGE)),
                "scratch_n_min": float(row["n_min"]),
                "scratch_n_max": float(row["n_max"]),
                "trustworthy": bool(row.get("trustworthy", False)),
                "reason": str(row.get("reason", "")),
            }
        )
    return pd.DataFrame(rows, columns=columns)
