"""The scorecard: one 0–100 score per model and dimension, from the measured tables.

Each dimension is a weighted mean of sub-measures, each scaled to [0, 1]:
- pass/fail checks count 1 or 0;
- a cost (lower is better) counts best / own, so the cheapest model gets 1;
- a benefit (higher is better) counts own / best, so the best model gets 1 (negative → 0).
Every model × sub-measure has a status: "measured"; "not applicable" by the written rule
(`ptmeval._catalog.APPLIES_ONLY_TO`: e.g. weight storage for a model without pretrained
weights, transfer gain without pretraining), left out of the mean and said; or "not measured"
(it applies but no table holds it), which leaves the dimension **incomplete**: its score is
computed from the measured sub-measures only and the page says "k of n measured". Nothing
missing counts as 1 and nothing is dropped silently.
score = 100 · Σ wᵢ·sᵢ / Σ wᵢ over the measured sub-measures. The overall score is the weighted
mean of the dimensions that have a score (incomplete when one of them is, or has none). Weights
come from the config (`scorecard`); the page prints the formula, the weights and every
sub-measure with its raw value, status and source table.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ptmeval import decision
from ptmeval import deployment as deploy
from ptmeval._catalog import APPLIES_ONLY_TO, DIMENSIONS, SUBMEASURE_SOURCES, SUBMEASURES

MEASURED = "measured"


def default_weights() -> dict[str, float]:
    return {**dict.fromkeys(SUBMEASURES, 1.0), **{f"overall.{d}": 1.0 for d in DIMENSIONS}}


def _best_init_scores(curve: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per model × task × size: the mean score of the model's best initialisation."""
    sub = curve[curve["metric"] == metric]
    return sub.groupby(["model", "task", "n_train"], as_index=False)["mean"].max()


def model_facts(
    results: pd.DataFrame, models: dict[str, dict[str, Any]] | None = None
) -> pd.DataFrame:
    """Per model: modality, `neural` (a torch model) and `pretrained` (evaluated from pretrained
    weights), the facts `APPLIES_ONLY_TO` is decided on. `models`: slug -> known facts (from the
    config); `pretrained` defaults to "has results with init pretrained"."""
    names = sorted(set(results["model"])) if len(results) else []
    names = sorted(set(names) | set(models or {}))
    rows = []
    for name in names:
        known = (models or {}).get(name, {})
        inits = set(results.loc[results["model"] == name, "init"]) if len(results) else set()
        neural = bool(known.get("neural", True))
        rows.append(
            {
                "model": name,
                "modality": known.get("modality", "all"),
                "neural": neural,
                "pretrained": bool(known.get("pretrained", neural and "pretrained" in inits)),
            }
        )
    return pd.DataFrame(rows, columns=["model", "modality", "neural", "pretrained"])


def raw_measures(
    tables: dict[str, pd.DataFrame],
    metric: str = "accuracy",
    models: dict[str, dict[str, Any]] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(raw: one row per model with the raw value of every sub-measure; status: the same shape,
    "measured", "not applicable: <why>" or "not measured: <why>")."""
    curve = tables.get("learning_curve", pd.DataFrame())
    if curve.empty:
        return pd.DataFrame(), pd.DataFrame()
    facts = model_facts(tables.get("results", curve), models)
    facts = facts[facts["model"].isin(set(curve["model"]))].set_index("model")
    measures = _artefact_measures(
        tables.get("export", pd.DataFrame()), tables.get("profile", pd.DataFrame())
    )
    measures |= _finetune_time(tables, facts)
    runtime, noisy = _runtime_measures(tables.get("runtime", pd.DataFrame()))
    measures |= runtime
    curves, why = _curve_measures(curve, tables.get("results", pd.DataFrame()), metric)
    measures |= curves
    compat, no_cell = _compatibility_measures(tables.get("compatibility", pd.DataFrame()))
    measures |= compat
    measures |= _deploy_and_reuse_measures(tables)
    raw = pd.DataFrame(index=facts.index)
    for name, values in measures.items():
        raw[name] = values
    raw = raw.reindex(columns=list(SUBMEASURES)).astype(float)
    status = _statuses(raw, facts, why, no_cell, noisy)
    raw.insert(0, "modality", facts["modality"])
    status.insert(0, "modality", facts["modality"])
    return raw.reset_index(), status.reset_index()


def _artefact_measures(export: pd.DataFrame, profile: pd.DataFrame) -> dict[str, pd.Series]:
    """Per model: the export checks (standard API, torch.export, ONNX parity) and the profile's
    safetensors check and forward FLOPs, for the tables that have rows."""
    measures: dict[str, pd.Series] = {}
    if len(export):
        ex = export.drop_duplicates("model").set_index("model")
        api = ex["standard_api"].map(str)
        measures["standard_api"] = api.map(
            lambda v: float(v.startswith(("transformers", "torchvision")))
        ).where(api != "unknown")
        measures["torch_export"] = ex["torch_export"].map(lambda v: float(str(v) == "ok"))
        ok = (ex["onnxruntime"] == "ok") & (ex.get("accuracy_change", np.nan).abs() <= 0.01)
        measures["onnx_parity"] = ok.astype(float)
    if len(profile):
        prof = profile.set_index("model")
        measures["safetensors"] = prof["safetensors"].astype(float)
        measures["flops"] = prof["flops_forward_per_sample"].astype(float)
    return measures


def _finetune_time(tables: dict[str, pd.DataFrame], facts: pd.DataFrame) -> dict[str, pd.Series]:
    """Per model: the mean adaptation time of its own init (pretrained when it has weights)."""
    costs = decision.system_costs(tables)
    if not len(costs):
        return {}
    own = costs[
        costs["init"]
        == costs["model"].map(facts["pretrained"]).map({True: "pretrained", False: "scratch"})
    ]
    return {"finetune_time": own.groupby("model")["adapt_s"].mean()}


def _runtime_measures(runtime: pd.DataFrame) -> tuple[dict[str, pd.Series], dict[str, str]]:
    """Per model: latency and memory of CPU inference at batch 1, and the noise note of each
    model whose latency was noisy."""
    measures: dict[str, pd.Series] = {}
    noisy: dict[str, str] = {}
    if len(runtime):
        inf1 = _batch_one(runtime)
        measures["latency_b1"] = inf1["latency_p50_ms"]
        measures["inference_memory"] = inf1["peak_rss_mb"]
        for model, row in inf1.iterrows():
            if bool(row.get("noisy", False)) is True:
                noisy[str(model)] = noise_note(row)
    return measures, noisy


def _curve_measures(
    curve: pd.DataFrame, results: pd.DataFrame, metric: str
) -> tuple[dict[str, pd.Series], dict[str, str]]:
    """Per model: the learning-curve measures (score at the smallest and the largest size, gain
    per doubling of the data), and why a curve-based measure cannot be measured."""
    why: dict[str, str] = {}
    scores = _best_init_scores(curve, metric)
    sizes = scores.groupby(["model", "task"])["n_train"]
    smallest = scores[scores["n_train"] == sizes.transform("min")]
    largest = scores[scores["n_train"] == sizes.transform("max")]
    measures = {
        "data_efficiency": smallest.groupby("model")["mean"].mean(),
        "score_at_largest": largest.groupby("model")["mean"].mean(),
    }
    slope = largest.merge(smallest, on=["model", "task"], suffixes=("_hi", "_lo"))
    doublings = np.log2(slope["n_train_hi"] / slope["n_train_lo"]).replace(0, np.nan)
    slope["per_doubling"] = (slope["mean_hi"] - slope["mean_lo"]) / doublings
    measures["gain_per_doubling"] = slope.groupby("model")["per_doubling"].mean()
    if scores.groupby("model")["n_train"].nunique().max() < 2:
        why["gain_per_doubling"] = "one training size: no slope"
    if len(results) and not (results["init"] == "scratch").any():
        why["transfer_gain"] = "no from-scratch run to compare with (inits)"
    return measures, why


def _compatibility_measures(compat: pd.DataFrame) -> tuple[dict[str, pd.Series], pd.Series]:
    """Per model: the share of the applicable compatibility-matrix cells that work, and whether
    no cell of the matrix applies to it."""
    if not len(compat):
        return {}, pd.Series(dtype=bool)
    cells = ["eager_pytorch", "torch_export", "onnx_onnxruntime", "deepspeed_finetune"]
    comp = compat.set_index("model")

    def share(row: pd.Series) -> float:
        applicable = [str(row[c]) for c in cells if c in row and not _not_applicable(row[c])]
        return float(np.mean([v.startswith("ok") for v in applicable])) if applicable else np.nan

    measures = {"compatibility": comp.apply(share, axis=1)}
    no_cell = comp.apply(
        lambda row: all(_not_applicable(row[c]) for c in cells if c in row), axis=1
    )
    return measures, no_cell


def _deploy_and_reuse_measures(tables: dict[str, pd.DataFrame]) -> dict[str, pd.Series]:
    """Per model: the leanest passing deployment's memory, the normalised score over tasks and
    the transfer gain at the largest size, for the tables that have rows."""
    measures: dict[str, pd.Series] = {}
    passing = deploy.passing_variants(tables.get("deployment", pd.DataFrame()))
    if passing is not None and len(passing):
        leanest = passing.groupby(["model", "task"])["peak_rss_mb"].min()
        measures["deploy_memory"] = leanest.groupby("model").mean()
    reuse = tables.get("reuse", pd.DataFrame())
    if len(reuse):
        measures["normalised_score"] = reuse.set_index("model")["mean_normalised"]
    gain = tables.get("transfer_gain", pd.DataFrame())
    if len(gain):
        sizes = gain.groupby(["model", "task"])["n_train"].transform("max")
        measures["transfer_gain"] = gain[gain["n_train"] == sizes].groupby("model")["gain"].mean()
    return measures


def _statuses(
    raw: pd.DataFrame,
    facts: pd.DataFrame,
    why: dict[str, str],
    no_cell: pd.Series,
    noisy: dict[str, str],
) -> pd.DataFrame:
    """The status of every model × sub-measure of `raw` (whose not-applicable values it blanks)."""
    status = pd.DataFrame(MEASURED, index=raw.index, columns=raw.columns)
    for name in SUBMEASURES:
        for model in raw.index:
            rule = APPLIES_ONLY_TO.get(name)
            if rule and not bool(facts.at[model, rule[0]]):
                status.at[model, name] = f"not applicable: {rule[1]}"
                raw.at[model, name] = np.nan
            elif name == "compatibility" and bool(no_cell.get(model, False)):
                status.at[model, name] = "not applicable: no cell of the matrix applies"
            elif pd.isna(raw.at[model, name]):
                reason = why.get(name, f"no value in the {SUBMEASURE_SOURCES[name]} table")
                status.at[model, name] = f"not measured: {reason}"
            elif name in ("latency_b1", "inference_memory") and model in noisy:
                status.at[model, name] = f"{MEASURED}; {noisy[model]}"
    return status


# How far the runtime stage's latency at batch 1 may lie from the export check's eager fp32
# latency of the same model before the runtime row is marked noisy (the two differ in inputs:
# synthetic max-length ones against the task's test examples, hence the wide band).
LATENCY_AGREEMENT = 3.0


def noise_note(row: pd.Series) -> str:
    """'noisy: CV 0.52 after 3 attempts, machine load 1.9 on 2 CPUs' for a runtime row."""
    load = row.get("load_1min")
    cpus = row.get("cpu_count")
    where = (
        f", machine load {float(load):.1f} on {int(cpus)} CPUs"
        if load is not None and cpus is not None and not pd.isna(load) and not pd.isna(cpus)
        else ""
    )
    note = f"noisy: CV {float(row['latency_cv']):.2f} after {int(row.get('attempts', 1))} attempts{where}"
    export = row.get("export_b1_ms")
    if export is not None and not pd.isna(export) and float(export) > 0:
        ratio = float(row["latency_p50_ms"]) / float(export)
        if not 1 / LATENCY_AGREEMENT <= ratio <= LATENCY_AGREEMENT:
            note += f"; {ratio:.1f}x the export check's fp32 latency ({float(export):.3g} ms)"
    return note


def _batch_one(runtime: pd.DataFrame) -> pd.DataFrame:
    """Per model: its successful CPU inference row at the smallest measured batch size."""
    ok = runtime[
        (runtime["status"] == "ok")
        & (runtime["device_kind"] == "cpu")
        & (runtime["mode"] == "inference")
    ]
    ok = ok[ok["batch_size"] == ok.groupby("model")["batch_size"].transform("min")]
    return ok.drop_duplicates("model").set_index("model")


def _not_applicable(value: Any) -> bool:
    text = str(value)
    return text.startswith(("not applicable", "not a torch", "not run", "not checked"))


def scale(raw: pd.DataFrame) -> pd.DataFrame:
    """Each sub-measure scaled to [0, 1] among the models of the same modality, which compete
    on the same tasks (see the module docstring); unmeasured values stay NaN."""
    groups = raw["modality"] if "modality" in raw else pd.Series("all", index=raw.index)
    scaled = raw.copy()
    for _, index in raw.groupby(groups).groups.items():
        for name, (_, kind, _) in SUBMEASURES.items():
            col = raw.loc[index, name].astype(float)
            if kind == "check":
                scaled.loc[index, name] = col
            elif kind == "cost":
                best = col[col > 0].min()
                scaled.loc[index, name] = best / col.where(col > 0)
            else:
                best = col.max()
                if best > 0:
                    scaled.loc[index, name] = col.clip(lower=0) / best
                else:  # nobody gains: the best of them counts 1, the others 0
                    scaled.loc[index, name] = (col >= best).astype(float).where(col.notna())
    return scaled


def scorecard(
    tables: dict[str, pd.DataFrame],
    weights: dict[str, float] | None = None,
    metric: str = "accuracy",
    models: dict[str, dict[str, Any]] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(scorecard: model × dimension scores with their measured / applicable counts, overall,
    completeness and best marks; parts: raw and scaled sub-measures, status and source, in
    long form)."""
    weights = {**default_weights(), **(weights or {})}
    raw, status = raw_measures(tables, metric, models)
    if raw.empty:
        return pd.DataFrame(), pd.DataFrame()
    scaled = scale(raw)
    card = pd.DataFrame({"model": raw["model"], "modality": raw["modality"]})
    for dim in DIMENSIONS:
        names = [n for n, (d, _, _) in SUBMEASURES.items() if d == dim]
        w = np.array([weights[n] for n in names])
        values = scaled[names].to_numpy(dtype=float)
        present = ~np.isnan(values)
        applicable = ~status[names].apply(lambda c: c.str.startswith("not applicable")).to_numpy()
        num = np.nansum(values * w, axis=1)
        den = (present * w).sum(axis=1)
        card[dim] = np.where(den > 0, 100 * num / np.where(den > 0, den, 1), np.nan)
        card[f"{dim}_measured"] = present.sum(axis=1)
        card[f"{dim}_applicable"] = applicable.sum(axis=1)
    dims = card[DIMENSIONS].to_numpy(dtype=float)
    wd = np.array([weights[f"overall.{d}"] for d in DIMENSIONS])
    present = ~np.isnan(dims)
    card["overall"] = np.where(
        present.any(axis=1),
        np.nansum(dims * wd, axis=1) / np.maximum((present * wd).sum(axis=1), 1e-12),
        np.nan,
    )
    card["complete"] = np.all(
        [card[f"{d}_measured"] == card[f"{d}_applicable"] for d in DIMENSIONS], axis=0
    )
    for col in [*DIMENSIONS, "overall"]:
        best = card.groupby("modality")[col].transform("max")
        card[f"{col}_best"] = card[col] == best
    ids = ["model", "modality"]
    parts = (
        raw.melt(id_vars=ids, var_name="submeasure", value_name="raw")
        .merge(
            scaled.melt(id_vars=ids, var_name="submeasure", value_name="scaled"),
            on=[*ids, "submeasure"],
        )
        .merge(
            status.melt(id_vars=ids, var_name="submeasure", value_name="status"),
            on=[*ids, "submeasure"],
        )
    )
    parts["dimension"] = parts["submeasure"].map(lambda n: SUBMEASURES[n][0])
    parts["kind"] = parts["submeasure"].map(lambda n: SUBMEASURES[n][1])
    parts["description"] = parts["submeasure"].map(lambda n: SUBMEASURES[n][2])
    parts["source"] = parts["submeasure"].map(SUBMEASURE_SOURCES)
    parts["weight"] = parts["submeasure"].map(weights)
    return card, parts


def score_cell(row: pd.Series, dim: str) -> str:
    """How a dimension's score reads on the page: the score, with "k of n measured" when it is
    incomplete; "n/a" when nothing applies; "not measured" when nothing that applies was."""
    if dim == "overall":
        value = row["overall"]
        if pd.isna(value):
            return "not measured"
        return f"{value:.0f}" + ("" if bool(row.get("complete", True)) else " (incomplete)")
    applicable = int(row.get(f"{dim}_applicable", 1))
    measured = int(row.get(f"{dim}_measured", applicable))
    if applicable == 0:
        return "n/a"
    if measured == 0 or pd.isna(row[dim]):
        return "not measured"
    suffix = "" if measured >= applicable else f" ({measured} of {applicable} measured)"
    return f"{row[dim]:.0f}{suffix}"


def recommendation(card: pd.DataFrame, parts: pd.DataFrame, table: pd.DataFrame) -> str:
    """The recommendation paragraph: per task the decision rule's verdict (`ptmeval.decision`:
    a single winner only when the paired tests separate it, else the tied set and the cost that
    breaks the tie), then the scorecard's overall order, marked incomplete where it is."""
    if card.empty:
        return "No model was evaluated."
    texts = decision.sentences(table)
    for modality, group in card.groupby("modality"):
        ordered = group.sort_values("overall", ascending=False)
        if len(ordered) < 2 or ordered["overall"].isna().all():
            continue
        top = ordered.iloc[0]
        note = (
            ""
            if bool(top.get("complete", True))
            else " — not every sub-measure that applies to it was measured"
        )
        prefix = (
            f"{str(modality).capitalize()} models: on" if card["modality"].nunique() > 1 else "On"
        )
        texts.append(
            f"{prefix} the scorecard's weighted dimensions, {top['model']} scores highest "
            f"({top['overall']:.0f}/100{note}); the scorecard weighs costs and checks as well as "
            "accuracy, so where it differs from the per-task verdict, the verdict is the one the "
            "paired tests support."
        )
    return " ".join(texts) or "No paired comparison was possible."
