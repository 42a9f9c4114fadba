"""`aggregate`: gather the per-job tables into the tidy tables the report is rendered from, and
derive the statistics: learning-curve fits, data needed, transfer gain, training difficulty,
paired comparisons and rank intervals, transferability checked against reality, task
similarity, hardware verdicts and the compatibility matrix."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ptmeval import comparison, decision, scaling, scorecard, verdicts
from ptmeval import deployment as deploy
from ptmeval import tables as contracts
from ptmeval.adapters import ADAPTERS, get_spec
from ptmeval.findings import FAILED_COLUMN, is_failure_table
from ptmeval.io import read_provenance, read_table
from ptmeval.methods import borrow_scratch, for_every_method, method_comparison, shared_inference
from ptmeval.transfer import frechet_diag, score_predictions

log = logging.getLogger(__name__)

KEYS = ["model", "task", "init", "method"]
PREDICTORS = [
    "logme",
    "h_score",
    "leep",
    "nce",
    "knn_accuracy",
    "linear_probe_val_accuracy",
    "params_total",
    "flops_forward_per_sample",
]
NAIVE = {"linear_probe_val_accuracy", "params_total", "flops_forward_per_sample"}


def concat_tables(
    paths: Iterable[str | Path], failures: list[pd.DataFrame] | None = None
) -> pd.DataFrame:
    """The tables one after the other; failure records (`ptmeval.findings`) are set apart
    into `failures` instead."""
    frames = []
    for path in paths:
        frame = read_table(path)
        if is_failure_table(frame):
            if failures is not None:
                failures.append(frame)
        elif len(frame):
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


MACHINE_FIELDS = ["host", "system", "processor", "cpu_count", "gpu", "gpu_count"]


def machines(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Where the per-job tables were computed, from the provenance each job stamped in its
    table (`ptmeval.io.write_table`): one row per machine × commit × ptmeval version, with the
    stages (results/<stage>/…) and the number of tables it wrote."""
    rows = []
    for path in paths:
        path = Path(path)
        if not path.is_file() or path.suffix != ".parquet":
            continue
        found = read_provenance(path)
        hw = found.get("hardware") or {}
        parts = path.parts
        stage = parts[parts.index("results") + 1] if "results" in parts else path.parent.name
        rows.append(
            {
                **{k: hw.get(k) for k in MACHINE_FIELDS},
                "git_commit": found.get("git_commit"),
                "ptmeval_version": found.get("ptmeval_version"),
                "stage": stage,
            }
        )
    columns = [*MACHINE_FIELDS, "git_commit", "ptmeval_version", "stages", "tables"]
    if not rows:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(rows).astype({k: "string" for k in MACHINE_FIELDS})
    keys = [*MACHINE_FIELDS, "git_commit", "ptmeval_version"]
    return (
        frame.fillna("–")
        .groupby(keys, as_index=False)
        .agg(stages=("stage", lambda s: ", ".join(sorted(set(s)))), tables=("stage", "size"))
        .sort_values("tables", ascending=False)
        .reset_index(drop=True)[columns]
    )


def failure_summary(records: list[pd.DataFrame]) -> pd.DataFrame:
    """Per model and failure: where it began, why, and how many jobs it stopped."""
    columns = ["model", "failed_stage", "reason", "jobs", "stages"]
    if not records:
        return pd.DataFrame(columns=columns)
    frame = pd.concat(records, ignore_index=True).rename(columns={FAILED_COLUMN: "failed_stage"})
    frame = frame.drop_duplicates(["model", "job", "stage", "failed_stage", "reason"])
    return (
        frame.groupby(["model", "failed_stage", "reason"], as_index=False)
        .agg(jobs=("job", "size"), stages=("stage", lambda s: ", ".join(sorted(set(s)))))
        .sort_values(["model", "failed_stage"])
        .reset_index(drop=True)[columns]
    )


def learning_curves(results: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation, min and max of each metric over seeds, per training size."""
    if results.empty:
        return pd.DataFrame()
    grouped = results.groupby([*KEYS, "fraction", "n_train", "metric"], as_index=False)["value"]
    curve = grouped.agg(mean="mean", std="std", min="min", max="max", n_seeds="count")
    curve["std"] = curve["std"].fillna(0.0)
    return curve.sort_values([*KEYS, "metric", "n_train"]).reset_index(drop=True)


def fine_tune_cost(history: pd.DataFrame) -> pd.DataFrame:
    """Per job: final epoch's wall time, samples seen and divergence."""
    if history.empty:
        return pd.DataFrame()
    last = history.sort_values("epoch").groupby([*KEYS, "fraction", "seed"], as_index=False).last()
    columns = [*KEYS, "fraction", "seed", "n_train", "epoch", "wall_s", "samples_seen", "diverged"]
    columns += [c for c in ("trainable_params", "task_bytes") if c in last]
    return last[columns]


def final_scores(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean test score per model × task at the largest training size, pretrained init."""
    sub = results[(results["metric"] == metric) & (results["init"] == "pretrained")]
    if sub.empty:
        return pd.DataFrame(columns=["model", "task", "score"])
    largest = sub.groupby(["model", "task"])["n_train"].transform("max")
    top = sub[sub["n_train"] == largest]
    return (
        top.groupby(["model", "task"], as_index=False)["value"]
        .mean()
        .rename(columns={"value": "score"})
    )


def transfer_prediction(
    transfer: pd.DataFrame,
    profile: pd.DataFrame,
    results: pd.DataFrame,
    metric: str,
    n_boot: int,
) -> pd.DataFrame:
    """Weighted Kendall τ between each transferability score (and each naive baseline) and the
    fine-tuned test score, per task and pooled over tasks (scores ranked within each task)."""
    if transfer.empty or results.empty:
        return pd.DataFrame()
    table = transfer.merge(final_scores(results, metric), on=["model", "task"], how="inner")
    if not profile.empty:
        table = table.merge(
            profile[["model", "params_total", "flops_forward_per_sample"]], on="model", how="left"
        )
    rows = []
    for predictor in PREDICTORS:
        if predictor not in table or table[predictor].isna().all():
            continue
        for task, group in table.groupby("task"):
            res = score_predictions(
                dict(zip(group["model"], group[predictor], strict=True)),
                dict(zip(group["model"], group["score"], strict=True)),
                n_boot=n_boot,
            )
            rows.append({"predictor": predictor, "task": task, **res})
        ranked = table.assign(
            p=table.groupby("task")[predictor].rank(pct=True),
            s=table.groupby("task")["score"].rank(pct=True),
        )
        keys = [f"{m}@{t}" for m, t in zip(ranked["model"], ranked["task"], strict=True)]
        res = score_predictions(
            dict(zip(keys, ranked["p"], strict=True)),
            dict(zip(keys, ranked["s"], strict=True)),
            n_boot=n_boot,
        )
        rows.append({"predictor": predictor, "task": "pooled (ranks within task)", **res})
    out = pd.DataFrame(rows)
    if not out.empty:
        out["kind"] = np.where(out["predictor"].isin(NAIVE), "naive baseline", "transferability")
    return out


def prediction_points(
    transfer: pd.DataFrame, profile: pd.DataFrame, results: pd.DataFrame, metric: str
) -> pd.DataFrame:
    """Per model × task: each predictor's value next to the fine-tuned score (for the scatter)."""
    if transfer.empty or results.empty:
        return pd.DataFrame()
    cols = [c for c in ["model", "task", *PREDICTORS] if c in transfer.columns]
    table = transfer[cols].merge(final_scores(results, metric), on=["model", "task"])
    if not profile.empty:
        table = table.merge(
            profile[["model", "params_total", "flops_forward_per_sample"]], on="model", how="left"
        )
    return table


def prediction_cost(transfer: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """Wall time of the transferability scores (feature extraction + scoring) against the total
    fine-tuning wall time they stand in for (every size, seed and init), per model × task. A
    linear probe's fine-tunes read the same cached features as the scores: for it the features
    count on the fine-tune side and the scores alone are the prediction's cost."""
    if transfer.empty or history.empty:
        return pd.DataFrame()
    last = history.sort_values("epoch").groupby([*KEYS, "fraction", "seed"], as_index=False).last()
    tuned = last.groupby(["model", "task"], as_index=False)["wall_s"].sum()
    tuned = tuned.rename(columns={"wall_s": "finetune_wall_s"})
    probes = set(last.loc[last["method"] == "linear_probe", "model"])
    cost = transfer[["model", "task", "scores_wall_s"]].copy()
    cost["features_wall_s"] = transfer.get("features_wall_s", np.nan)
    out = cost.merge(tuned, on=["model", "task"], how="left")
    out["shared_features"] = out["model"].isin(probes)
    features = out["features_wall_s"].fillna(0.0)
    out["predict_wall_s"] = out["scores_wall_s"] + features.where(~out["shared_features"], 0.0)
    out["finetune_wall_s"] += features.where(out["shared_features"], 0.0)
    out["cost_ratio"] = out["predict_wall_s"] / out["finetune_wall_s"]
    return out


def reuse(results: pd.DataFrame, gain: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per model: mean normalised score over its tasks (score / best score of any model on the
    task, largest size, best init) and mean transfer gain at the largest size."""
    if results.empty:
        return pd.DataFrame()
    sub = results[results["metric"] == metric]
    largest = sub.groupby(["model", "task"])["n_train"].transform("max")
    top = (
        sub[sub["n_train"] == largest]
        .groupby(["model", "task", "init"], as_index=False)["value"]
        .mean()
    )
    best_init = top.groupby(["model", "task"], as_index=False)["value"].max()
    best_init["normalised"] = best_init["value"] / best_init.groupby("task")["value"].transform(
        "max"
    )
    out = best_init.groupby("model", as_index=False).agg(
        tasks=("task", "nunique"),
        mean_score=("value", "mean"),
        mean_normalised=("normalised", "mean"),
    )
    if len(gain):
        g = gain[gain["n_train"] == gain.groupby(["model", "task"])["n_train"].transform("max")]
        out = out.merge(
            g.groupby("model", as_index=False)["gain"]
            .mean()
            .rename(columns={"gain": "mean_transfer_gain"}),
            on="model",
            how="left",
        )
    return out


def with_tuning(difficulty: pd.DataFrame, tuning: pd.DataFrame) -> pd.DataFrame:
    """The training-difficulty table with the hyperparameter selection of each model × task ×
    init: the value chosen, whether it was selected (a grid) or fixed, and the spread of the
    best validation score over the grid (how sensitive the model is to it)."""
    if difficulty.empty or tuning.empty:
        return difficulty
    chosen = tuning[tuning["chosen"]].rename(
        columns={
            "param": "hparam",
            "value": "hparam_value",
            "tuned": "hparam_tuned",
            "spread": "hparam_spread",
            "val_score": "hparam_val_score",
        }
    )
    keys = [k for k in ("model", "task", "init") if k in difficulty]
    edge = {
        tuple(key): at_grid_edge(group)
        for key, group in tuning.groupby(keys, sort=False, dropna=False)
    }
    chosen["hparam_at_edge"] = [edge.get(tuple(r), False) for r in chosen[keys].to_numpy()]
    columns = ["hparam", "hparam_value", "hparam_tuned", "hparam_spread", "hparam_val_score"]
    columns.append("hparam_at_edge")
    return difficulty.merge(chosen[[*keys, *columns]], on=keys, how="left")


def at_grid_edge(grid: pd.DataFrame) -> bool:
    """Whether a selection chose the smallest or largest value it tried while the validation
    score was still rising towards it (better than at the next value inwards): the best value
    may then lie outside the grid, and the fine-tune that used it may be under-tuned. Ties and
    a fixed (untuned) value are not at an edge."""
    tried = grid[grid["tuned"].astype(bool)].sort_values("value") if "tuned" in grid else grid
    if len(tried) < 2 or not tried["chosen"].astype(bool).any():
        return False
    scores = tried["val_score"].astype(float).to_numpy()
    at = int(np.flatnonzero(tried["chosen"].astype(bool).to_numpy())[0])
    if at == 0:
        return bool(scores[0] > scores[1])
    if at == len(tried) - 1:
        return bool(scores[-1] > scores[-2])
    return False


def latency_cross_check(
    runtime: pd.DataFrame,
    deployment: pd.DataFrame,
    factor: float = scorecard.LATENCY_AGREEMENT,
) -> pd.DataFrame:
    """``runtime`` with ``export_b1_ms``: on each model's inference row at batch 1, the eager
    fp32 latency at batch 1 that its export check measured (in another job, at another time;
    the median over tasks). A runtime latency more than ``factor`` times away from it is marked
    ``noisy``: one of the two was measured on a busy machine (its CV can be small when the
    whole measurement was slowed alike, e.g. by threads competing for the cores)."""
    runtime = runtime.copy()
    runtime["export_b1_ms"] = np.nan
    needed = {"model", "variant", "status", "latency_b1_p50_ms"}
    if runtime.empty or deployment.empty or not needed <= set(deployment.columns):
        return runtime
    fp32 = deployment[(deployment["variant"] == "fp32") & (deployment["status"] == "ok")]
    eager = fp32.groupby("model")["latency_b1_p50_ms"].median()
    rows = (runtime["mode"] == "inference") & (runtime["batch_size"] == 1)
    rows &= runtime["model"].isin(eager.index)
    runtime.loc[rows, "export_b1_ms"] = runtime.loc[rows, "model"].map(eager).astype(float)
    ratio = runtime["latency_p50_ms"].astype(float) / runtime["export_b1_ms"]
    apart = rows & ((ratio > factor) | (ratio < 1 / factor))
    noisy = runtime["noisy"] if "noisy" in runtime else pd.Series(False, index=runtime.index)
    runtime["noisy"] = noisy.astype("boolean").fillna(False).astype(bool) | apart
    return runtime


def task_similarity(transfer: pd.DataFrame) -> pd.DataFrame:
    """Per model: Fréchet distance (diagonal covariances) between its frozen-feature
    distributions on every pair of tasks."""
    rows = []
    if transfer.empty or "feature_mean" not in transfer:
        return pd.DataFrame()
    for model, group in transfer.groupby("model"):
        for (_, a), (_, b) in combinations(group.iterrows(), 2):
            rows.append(
                {
                    "model": model,
                    "task_a": a["task"],
                    "task_b": b["task"],
                    "frechet_distance": frechet_diag(
                        a["feature_mean"], a["feature_var"], b["feature_mean"], b["feature_var"]
                    ),
                    "feature_dim": len(a["feature_mean"]),
                }
            )
    return pd.DataFrame(rows)


def similarity_vs_gain(similarity: pd.DataFrame, gain: pd.DataFrame) -> pd.DataFrame:
    """Per model: does a task's similarity to the model's other tasks (mean Fréchet distance of
    their frozen features) predict the transfer gain on it? Spearman's ρ over tasks, at the
    largest size; fewer than 3 tasks with a gain gives no number, with the reason."""
    rows = []
    if similarity.empty or gain.empty:
        return pd.DataFrame(columns=["model", "tasks", "spearman_rho", "p_value", "note"])
    from scipy.stats import spearmanr

    top = gain[gain["n_train"] == gain.groupby(["model", "task"])["n_train"].transform("max")]
    for model, sim in similarity.groupby("model"):
        long = pd.concat(
            [
                sim[["task_a", "frechet_distance"]].rename(columns={"task_a": "task"}),
                sim[["task_b", "frechet_distance"]].rename(columns={"task_b": "task"}),
            ]
        )
        distance = long.groupby("task")["frechet_distance"].mean()
        g = top[top["model"] == model].groupby("task")["gain"].mean()
        both = pd.concat([distance, g], axis=1, join="inner").dropna()
        row: dict[str, Any] = {"model": model, "tasks": len(both)}
        if len(both) < 3:
            row.update(
                spearman_rho=np.nan,
                p_value=np.nan,
                note=f"needs 3 tasks with both a similarity and a transfer gain, has {len(both)}",
            )
        else:
            rho, p = spearmanr(both["frechet_distance"], both["gain"])
            row.update(
                spearman_rho=float(rho),
                p_value=float(p),
                note="negative ρ: tasks closer to the others gain more from pretraining",
            )
        rows.append(row)
    return pd.DataFrame(rows)


PROTOCOL_COLUMNS = [
    "model",
    "task",
    "init",
    "method",
    "fraction",
    "n_train",
    "metric",
    "n_seeds",
    "score",
    "score_lo",
    "score_hi",
    "frozen_score",
    "frozen_n_seeds",
    "difference",
    "below_frozen",
    "largest",
    "verdict",
]


def _metric_replicates(
    labels: np.ndarray, preds: np.ndarray, metric: str, n_boot: int, seed: int
) -> np.ndarray:
    """Bootstrap replicates of a system's mean test score over its seeds, resampling both the
    seeds (with replacement) and the test examples (with replacement, the same resample for
    every seed): ``labels`` (n,), ``preds`` (seeds x n) -> (n_boot,)."""
    n_seeds, n = preds.shape
    rng = np.random.default_rng(seed)
    if metric == "accuracy":
        columns = (preds == labels).T.astype(float)  # n x seeds
    elif metric == "macro_f1":  # per seed and class: true positive, false positive, false negative
        classes = np.union1d(labels, preds)
        predicted = preds[:, :, None] == classes  # seeds x n x K
        actual = np.broadcast_to(labels[None, :, None] == classes, predicted.shape)
        stacked = np.stack([predicted & actual, predicted & ~actual, ~predicted & actual], -1)
        columns = stacked.transpose(1, 0, 2, 3).reshape(n, -1).astype(float)
    else:
        raise ValueError(f"protocol check: no per-example bootstrap for metric '{metric}'")
    out = np.empty(n_boot)
    chunk = max(1, 2_000_000 // max(n * columns.shape[1], 1))
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=stop - start) @ columns
        if metric == "accuracy":
            per_seed = counts / n  # replicates x seeds
        else:
            tp, fp_, fn_ = np.moveaxis(counts.reshape(stop - start, n_seeds, -1, 3), -1, 0)
            denom = 2 * tp + fp_ + fn_
            f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
            per_seed = f1.sum(axis=-1) / np.maximum((denom > 0).sum(axis=-1), 1)
        picks = rng.integers(0, n_seeds, size=(stop - start, n_seeds))
        out[start:stop] = np.take_along_axis(per_seed, picks, axis=1).mean(axis=1)
    return out


def protocol_check(
    results: pd.DataFrame,
    predictions: pd.DataFrame,
    frozen: pd.DataFrame,
    metric: str,
    n_boot: int,
    alpha: float = 0.05,
    seed: int = 0,
) -> pd.DataFrame:
    """Is a full fine-tune below the same model's frozen features at the same training size?

    Per model × task × fraction of the fine-tunes from pretrained weights (``method`` full or
    lora, ``init == "pretrained"``) that have a frozen-feature probe score (``frozen``: the
    long table of `ptmeval.transfer.frozen_probe_scores`, fitted on the same training subsets):

    * ``score``: the fine-tune's mean test ``metric`` over seeds (as in the learning curve);
    * ``score_lo``/``score_hi``: its ``1 - alpha`` percentile interval from a bootstrap that
      resamples the seeds and the test examples (per-example predictions, the same example
      resample for every seed), so that both seed-to-seed and test-set variability count;
      NaN (and no verdict) without per-example predictions;
    * ``frozen_score``: the frozen probe's mean test ``metric`` over its seeds;
    * ``difference``: ``score - frozen_score``;
    * ``below_frozen``: **the rule** -- the fine-tune's upper bound is below the probe's mean,
      ``score_hi < frozen_score``: the fine-tune is worse than a logistic regression on its own
      frozen features beyond its interval, so the fine-tuning protocol (budget, learning
      rate, ...) rather than the model limits that score;
    * ``largest``: the model's largest training size on the task (what the ranking uses);
    * ``verdict``: the mark for the page, or why there is none.
    """
    if results.empty or frozen.empty:
        return pd.DataFrame(columns=PROTOCOL_COLUMNS)
    table = _fine_tunes_with_probe(results, frozen, metric)
    if table.empty:
        return pd.DataFrame(columns=PROTOCOL_COLUMNS)
    table["metric"] = metric
    table["difference"] = table["score"] - table["frozen_score"]
    largest = table.groupby(["model", "task"])["n_train"].transform("max")
    table["largest"] = table["n_train"] == largest
    lows, highs, verdicts_ = [], [], []
    for _, row in table.iterrows():
        lo, hi = _score_interval(row, predictions, metric, n_boot, alpha, seed)
        lows.append(lo)
        highs.append(hi)
        verdicts_.append(_protocol_verdict(hi, row["frozen_score"]))
    table["score_lo"], table["score_hi"], table["verdict"] = lows, highs, verdicts_
    table["below_frozen"] = table["score_hi"] < table["frozen_score"]
    table = table.sort_values(["task", "model", "n_train"]).reset_index(drop=True)
    return table[PROTOCOL_COLUMNS]


def _fine_tunes_with_probe(
    results: pd.DataFrame, frozen: pd.DataFrame, metric: str
) -> pd.DataFrame:
    """Per fine-tune from pretrained weights (full or lora) that has a frozen probe score at its
    fraction: its mean score and seeds, and the probe's."""
    keys = ["model", "task", "init", "method", "fraction", "n_train"]
    tuned = results[
        (results["metric"] == metric)
        & results["method"].isin(["full", "lora"])
        & (results["init"] == "pretrained")
    ]
    means = tuned.groupby(keys, as_index=False).agg(
        score=("value", "mean"), n_seeds=("value", "count")
    )
    probe = (
        frozen[frozen["metric"] == metric]
        .dropna(subset=["value"])
        .groupby(["model", "task", "init", "fraction"], as_index=False)
        .agg(frozen_score=("value", "mean"), frozen_n_seeds=("value", "count"))
    )
    return means.merge(probe, on=["model", "task", "init", "fraction"], how="inner")


def _score_interval(
    row: pd.Series,
    predictions: pd.DataFrame,
    metric: str,
    n_boot: int,
    alpha: float,
    seed: int,
) -> tuple[float, float]:
    """The fine-tune's ``1 - alpha`` interval from its per-example predictions (NaN without)."""
    lo = hi = np.nan
    if len(predictions):
        sub = predictions[
            (predictions["model"] == row["model"])
            & (predictions["task"] == row["task"])
            & (predictions["init"] == row["init"])
            & (predictions["method"] == row["method"])
            & (predictions["fraction"] == row["fraction"])
        ]
        if len(sub):
            wide = sub.pivot_table(index="row_id", columns="seed", values="pred").dropna()
            labels = sub.drop_duplicates("row_id").set_index("row_id")["label"]
            reps = _metric_replicates(
                labels.loc[wide.index].to_numpy(int),
                wide.to_numpy(int).T,
                metric,
                n_boot,
                seed,
            )
            lo, hi = (float(q) for q in np.quantile(reps, [alpha / 2, 1 - alpha / 2]))
    return lo, hi


def _protocol_verdict(hi: float, frozen_score: float) -> str:
    """The page's mark when the interval's upper bound is below the probe, or why there is none."""
    if np.isnan(hi):
        return "no per-example predictions: no interval, no verdict"
    if hi < frozen_score:
        return verdicts.PROTOCOL_MARK
    return "not below its frozen features"


def comparisons(
    predictions: pd.DataFrame, n_boot: int, alpha: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Paired tests between every pair of systems and rank intervals, per task."""
    pairs, ranks = [], []
    for task in sorted(predictions["task"].unique()) if len(predictions) else []:
        try:
            pairs.append(
                comparison.pairwise_comparisons(predictions, task, n_boot=n_boot, alpha=alpha)
            )
            ranks.append(comparison.rank_intervals(predictions, task, n_boot=n_boot, alpha=alpha))
        except ValueError as err:  # a finding, e.g. systems evaluated on different rows
            log.warning("comparisons on %s skipped: %s", task, err)
    cat = lambda frames: pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()  # noqa: E731
    return cat(pairs), cat(ranks)


def stage_times(benchmarks: Iterable[str | Path]) -> pd.DataFrame:
    """Per stage: jobs, total and maximum wall time, maximum RSS, from Snakemake's benchmark
    files (results/benchmarks/<stage>/...tsv)."""
    rows = []
    for path in benchmarks:
        path = Path(path)
        try:
            bench = pd.read_csv(path, sep="\t")
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError):
            continue
        parts = path.parts
        name = parts[parts.index("benchmarks") + 1] if "benchmarks" in parts else path.parent.name
        rows.append(
            {
                "stage": name,
                "wall_s": float(bench["s"].iloc[-1]),
                "max_rss_mb": float(bench["max_rss"].iloc[-1]) if "max_rss" in bench else np.nan,
            }
        )
    if not rows:
        return pd.DataFrame(columns=["stage", "jobs", "wall_s", "max_job_wall_s", "max_rss_mb"])
    frame = pd.DataFrame(rows)
    return frame.groupby("stage", as_index=False).agg(
        jobs=("wall_s", "size"),
        wall_s=("wall_s", "sum"),
        max_job_wall_s=("wall_s", "max"),
        max_rss_mb=("max_rss_mb", "max"),
    )


def chance_scores(tasks: pd.DataFrame, predictions: pd.DataFrame, metric: str) -> dict[str, float]:
    """Chance score per task (`scaling.chance_scores`) from the test split of the task
    summaries; a task without a summary falls back on the labels of its predictions."""
    if metric not in scaling.SCORE_METRICS:
        return {}
    from_predictions = scaling.chance_scores(predictions, metric) if len(predictions) else {}
    return {**from_predictions, **scaling.chance_scores(tasks, metric)}


def _job_tables(
    inputs: list[list[str | Path]],
    failed: list[pd.DataFrame],
    settings: dict[str, Any],
    metric: str,
    n_boot: int,
    alpha: float,
    bases: dict[str, str],
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame, dict[str, str]]:
    """The tables made from the jobs' outputs (a table that could not be read is noted in
    `failed`): results, curves and comparisons, runtime, export and transfer, with the verdicts
    on them; also the predictions and the models (slug -> adapter)."""
    metrics, histories, profiles, manifests, task_summaries, predictions = inputs[:6]
    runtimes, exports, deployments, transfers, _, tuning = inputs[6:]
    results = concat_tables(metrics, failed)
    history = concat_tables(histories, failed)
    profile = concat_tables(profiles, failed)
    tasks = concat_tables(task_summaries, failed)
    export = concat_tables(exports, failed)
    deployment = concat_tables(deployments, failed)
    runtime = shared_inference(concat_tables(runtimes, failed), bases)
    runtime = latency_cross_check(runtime, deployment)
    transfer = concat_tables(transfers, failed)
    preds = concat_tables(predictions, failed)
    curves = scaling_tables(results, history, tasks, preds, settings, bases)
    gain = curves["transfer_gain"]
    pairwise, ranks = comparisons(preds, n_boot=n_boot, alpha=alpha)
    models = settings.get("models") or dict.fromkeys(sorted(results["model"].unique()), "")
    tables = {
        "results": results,
        "learning_curve": learning_curves(results),
        "history": history,
        "finetune_cost": fine_tune_cost(history),
        "profile": profile,
        "manifest": concat_tables(manifests, failed),
        "tasks": tasks,
        "runtime": runtime,
        "accessibility": verdicts.accessibility(runtime, settings.get("hardware", []), deployment),
        "export": export,
        "deployment": deployment,
        "compatibility": verdicts.compatibility(models, results, export),
        "structure": verdicts.structure(profile),
        **curves,
        "pairwise": pairwise,
        "ranks": ranks,
        "transfer": transfer,
        "transfer_prediction": transfer_prediction(transfer, profile, results, metric, n_boot),
        "task_similarity": task_similarity(transfer),
        "prediction_points": prediction_points(transfer, profile, results, metric),
        "prediction_cost": prediction_cost(transfer, history),
        "reuse": reuse(results, gain, metric),
        "tuning": concat_tables(tuning, failed),
    }
    return tables, preds, models


def _check_declared(tables: dict[str, pd.DataFrame]) -> None:
    """Raise when the tables made differ from those the workflow declares (its outputs)."""
    from ptmeval.plan import AGGREGATE_TABLES

    if set(tables) != set(AGGREGATE_TABLES):  # the rule's outputs are declared from that list
        raise RuntimeError(
            "aggregate tables differ from ptmeval.plan.AGGREGATE_TABLES: "
            f"made but not declared {sorted(set(tables) - set(AGGREGATE_TABLES))}, "
            f"declared but not made {sorted(set(AGGREGATE_TABLES) - set(tables))}"
        )


def aggregate(
    metrics: Iterable[str | Path],
    histories: Iterable[str | Path],
    profiles: Iterable[str | Path],
    manifests: Iterable[str | Path],
    task_summaries: Iterable[str | Path],
    predictions: Iterable[str | Path] = (),
    runtimes: Iterable[str | Path] = (),
    exports: Iterable[str | Path] = (),
    deployments: Iterable[str | Path] = (),
    transfers: Iterable[str | Path] = (),
    frozen: Iterable[str | Path] = (),
    benchmarks: Iterable[str | Path] = (),
    estimate: str | Path | None = None,
    settings: dict[str, Any] | None = None,
    tuning: Iterable[str | Path] = (),
) -> dict[str, pd.DataFrame]:
    """The report's tables, by name."""
    settings = settings or {}
    inputs = [
        list(group)
        for group in (metrics, histories, profiles, manifests, task_summaries, predictions)
        + (runtimes, exports, deployments, transfers, frozen, tuning)
    ]
    frozen_probes = inputs[10]  # the paths, listed once (an iterator is read only once)
    failed: list[pd.DataFrame] = []
    metric = settings.get("metric", "accuracy")
    n_boot = int(settings.get("n_boot", 1000))
    alpha = float(settings.get("alpha", 0.05))
    bases: dict[str, str] = settings.get("bases") or {}
    tables, preds, models = _job_tables(inputs, failed, settings, metric, n_boot, alpha, bases)
    results, transfer, gain = tables["results"], tables["transfer"], tables["transfer_gain"]
    tables["difficulty"] = with_tuning(tables["difficulty"], tables["tuning"])
    tables["similarity_vs_gain"] = similarity_vs_gain(tables["task_similarity"], gain)
    tables["protocol_check"] = protocol_check(
        results,
        preds,
        for_every_method(concat_tables(frozen_probes, failed), bases),
        metric,
        n_boot=n_boot,
        alpha=alpha,
    )
    tables |= verdict_tables(tables, transfer, models, settings, bases)
    peaks = {"export_check": tables["export"].get("job_peak_rss_mb", pd.Series(dtype=float))}
    tables |= run_tables(benchmarks, estimate, failed, inputs, peaks)
    tables["pareto"] = pareto_points(tables, metric, settings.get("constraint", "latency"))
    tables["methods"] = method_comparison(tables, bases or {m: m for m in models}, metric)
    _check_declared(tables)
    return {name: _conformed(name, frame) for name, frame in tables.items()}


def _conformed(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """The table with every column of its contract (`ptmeval.tables`); a made table that lacks
    some is logged (its readers see them as missing values)."""
    absent = contracts.missing(name, frame)
    if absent and len(frame):
        log.warning("table %s lacks its contract's column(s) %s", name, ", ".join(absent))
    return contracts.conform(name, frame)


def scaling_tables(
    results: pd.DataFrame,
    history: pd.DataFrame,
    tasks: pd.DataFrame,
    preds: pd.DataFrame,
    settings: dict[str, Any],
    bases: dict[str, str],
) -> dict[str, pd.DataFrame]:
    """The learning-curve tables (`ptmeval.scaling`): fits, band, data needed, transfer gain,
    effective data, the per-job process and the training difficulty (empty without results)."""
    metric = settings.get("metric", "accuracy")
    n_boot = int(settings.get("n_boot", 1000))
    fits = band = needed = gain = effective = process = difficulty = pd.DataFrame()
    if len(results):
        chance = chance_scores(tasks, preds, metric)
        fits = scaling.learning_curve_fits(results, metric=metric, n_boot=min(n_boot, 500))
        band = scaling.curve_band(results, fits, metric=metric)
        process = scaling.finetune_process(
            history, results, metric=metric, chance=chance, predictions=preds
        )
        difficulty = scaling.training_difficulty(process)
        needed = scaling.data_needed(
            results,
            metric=metric,
            target=settings.get("target_score"),
            n_boot=min(n_boot, 500),
            chance=chance,
            process=process,
        )
        # a method other than full has no scratch run: its gain is over the base model's
        # from-scratch (fully trained) curve
        gain = scaling.transfer_gain(borrow_scratch(results, bases), metric=metric, n_boot=n_boot)
        effective = scaling.effective_data_transferred(
            results, borrow_scratch(fits, bases), metric=metric
        )
    return {
        "fits": fits,
        "curve_band": band,
        "data_needed": needed,
        "transfer_gain": gain,
        "effective_data": effective,
        "process": process,
        "difficulty": difficulty,
    }


def verdict_tables(
    tables: dict[str, pd.DataFrame],
    transfer: pd.DataFrame,
    models: dict[str, str],
    settings: dict[str, Any],
    bases: dict[str, str],
) -> dict[str, pd.DataFrame]:
    """The scorecard, its parts and the decision rule's table, from the measured tables."""
    metric = settings.get("metric", "accuracy")
    facts = {
        m: {"modality": get_spec(a).modality, "neural": get_spec(a).neural}
        for m, a in models.items()
        if a in ADAPTERS
    }
    # a probe's feature-extraction time (its cost to adapt) is the shared features': the
    # transfer table's, measured under the base model's first method, holds it for each method
    shared = {**tables, "transfer": for_every_method(transfer, bases)}
    card, parts = scorecard.scorecard(shared, settings.get("weights"), metric, facts)
    chosen = decision_table(
        {**shared, "scorecard_parts": parts}, settings.get("constraint", "latency")
    )
    return {"scorecard": card, "scorecard_parts": parts, "decision": chosen}


def run_tables(
    benchmarks: Iterable[str | Path],
    estimate: str | Path | None,
    failed: list[pd.DataFrame],
    inputs: list[list[str | Path]],
    recorded_peaks: dict[str, pd.Series] | None = None,
) -> dict[str, pd.DataFrame]:
    """How the run went: time and memory per stage (with the estimate beside), the failed jobs,
    and the machines the jobs ran on. `recorded_peaks`: per stage, the peak RSS (MB) its jobs
    recorded themselves; a stage's maximum RSS is the higher of that and Snakemake's (which
    samples every 30 s after a job's first 15 s and can miss a short-lived child process)."""
    times = stage_times(benchmarks)
    for stage, peaks in (recorded_peaks or {}).items():
        peak = pd.to_numeric(peaks, errors="coerce").max()
        at = times["stage"] == stage
        if pd.notna(peak) and at.any():
            times.loc[at, "max_rss_mb"] = np.fmax(times.loc[at, "max_rss_mb"], peak)
    if estimate is not None:
        est = read_table(estimate)
        times = times.merge(
            est[["stage", "jobs", "wall_s", "peak_mb"]].rename(
                columns={
                    "jobs": "estimated_jobs",
                    "wall_s": "estimated_wall_s",
                    "peak_mb": "estimated_peak_mb",
                }
            ),
            on="stage",
            how="outer",
        )
    return {
        "stage_times": times,
        "failures": failure_summary(failed),
        "machines": machines(path for group in inputs for path in group),
    }


def decision_table(tables: dict[str, pd.DataFrame], constraint: str) -> pd.DataFrame:
    """The recommendation's decision rule per task (`ptmeval.decision`), from the rank
    intervals, the paired tests, the costs and the protocol check."""
    parts = tables.get("scorecard_parts", pd.DataFrame())
    runtime = (
        parts.pivot(index="model", columns="submeasure", values="raw")
        if len(parts)
        else pd.DataFrame()
    )
    measured = tables.get("runtime", pd.DataFrame())
    if len(runtime) and {"mode", "batch_size", "noisy"} <= set(measured.columns):
        # the runtime row both sub-measures come from: inference at batch 1
        batch1 = measured[(measured["mode"] == "inference") & (measured["batch_size"] == 1)]
        noisy = batch1["noisy"].astype("boolean").fillna(False).astype(bool)
        flags = noisy.groupby(batch1["model"]).any()
        for column in ("latency_b1", "inference_memory"):
            runtime[f"{column}_noisy"] = flags.reindex(runtime.index, fill_value=False)
    return decision.decisions(
        tables.get("ranks", pd.DataFrame()),
        tables.get("pairwise", pd.DataFrame()),
        decision.system_costs(tables),
        runtime,
        tables.get("protocol_check", pd.DataFrame()),
        constraint,
    )


def _pareto_scores(tables: dict[str, pd.DataFrame], metric: str) -> pd.DataFrame:
    """Per task × model, the best init's score in ``metric`` at the largest size (columns
    ``task, model, metric, score, score_lo, score_hi``)."""
    columns = ["task", "model", "metric", "score", "score_lo", "score_hi"]
    if metric == "accuracy":
        ranks = tables.get("ranks", pd.DataFrame())
        if ranks.empty:
            return pd.DataFrame(columns=columns)
        best = ranks.sort_values("accuracy", ascending=False).drop_duplicates(["task", "model"])
        points = best[["task", "model", "accuracy", "accuracy_lo", "accuracy_hi"]].rename(
            columns={"accuracy": "score", "accuracy_lo": "score_lo", "accuracy_hi": "score_hi"}
        )
        return points.assign(metric=metric)[columns]
    curve = tables.get("learning_curve", pd.DataFrame())
    if curve.empty:
        return pd.DataFrame(columns=columns)
    curve = curve[curve["metric"] == metric]
    largest = curve.groupby(["task", "model"])["n_train"].transform("max")
    at_max = curve[curve["n_train"] == largest]
    best = at_max.sort_values("mean", ascending=False).drop_duplicates(["task", "model"])
    points = best[["task", "model", "mean"]].rename(columns={"mean": "score"})
    return points.assign(metric=metric, score_lo=np.nan, score_hi=np.nan)[columns]


def pareto_points(
    tables: dict[str, pd.DataFrame], metric: str, constraint: str = "latency"
) -> pd.DataFrame:
    """Per model × task: test score (``metric``, the analysis metric) of the best init at the
    largest size, and the costs of the Pareto view; plus, on the task of its deployment check, a
    point 'model · variant' for the model's best passing deployment variant
    (`deploy.best_variants`): the model's score shifted by the variant's paired change from fp32
    in that metric (skipped when the deployment gate measured another metric), its latency the
    model's × the variant's latency ratio to fp32, its memory the model's + the variant's
    peak-memory difference from fp32 (both measured side by side in the deployment check).
    For accuracy the score's 95% interval is the rank-interval bootstrap over test examples; for
    another metric there is none (``score_lo``/``score_hi`` NaN)."""
    parts = tables.get("scorecard_parts", pd.DataFrame())
    points = _pareto_scores(tables, metric)
    if points.empty or parts.empty:
        return pd.DataFrame()
    costs = parts.pivot(index="model", columns="submeasure", values="raw")
    cols = ["latency_b1", "inference_memory", "flops", "finetune_time"]
    points = points.merge(costs[cols].reset_index(), on="model", how="left")
    points["variant"] = None
    extra = []
    for pick in deploy.best_variants(tables.get("deployment", pd.DataFrame()), constraint):
        base = points[(points["model"] == pick["model"]) & (points["task"] == pick["task"])]
        if base.empty:
            continue
        row = base.iloc[0].to_dict()
        if metric == "accuracy":
            shift = float(pick["accuracy_diff"])
        elif pick["metric"] == metric:
            shift = float(pick["diff"])
        else:
            continue
        row.update(
            model=f"{pick['model']} · {pick['variant']}",
            variant=pick["variant"],
            score=row["score"] + shift,
            score_lo=row["score_lo"] + shift,
            score_hi=row["score_hi"] + shift,
            latency_b1=row["latency_b1"] * pick["latency_ratio"],
            inference_memory=row["inference_memory"] + pick["memory_diff_mb"],
            flops=np.nan,
            finetune_time=np.nan,
        )
        extra.append(row)
    return pd.concat([points, pd.DataFrame(extra)], ignore_index=True) if extra else points
