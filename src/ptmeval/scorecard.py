"""The scorecard: one 0–100 score per model and dimension, from the measured tables.

Each dimension is a weighted mean of sub-measures, each scaled to [0, 1]:
- pass/fail checks count 1 or 0;
- a cost (lower is better) counts best / own, so the cheapest model gets 1;
- a benefit (higher is better) counts own / best, so the best model gets 1 (negative → 0).
A sub-measure that does not apply to a model (e.g. ONNX for a scikit-learn baseline) is left out
of that model's mean rather than counted as 0. score = 100 · Σ wᵢ·sᵢ / Σ wᵢ over the sub-measures
present. The overall score is the weighted mean of the five dimension scores. Weights come from
the config (`scorecard`); the page prints the formula, the weights and every sub-measure.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ptmeval._catalog import DIMENSIONS, SUBMEASURES


def default_weights() -> dict[str, float]:
    return {**dict.fromkeys(SUBMEASURES, 1.0), **{f"overall.{d}": 1.0 for d in DIMENSIONS}}


def _best_init_scores(curve: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per model × task × size: the mean score of the model's best initialisation."""
    sub = curve[curve["metric"] == metric]
    return sub.groupby(["model", "task", "n_train"], as_index=False)["mean"].max()


def raw_measures(
    tables: dict[str, pd.DataFrame],
    metric: str = "accuracy",
    modalities: dict[str, str] | None = None,
) -> pd.DataFrame:
    """One row per model with the raw value of every sub-measure (NaN where it does not apply)."""
    curve = tables.get("learning_curve", pd.DataFrame())
    if curve.empty:
        return pd.DataFrame()
    models = sorted(curve["model"].unique())
    raw = pd.DataFrame({"model": models}).set_index("model")
    profile = tables.get("profile", pd.DataFrame())
    export = tables.get("export", pd.DataFrame())
    runtime = tables.get("runtime", pd.DataFrame())
    compat = tables.get("compatibility", pd.DataFrame())
    cost = tables.get("finetune_cost", pd.DataFrame())
    reuse = tables.get("reuse", pd.DataFrame())
    gain = tables.get("transfer_gain", pd.DataFrame())
    if len(export):
        ex = export.drop_duplicates("model").set_index("model")
        raw["standard_api"] = ex["standard_api"].map(
            lambda v: float(str(v).startswith(("transformers", "torchvision")))
        )
        raw["torch_export"] = ex["torch_export"].map(lambda v: float(str(v) == "ok"))
        ok = (ex["onnxruntime"] == "ok") & (ex.get("accuracy_change", np.nan).abs() <= 0.01)
        raw["onnx_parity"] = ok.astype(float)
    if len(profile):
        prof = profile.set_index("model")
        raw["safetensors"] = prof["safetensors"].astype(float)
        raw["flops"] = prof["flops_forward_per_sample"].astype(float)
    if len(cost):
        top = cost[cost["n_train"] == cost.groupby(["model", "task"])["n_train"].transform("max")]
        raw["finetune_time"] = top.groupby("model")["wall_s"].mean()
    if len(runtime):
        ok_rt = runtime[(runtime["status"] == "ok") & (runtime["device_kind"] == "cpu")]
        inf1 = ok_rt[(ok_rt["mode"] == "inference")]
        inf1 = inf1[inf1["batch_size"] == inf1.groupby("model")["batch_size"].transform("min")]
        raw["latency_b1"] = inf1.set_index("model")["latency_p50_ms"]
        raw["inference_memory"] = inf1.set_index("model")["peak_rss_mb"]
    scores = _best_init_scores(curve, metric)
    smallest = scores[
        scores["n_train"] == scores.groupby(["model", "task"])["n_train"].transform("min")
    ]
    largest = scores[
        scores["n_train"] == scores.groupby(["model", "task"])["n_train"].transform("max")
    ]
    raw["data_efficiency"] = smallest.groupby("model")["mean"].mean()
    raw["score_at_largest"] = largest.groupby("model")["mean"].mean()
    slope = largest.merge(smallest, on=["model", "task"], suffixes=("_hi", "_lo"))
    doublings = np.log2(slope["n_train_hi"] / slope["n_train_lo"]).replace(0, np.nan)
    slope["per_doubling"] = (slope["mean_hi"] - slope["mean_lo"]) / doublings
    raw["gain_per_doubling"] = slope.groupby("model")["per_doubling"].mean()
    if len(compat):
        cells = ["eager_pytorch", "torch_export", "onnx_onnxruntime", "deepspeed_finetune"]
        comp = compat.set_index("model")

        def share(row: pd.Series) -> float:
            applicable = [str(row[c]) for c in cells if c in row and not _not_applicable(row[c])]
            return (
                float(np.mean([v.startswith("ok") for v in applicable])) if applicable else np.nan
            )

        raw["compatibility"] = comp.apply(share, axis=1)
    if len(reuse):
        raw["normalised_score"] = reuse.set_index("model")["mean_normalised"]
    if len(gain):
        top_gain = gain[
            gain["n_train"] == gain.groupby(["model", "task"])["n_train"].transform("max")
        ]
        raw["transfer_gain"] = top_gain.groupby("model")["gain"].mean()
    out = raw.reindex(columns=list(SUBMEASURES)).reset_index()
    out.insert(1, "modality", out["model"].map(modalities or {}).fillna("all"))
    return out


def _not_applicable(value: Any) -> bool:
    text = str(value)
    return text.startswith(("not applicable", "not a torch", "not run", "not checked"))


def scale(raw: pd.DataFrame) -> pd.DataFrame:
    """Each sub-measure scaled to [0, 1] among the models of the same modality, which compete
    on the same tasks (see the module docstring)."""
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
                scaled.loc[index, name] = (
                    (col.clip(lower=0) / best) if best and best > 0 else np.nan
                )
    return scaled


def scorecard(
    tables: dict[str, pd.DataFrame],
    weights: dict[str, float] | None = None,
    metric: str = "accuracy",
    modalities: dict[str, str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(scorecard: model × dimension scores, overall, best marks; parts: raw and scaled
    sub-measures in long form)."""
    weights = {**default_weights(), **(weights or {})}
    raw = raw_measures(tables, metric, modalities)
    if raw.empty:
        return pd.DataFrame(), pd.DataFrame()
    scaled = scale(raw)
    card = pd.DataFrame({"model": raw["model"], "modality": raw["modality"]})
    for dim in DIMENSIONS:
        names = [n for n, (d, _, _) in SUBMEASURES.items() if d == dim]
        w = np.array([weights[n] for n in names])
        values = scaled[names].to_numpy(dtype=float)
        present = ~np.isnan(values)
        num = np.nansum(values * w, axis=1)
        den = (present * w).sum(axis=1)
        card[dim] = np.where(den > 0, 100 * num / np.where(den > 0, den, 1), np.nan)
    dims = card[DIMENSIONS].to_numpy(dtype=float)
    wd = np.array([weights[f"overall.{d}"] for d in DIMENSIONS])
    present = ~np.isnan(dims)
    card["overall"] = np.nansum(dims * wd, axis=1) / np.maximum((present * wd).sum(axis=1), 1e-12)
    for col in [*DIMENSIONS, "overall"]:
        best = card.groupby("modality")[col].transform("max")
        card[f"{col}_best"] = card[col] == best
    ids = ["model", "modality"]
    parts = raw.melt(id_vars=ids, var_name="submeasure", value_name="raw").merge(
        scaled.melt(id_vars=ids, var_name="submeasure", value_name="scaled"),
        on=[*ids, "submeasure"],
    )
    parts["dimension"] = parts["submeasure"].map(lambda n: SUBMEASURES[n][0])
    parts["kind"] = parts["submeasure"].map(lambda n: SUBMEASURES[n][1])
    parts["description"] = parts["submeasure"].map(lambda n: SUBMEASURES[n][2])
    parts["weight"] = parts["submeasure"].map(weights)
    return card, parts


def recommendation(card: pd.DataFrame, parts: pd.DataFrame) -> str:
    """A plain-language paragraph generated from the scorecard's numbers, per modality (models
    are only compared with the models that ran on the same tasks)."""
    if card.empty:
        return "No model was evaluated."
    paragraphs = []
    for modality, group in card.groupby("modality"):
        models = set(group["model"])
        sub = parts[parts["model"].isin(models)]
        text = _recommend(group, sub)
        if card["modality"].nunique() > 1:
            text = f"{str(modality).capitalize()} tasks: {text[0].lower()}{text[1:]}"
        paragraphs.append(text)
    return " ".join(paragraphs)


def _recommend(card: pd.DataFrame, parts: pd.DataFrame) -> str:
    raw = parts.pivot(index="model", columns="submeasure", values="raw")
    if len(card) == 1:
        model = card.iloc[0]["model"]
        score = raw.loc[model, "score_at_largest"]
        return f"{model} is the only candidate ({score:.3f} at the largest training size)."
    sentences = []
    best = card.sort_values("overall", ascending=False).iloc[0]
    sentences.append(
        f"overall, {best['model']} scores highest ({best['overall']:.0f}/100 with the stated "
        "weights)."
    )
    if raw["score_at_largest"].notna().any():
        top = raw["score_at_largest"].idxmax()
        sentences.append(
            f"For the best task score, build on {top} "
            f"(mean {raw.loc[top, 'score_at_largest']:.3f} at the largest training size)."
        )
        close = raw.index[raw["score_at_largest"] >= raw["score_at_largest"].max() - 0.02]
        others = [m for m in close if m != top]
        if others:
            sentences.append(
                f"Within 0.02 of it: {', '.join(others)}, so the choice can follow cost."
            )
    if raw["latency_b1"].notna().any():
        fast = raw["latency_b1"].idxmin()
        mem = raw.loc[fast, "inference_memory"]
        sentences.append(
            f"Under a latency or memory constraint, {fast} is the cheapest of the measured neural "
            f"models ({raw.loc[fast, 'latency_b1']:.1f} ms per example at batch 1, "
            f"{mem / 1024:.2f} GB peak)."
        )
    if raw["data_efficiency"].notna().any():
        few = raw["data_efficiency"].idxmax()
        sentences.append(
            f"With very little labelled data, {few} does best "
            f"({raw.loc[few, 'data_efficiency']:.3f} at the smallest size)."
        )
    if raw["transfer_gain"].notna().any():
        gainer = raw["transfer_gain"].idxmax()
        sentences.append(
            f"Pretraining buys the most for {gainer} "
            f"(+{raw.loc[gainer, 'transfer_gain']:.3f} over the same architecture from scratch)."
        )
    text = " ".join(sentences)
    return text[0].upper() + text[1:]
