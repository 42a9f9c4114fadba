"""The decision rule behind the recommendation: per task, which systems are statistically tied
with the best, and which of them the user's cost constraint picks.

Per task, at each system's largest training size (the systems of the paired tests, `ranks` and
`pairwise` from `ptmeval.comparison`):

1. the **best** system is the most accurate one (rank 1; ties by name);
2. the **tied set** is the best plus every system whose paired test against it is not
   significant (Holm-adjusted McNemar p ≥ alpha, the `significant` column of `pairwise`);
3. a **single winner** is named only when the tied set is the best alone; otherwise the tie is
   broken by the stated constraint (`scorecard.constraint`: latency, memory, fine-tune cost or
   storage per extra task), among the tied systems whose cost was measured;
4. a system whose full fine-tune the protocol check flagged (below its own frozen features at the
   largest size) is marked, and the sentence says that the verdict rests on it.

The table has one row per task × system; `sentences` turns it into the recommendation's words.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ptmeval.comparison import RANK_COLUMNS, paired_test

CONSTRAINTS: dict[str, tuple[str, str, str]] = {
    # name -> (scorecard sub-measure or cost column, what it is, how it reads in a sentence)
    "latency": ("latency_b1", "CPU latency at batch 1 (p50)", "{:.3g} ms per example"),
    "memory": ("inference_memory", "peak memory at inference", "{:.0f} MB at inference"),
    "finetune_cost": ("adapt_s", "time to adapt at the largest size", "{:.3g} s to adapt"),
    "storage": ("storage_mb", "task-specific weights stored per extra task", "{:.3g} MB per task"),
}

# the rank-interval columns a decision row keeps (one row per task × system)
KEPT = [c for c in RANK_COLUMNS if c not in ("n_test", "rank", "rank_lo", "rank_hi", "p_best")]
DECISION_COLUMNS = [
    *KEPT,
    "best",
    "p_vs_best",
    "tied",
    "constraint",
    "cost",
    "cost_noisy",
    "storage_mb",
    "chosen",
    "protocol_flag",
]


def system_costs(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per model × task × init × method at the largest size: the costs a tie can be broken by.

    `latency_b1` and `inference_memory` come from the runtime table (per model: an init does not
    change the architecture); `adapt_s` is the mean fine-tune wall time over seeds
    (`finetune_cost`), plus, for a linear probe, the feature extraction it needs: the measured
    extraction time of the task's rows (`transfer.features_wall_s`) prorated to the training and
    validation examples; `storage_mb` is what one more task adds, in MB (10^6 bytes, as the
    report's other sizes): the bytes the fine-tune stored (`task_bytes`: the whole model for a
    full fine-tune, the adapter for LoRA, the head for a probe), or, where they were not
    recorded (a classical baseline's coefficients), the trainable parameters × 4 bytes."""
    cost = tables.get("finetune_cost", pd.DataFrame())
    if cost.empty:
        return pd.DataFrame()
    keys = ["model", "task", "init", "method"]
    top = cost[cost["n_train"] == cost.groupby(keys)["n_train"].transform("max")]
    agg: dict[str, Any] = {"n_train": ("n_train", "max"), "fit_s": ("wall_s", "mean")}
    if "trainable_params" in top:
        agg["trainable_params"] = ("trainable_params", "max")
    if "task_bytes" in top:
        agg["task_bytes"] = ("task_bytes", "mean")
    out = top.groupby(keys, as_index=False).agg(**agg)
    out["features_s"] = 0.0
    transfer = tables.get("transfer", pd.DataFrame())
    tasks = tables.get("tasks", pd.DataFrame())
    probes = out["method"] == "linear_probe"
    if probes.any():
        rows = tasks.groupby("task")["count"].sum() if len(tasks) else pd.Series(dtype=float)
        val = (
            tasks[tasks["split"] == "validation"].groupby("task")["count"].sum()
            if len(tasks)
            else pd.Series(dtype=float)
        )
        wall = (
            transfer.set_index(["model", "task"])["features_wall_s"]
            if len(transfer) and "features_wall_s" in transfer
            else pd.Series(dtype=float)
        )
        for i in out.index[probes]:
            model, task = out.at[i, "model"], out.at[i, "task"]
            seconds = wall.get((model, task), np.nan)
            share = (out.at[i, "n_train"] + val.get(task, 0)) / rows.get(task, np.nan)
            out.at[i, "features_s"] = float(seconds) * min(float(share), 1.0)
    out["adapt_s"] = out["fit_s"] + out["features_s"]
    params = out["trainable_params"] * 4 if "trainable_params" in out else np.nan
    stored = out["task_bytes"] if "task_bytes" in out else pd.Series(np.nan, index=out.index)
    out["storage_mb"] = stored.fillna(params) / 1e6
    return out


def decisions(
    ranks: pd.DataFrame,
    pairwise: pd.DataFrame,
    costs: pd.DataFrame,
    runtime_costs: pd.DataFrame,
    protocol: pd.DataFrame,
    constraint: str = "latency",
) -> pd.DataFrame:
    """The decision table (see the module docstring). `costs`: `system_costs`; `runtime_costs`:
    per model `latency_b1` and `inference_memory` (the scorecard's raw sub-measures)."""
    if constraint not in CONSTRAINTS:
        raise ValueError(f"unknown constraint {constraint!r}; one of {', '.join(CONSTRAINTS)}")
    if ranks.empty:
        return pd.DataFrame(columns=DECISION_COLUMNS)
    column = CONSTRAINTS[constraint][0]
    flagged = _flagged(protocol)
    frames = []
    for task, group in ranks.groupby("task", sort=True):
        group = group.sort_values(["rank", "system"], kind="stable").reset_index(drop=True)
        best = str(group.at[0, "system"])
        rows = group[KEPT].copy()
        rows["best"] = rows["system"] == best
        p_vs_best, tied = [], []
        for system in rows["system"]:
            if system == best:
                p_vs_best.append(np.nan)
                tied.append(True)
                continue
            pair = paired_test(pairwise, str(task), best, str(system))
            if pair is None:  # no paired test: not separated from the best
                p_vs_best.append(np.nan)
                tied.append(True)
                continue
            p_vs_best.append(float(pair["mcnemar_p_holm"]))
            tied.append(not bool(pair["significant"]))
        rows["p_vs_best"] = p_vs_best
        rows["tied"] = tied
        rows["constraint"] = constraint
        rows["cost"] = [_cost(r, column, costs, runtime_costs) for _, r in rows.iterrows()]
        rows["cost_noisy"] = [_cost_noisy(r, column, runtime_costs) for _, r in rows.iterrows()]
        # equal costs (several methods of one model: one network at inference) are broken by
        # what one more task stores
        rows["storage_mb"] = [
            _cost(r, "storage_mb", costs, runtime_costs) for _, r in rows.iterrows()
        ]
        candidates = rows[rows["tied"] & rows["cost"].notna()]
        pick: str | None = best  # separated from every other system by the tests
        if rows["tied"].sum() > 1:  # a tie: the cheapest measured member, if any
            ordered = candidates.sort_values(
                ["cost", "storage_mb", "accuracy"], ascending=[True, True, False]
            )
            pick = str(ordered["system"].iloc[0]) if len(ordered) else None
        rows["chosen"] = rows["system"] == pick
        rows["protocol_flag"] = [
            (m, str(task), i, meth) in flagged
            for m, i, meth in zip(rows["model"], rows["init"], rows["method"], strict=True)
        ]
        frames.append(rows)
    return pd.concat(frames, ignore_index=True)[DECISION_COLUMNS]


def _flagged(protocol: pd.DataFrame) -> set[tuple[str, str, str, str]]:
    if protocol.empty:
        return set()
    hit = protocol[protocol["below_frozen"].astype(bool) & protocol["largest"].astype(bool)]
    return {
        (str(r["model"]), str(r["task"]), str(r["init"]), str(r["method"]))
        for _, r in hit.iterrows()
    }


def _cost(row: pd.Series, column: str, costs: pd.DataFrame, runtime: pd.DataFrame) -> float:
    if column in ("latency_b1", "inference_memory"):
        if runtime.empty or column not in runtime or row["model"] not in runtime.index:
            return float("nan")
        return float(runtime.at[row["model"], column])
    if costs.empty or column not in costs:
        return float("nan")
    hit = costs[
        (costs["model"] == row["model"])
        & (costs["task"] == row["task"])
        & (costs["init"] == row["init"])
        & (costs["method"] == row["method"])
    ]
    return float(hit[column].iloc[0]) if len(hit) else float("nan")


def _cost_noisy(row: pd.Series, column: str, runtime: pd.DataFrame) -> bool:
    """Whether the runtime measurement the row's cost comes from was marked noisy."""
    flag = f"{column}_noisy"
    if runtime.empty or flag not in runtime or row["model"] not in runtime.index:
        return False
    return bool(runtime.at[row["model"], flag])


def _mb(value: float) -> str:
    return "not measured" if pd.isna(value) else f"{value:.3g} MB"


def _p(value: float) -> str:
    return "no paired test" if pd.isna(value) else f"p = {value:.2g}"


def _cost_text(r: pd.Series, fmt: str) -> str:
    """The row's cost as the constraint reads it in a sentence ('…, a noisy measurement' when
    the runtime stage marked it noisy), or 'not measured'."""
    if pd.isna(r["cost"]):
        return "not measured"
    noisy = bool(r.get("cost_noisy", False)) is True
    return fmt.format(r["cost"]) + (", a noisy measurement" if noisy else "")


def _score_text(r: pd.Series) -> str:
    """The row's accuracy with its interval."""
    return f"{r['accuracy']:.3f} [{r['accuracy_lo']:.3f}, {r['accuracy_hi']:.3f}]"


def _pick_reason(pick: pd.Series, best: pd.Series, what: str, fmt: str) -> str:
    """Why the chosen system is built on, against the most accurate one: it is that one and
    the cheapest, it costs the same and stores less per task, or it is the cheapest."""
    if pick["system"] == best["system"]:
        return (
            f"{pick['system']} is also the cheapest of them by {what} "
            f"({_cost_text(pick, fmt)}): build on {pick['system']}."
        )
    if np.isclose(pick["cost"], best["cost"]):
        return (
            f"By the stated constraint, {what}, {pick['system']} and {best['system']} "
            f"cost the same ({_cost_text(pick, fmt)}); of them {pick['system']} stores the "
            f"least per extra task ({_mb(pick['storage_mb'])} against "
            f"{_mb(best['storage_mb'])}): build on {pick['system']}."
        )
    ratio = best["cost"] / pick["cost"] if pick["cost"] > 0 else np.nan
    times = f"{ratio:.1f}" if ratio < 10 else f"{ratio:,.0f}"
    than = (
        f", {times}× less than {best['system']} ({_cost_text(best, fmt)})"
        if np.isfinite(ratio)
        else f"; {best['system']}: {_cost_text(best, fmt)}"
    )
    return (
        f"By the stated constraint, {what}, {pick['system']} is the cheapest "
        f"({_cost_text(pick, fmt)}{than}): build on {pick['system']}."
    )


def _tied_parts(
    task: Any, best: pd.Series, tied: pd.DataFrame, chosen: pd.DataFrame, what: str, fmt: str
) -> list[str]:
    """The sentences for systems tied on accuracy: which are tied, then the one to build on
    (or why there is none) and the tied systems without a measured cost."""
    others = tied[~tied["best"]]
    listed = ", ".join(
        f"{r['system']} ({r['accuracy']:.3f}, {_p(r['p_vs_best'])})" for _, r in others.iterrows()
    )
    parts = [
        f"On {task}, the paired tests do not separate {best['system']} "
        f"({best['accuracy']:.3f}, the most accurate) from {listed}: they are tied on "
        "accuracy (Holm-adjusted McNemar p against the best)."
    ]
    if chosen.empty:
        parts.append(
            f"No {what} was measured for them, so there is no single pick: compare them "
            "on your own cost."
        )
        return parts
    unmeasured = tied[tied["cost"].isna()]["system"].tolist()
    parts.append(_pick_reason(chosen.iloc[0], best, what, fmt))
    if unmeasured:
        parts.append(f"Not measured, so not picked: {', '.join(unmeasured)}.")
    return parts


def sentence(rows: pd.DataFrame) -> str:
    """The recommendation for one task, from its rows of the decision table."""
    rows = rows.sort_values("accuracy", ascending=False, kind="stable")
    task = rows["task"].iloc[0]
    constraint = str(rows["constraint"].iloc[0])
    _, what, fmt = CONSTRAINTS[constraint]
    best = rows[rows["best"]].iloc[0]
    tied = rows[rows["tied"]]
    chosen = rows[rows["chosen"]]
    parts = []
    if len(rows) == 1:
        parts.append(
            f"On {task}, {best['system']} is the only candidate ({_score_text(best)}); "
            f"its {what}: {_cost_text(best, fmt)}."
        )
    elif len(tied) == 1:
        runner = rows[~rows["best"]].iloc[0]
        parts.append(
            f"On {task}, build on {best['system']}: {_score_text(best)} accuracy, ahead of every "
            f"other candidate by the paired tests (next: {runner['system']} "
            f"{runner['accuracy']:.3f}, Holm-adjusted McNemar {_p(runner['p_vs_best'])}); its "
            f"{what}: {_cost_text(best, fmt)}."
        )
    else:
        parts += _tied_parts(task, best, tied, chosen, what, fmt)
    flagged = rows[rows["protocol_flag"]]
    if len(flagged):
        parts.append(
            "This verdict rests on a result the protocol check flagged: "
            + ", ".join(flagged["system"])
            + " scores below its own frozen features, so its real standing may be higher."
        )
    return " ".join(parts)


def sentences(table: pd.DataFrame) -> list[str]:
    """One recommendation sentence group per task."""
    if table.empty:
        return []
    return [sentence(group) for _, group in table.groupby("task", sort=True)]
