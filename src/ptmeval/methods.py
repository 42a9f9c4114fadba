"""The adaptation-method comparison: one base model adapted several ways (`methods:` in the
config: full fine-tuning, LoRA, a linear probe), on the same subsets, seeds and test split.

Per base model × task × method × training size: the test score over seeds, the fine-tune's wall
time, and what the method costs to train, run and keep — trainable parameters, the bytes one more
task adds on top of the shared base (the whole model for full fine-tuning, the adapter for LoRA,
the head for a probe), a training step's time and peak memory (runtime stage). At the largest
size, the score's interval over test examples (the rank-interval bootstrap) and the paired
difference from the base's best method there (bootstrap interval, Holm-adjusted McNemar), so
that "within a point of full fine-tuning" is a tested statement, not a reading of two means.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from ptmeval.comparison import paired_test
from ptmeval.decision import system_costs

COLUMNS = [
    "base",
    "model",
    "method",
    "task",
    "n_train",
    "score",
    "score_min",
    "score_max",
    "n_seeds",
    "largest",
    "score_lo",
    "score_hi",
    "best_method",
    "diff_vs_best",
    "diff_lo",
    "diff_hi",
    "p_vs_best",
    "tied_with_best",
    "trainable_params",
    "finetune_s",
    "task_mb",
    "train_step_ms",
    "train_peak_mb",
    "train_batch",
]


def _train_step(runtime: pd.DataFrame) -> pd.DataFrame:
    """Per model: the training step at its largest measured batch (latency p50, peak memory)."""
    columns = ["model", "train_step_ms", "train_peak_mb", "train_batch"]
    if runtime.empty or "mode" not in runtime:
        return pd.DataFrame(columns=columns)
    steps = runtime[runtime["mode"] == "train_step"]
    if "device_kind" in steps:  # the CPU's, measured everywhere
        steps = steps[steps["device_kind"] == "cpu"]
    steps = steps.sort_values("batch_size").groupby("model", as_index=False).last()
    return steps.rename(
        columns={
            "latency_p50_ms": "train_step_ms",
            "peak_rss_mb": "train_peak_mb",
            "batch_size": "train_batch",
        }
    ).reindex(columns=columns)


def _costs(tables: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per model × task × size: mean fine-tune wall time; per model × task: trainable
    parameters and MB stored per extra task (`ptmeval.decision.system_costs`, the costs the
    recommendation reads)."""
    keys = ["model", "task", "n_train"]
    time = pd.DataFrame(columns=[*keys, "finetune_s"])
    cost = tables.get("finetune_cost", pd.DataFrame())
    if not cost.empty:
        pretrained = cost[cost["init"] == "pretrained"]
        time = pretrained.groupby(keys, as_index=False)["wall_s"].mean()
        time = time.rename(columns={"wall_s": "finetune_s"})
    columns = ["model", "task", "trainable_params", "task_mb"]
    store = system_costs(tables)
    if store.empty:
        return time, pd.DataFrame(columns=columns)
    store = store[store["init"] == "pretrained"].rename(columns={"storage_mb": "task_mb"})
    return time, store.reindex(columns=columns)


def method_comparison(
    tables: dict[str, pd.DataFrame], bases: dict[str, str], metric: str
) -> pd.DataFrame:
    """The comparison table (`COLUMNS`), for the base models with more than one method.

    ``bases`` maps each model slug to its base model's slug; ``tables`` are the aggregate's
    ``learning_curve``, ``finetune_cost``, ``runtime``, ``ranks``, ``pairwise`` (and what
    `system_costs` reads).
    Scores are of the pretrained init (the methods other than full have no other)."""
    several = {base for base in set(bases.values()) if sum(b == base for b in bases.values()) > 1}
    curve = tables.get("learning_curve", pd.DataFrame())
    if not several or curve.empty:
        return pd.DataFrame(columns=COLUMNS)
    curve = curve[(curve["metric"] == metric) & (curve["init"] == "pretrained")].copy()
    curve["base"] = curve["model"].map(bases)
    curve = curve[curve["base"].isin(several)]
    if curve.empty:
        return pd.DataFrame(columns=COLUMNS)
    out = curve.rename(columns={"mean": "score", "min": "score_min", "max": "score_max"})
    out["largest"] = out["n_train"] == out.groupby(["base", "task"])["n_train"].transform("max")
    time, store = _costs(tables)
    out = out.merge(time, on=["model", "task", "n_train"], how="left")
    out = out.merge(store, on=["model", "task"], how="left")
    out = out.merge(_train_step(tables.get("runtime", pd.DataFrame())), on="model", how="left")
    out = _with_tests(out, tables.get("ranks", pd.DataFrame()), tables.get("pairwise"))
    return (
        out.reindex(columns=COLUMNS)
        .sort_values(["base", "task", "n_train", "method"])
        .reset_index(drop=True)
    )


def _with_tests(out: pd.DataFrame, ranks: pd.DataFrame, pairwise: Any) -> pd.DataFrame:
    """At the largest size: each method's score interval (ranks) and its paired difference from
    the base's most accurate method on the task (pairwise; the best itself: 0, tied)."""
    for col in ("score_lo", "score_hi", "diff_vs_best", "diff_lo", "diff_hi", "p_vs_best"):
        out[col] = np.nan
    out["best_method"] = None
    out["tied_with_best"] = None
    if ranks is None or ranks.empty:
        return out
    sys = ranks[ranks["init"] == "pretrained"].set_index(["task", "model"])
    pairs = pairwise if pairwise is not None else pd.DataFrame()
    for (_, task), group in out[out["largest"]].groupby(["base", "task"]):
        known = [m for m in group["model"] if (task, m) in sys.index]
        if not known:
            continue
        best = max(known, key=lambda m: float(sys.loc[(task, m), "accuracy"]))
        best_system = sys.loc[(task, best), "system"]
        best_method = group.loc[group["model"] == best, "method"].iloc[0]
        for idx, row in group.iterrows():
            out.at[idx, "best_method"] = best_method
            if (task, row["model"]) not in sys.index:
                continue
            this = sys.loc[(task, row["model"])]
            out.at[idx, "score_lo"] = this["accuracy_lo"]
            out.at[idx, "score_hi"] = this["accuracy_hi"]
            if row["model"] == best:
                out.at[idx, "diff_vs_best"] = 0.0
                out.at[idx, "tied_with_best"] = True
                continue
            test = paired_test(pairs, task, best_system, this["system"])
            if test is None:
                continue
            out.at[idx, "diff_vs_best"] = -float(test["diff"]) * test["sign"] + 0.0  # no -0.0
            low, high = float(test["diff_lo"]), float(test["diff_hi"])
            out.at[idx, "diff_lo"], out.at[idx, "diff_hi"] = (
                (-high, -low) if test["sign"] > 0 else (low, high)
            )
            out.at[idx, "p_vs_best"] = test["mcnemar_p_holm"]
            out.at[idx, "tied_with_best"] = not bool(test["significant"])
    return out


def _mb(value: float) -> str:
    return "not measured" if not math.isfinite(value) else f"{value:,.2f} MB"


def summaries(table: pd.DataFrame) -> list[str]:
    """One sentence per base model × task, at the largest size: each method against the most
    accurate one — tied or not by the paired test, and what it costs per extra task and to
    fine-tune relative to it."""
    if table.empty:
        return []
    out = []
    top = table[table["largest"].astype(bool)]
    for (base, task), group in top.groupby(["base", "task"], sort=True):
        best = group[group["method"] == group["best_method"].iloc[0]]
        if best.empty:
            continue
        ref = best.iloc[0]
        parts = []
        for _, row in group[group["model"] != ref["model"]].iterrows():
            if pd.isna(row["diff_vs_best"]):
                verdict = "no paired test"
            else:
                tied = "tied with it" if row["tied_with_best"] else "behind it"
                verdict = (
                    f"{row['diff_vs_best']:+.3f} [{row['diff_lo']:+.3f}, {row['diff_hi']:+.3f}], "
                    f"{tied} (Holm-adjusted McNemar p = {row['p_vs_best']:.2g})"
                )
            cost = []
            if pd.notna(row["task_mb"]) and pd.notna(ref["task_mb"]) and ref["task_mb"] > 0:
                cost.append(
                    f"{_mb(float(row['task_mb']))} per extra task "
                    f"({100 * row['task_mb'] / ref['task_mb']:.2g}% of {ref['method']}'s)"
                )
            if pd.notna(row["finetune_s"]) and pd.notna(ref["finetune_s"]) and ref["finetune_s"]:
                cost.append(f"{row['finetune_s'] / ref['finetune_s']:.2g}× its fine-tune time")
            parts.append(
                f"{row['method']} {row['score']:.3f}: {verdict}"
                + (f"; {', '.join(cost)}" if cost else "")
            )
        out.append(
            f"{base} on {task} (n = {int(ref['n_train'])}): {ref['method']} is the most "
            f"accurate ({ref['score']:.3f} [{ref['score_lo']:.3f}, {ref['score_hi']:.3f}]); "
            + "; ".join(parts)
            + "."
        )
    return out


# ---------------------------------------------- what the methods of one base model share


def shared_inference(runtime: pd.DataFrame, bases: dict[str, str]) -> pd.DataFrame:
    """The runtime table with a base model's inference rows (measured once, under its first
    method: one network at inference whatever the method) repeated under its other methods."""
    if runtime.empty or "mode" not in runtime:
        return runtime
    inference = runtime["mode"] == "inference"
    shared = for_every_method(runtime[inference], bases)
    return pd.concat([shared, runtime[~inference]], ignore_index=True)


def for_every_method(frame: pd.DataFrame, bases: dict[str, str]) -> pd.DataFrame:
    """A table of what a base model's methods share (the frozen weights' scores, the network's
    inference), measured under one of its methods, repeated under each of its other methods."""
    if frame.empty or not bases or "model" not in frame:
        return frame
    extra = [
        frame[frame["model"] == scored].assign(model=other)
        for scored in frame["model"].unique()
        for other, base in bases.items()
        if base == bases.get(scored) and other != scored and other not in set(frame["model"])
    ]
    return pd.concat([frame, *extra], ignore_index=True) if extra else frame


def borrow_scratch(frame: pd.DataFrame, bases: dict[str, str]) -> pd.DataFrame:
    """`frame` (rows with model, method, init) plus, for each model without scratch rows whose
    base model has a method with them, a copy of those rows under its name and method."""
    if frame.empty or not bases or "init" not in frame:
        return frame
    scratch = frame[frame["init"] == "scratch"]
    has = set(scratch["model"])
    extra = []
    for model, method in frame[["model", "method"]].drop_duplicates().itertuples(index=False):
        if model in has:
            continue
        siblings = [m for m, b in bases.items() if b == bases.get(model) and m in has]
        if siblings:
            rows = scratch[scratch["model"] == siblings[0]]
            extra.append(rows.assign(model=model, method=method))
    return pd.concat([frame, *extra], ignore_index=True) if extra else frame
