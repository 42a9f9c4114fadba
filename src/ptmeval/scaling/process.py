"""The fine-tuning process per job and the training-difficulty table.

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

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ptmeval.scaling.common import (
    CHANCE_TOL,
    COLLAPSE_SHARE,
    JOB_KEYS,
    KEYS,
    chance_of,
    check_columns,
    check_score_metric,
)

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
    "still_improving",
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
    check_score_metric(metric)
    if labels.empty:
        return {}
    check_columns(labels, ["task", "label"], "labels")
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
    check_columns(predictions, [*JOB_KEYS, "pred", "label"], "predictions")

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


def _history_summary(history: pd.DataFrame, val_col: str, level: float) -> pd.DataFrame:
    """Per job of the fine-tune history: its length, time and samples, final validation score,
    when it first reached ``level`` of that score, and its divergence flags."""
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
        improving = _still_improving(g, val)
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
                "still_improving": improving,
            }
        )
    hist_columns = [*JOB_KEYS, "n_train_h", "epochs", "total_wall_s", "total_samples_seen"]
    hist_columns += ["final_val", "level_val", "epoch_to_level", "wall_s_to_level"]
    hist_columns += ["samples_to_level", "diverged_flag", "nonfinite_loss", "still_improving"]
    hist = pd.DataFrame(jobs, columns=hist_columns)
    return hist


def _still_improving(history: pd.DataFrame, val: np.ndarray) -> bool:
    """Whether a fine-tune ran out of its step budget while it was still improving: it stopped
    for ``budget`` and its best validation point (the loop's own choice, ``best_step``: the
    primary score, ties broken by the validation loss) was its last one. Without ``best_step``
    (older histories), its last validation score must beat every earlier one. Such a run is
    under-trained: a larger budget (``min_steps``) would likely score higher."""
    if "stop_reason" not in history or history["stop_reason"].iloc[-1] != "budget":
        return False
    if {"best_step", "step"} <= set(history.columns):
        best, last = history["best_step"].iloc[-1], history["step"].iloc[-1]
        if not pd.isna(best) and not pd.isna(last):
            return int(best) == int(last)
    finite = val[np.isfinite(val)]
    if finite.size < 2 or not np.isfinite(val[-1]):
        return False
    return bool(val[-1] > finite[:-1].max() + 1e-12)


def _diverged_reasons(out: pd.DataFrame) -> list[str]:
    """Per job, the triggered divergence checks, ``"; "``-separated ("" for none)."""
    labels = {
        "diverged_flag": "diverged flag",
        "nonfinite_loss": "non-finite loss",
        "at_chance": "test score at or below chance",
        "collapsed": f"predictions collapsed (one class on >= {COLLAPSE_SHARE:.0%} of test rows)",
    }
    return [
        "; ".join(text for col, text in labels.items() if row[col])
        for _, row in out[list(labels)].iterrows()
    ]


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
    False for a job without predictions. ``diverged_reason`` lists the triggered checks.
    ``still_improving``: the run stopped for its step budget while its last validation point
    beat every earlier one (under-trained; not a divergence). Jobs
    found only in ``results`` are kept with NaN history columns.
    """
    check_score_metric(metric)
    val_col = f"val_{metric}"
    check_columns(history, [*JOB_KEYS, "epoch", "train_loss", val_col, "wall_s"], "history")
    hist = _history_summary(history, val_col, level)

    check_columns(results, [*JOB_KEYS, "n_train", "metric", "value"], "results")
    res = results[results["metric"] == metric]
    test = res.groupby(JOB_KEYS, as_index=False, sort=True, dropna=False).agg(
        test_score=("value", "mean"), n_train_r=("n_train", "first")
    )
    out = hist.merge(test, on=JOB_KEYS, how="outer")
    out["n_train"] = out["n_train_r"].astype(float).fillna(out["n_train_h"].astype(float))
    out["chance"] = [chance_of(t, chance) for t in out["task"]]
    out["diverged_flag"] = out["diverged_flag"].astype("boolean").fillna(False).astype(bool)
    out["nonfinite_loss"] = out["nonfinite_loss"].astype("boolean").fillna(False).astype(bool)
    out["still_improving"] = out["still_improving"].astype("boolean").fillna(False).astype(bool)
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
    out["diverged_reason"] = _diverged_reasons(out)
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
    ``n_still_improving`` and ``still_improving_rate`` (runs that ran out of their step budget
    with the validation score still rising, see ``still_improving`` of `finetune_process`),
    ``median_total_wall_s``, ``median_wall_s_to_level``, ``median_samples_to_level``.
    """
    keys = [*KEYS, "n_train"] if by_size else list(KEYS)
    columns = [*keys, "n_jobs", "n_sizes", "test_score_mean", "chance", "seed_std"]
    columns += ["seed_std_max", "n_diverged", "diverged_rate", "n_at_chance", "at_chance_rate"]
    columns += ["n_collapsed", "collapsed_rate", "collapsed", "top_pred_share"]
    columns += ["n_still_improving", "still_improving_rate"]
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
                ("still_improving", False),
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
        n_still_improving=("still_improving", "sum"),
        top_pred_share=("top_pred_share", "max"),
        median_total_wall_s=("total_wall_s", "median"),
        median_wall_s_to_level=("wall_s_to_level", "median"),
        median_samples_to_level=("samples_to_level", "median"),
    )
    table["diverged_rate"] = table["n_diverged"] / table["n_jobs"]
    table["at_chance_rate"] = table["n_at_chance"] / table["n_jobs"]
    table["collapsed_rate"] = table["n_collapsed"] / table["n_jobs"]
    table["collapsed"] = table["n_collapsed"] > 0
    table["still_improving_rate"] = table["n_still_improving"] / table["n_jobs"]
    table = table.merge(spread, on=keys, how="left")
    return table[columns]
