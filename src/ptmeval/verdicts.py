"""Plain-language findings derived from measured tables: the smallest hardware that fits, the
compatibility matrix, the structural table and the runs that learnt nothing."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from ptmeval import deployment as deploy
from ptmeval.scaling import COLLAPSE_SHARE

# Beside a full fine-tune's score that is below its own frozen features (see protocol_check).
PROTOCOL_MARK = "below its own frozen features: the protocol limits this score"

STRUCTURE_COLUMNS = [
    "model",
    "adapter",
    "family",
    "architecture",
    "layers",
    "hidden_size",
    "heads",
    "intermediate_size",
    "vocab_size",
    "tokenizer",
    "max_input_length",
    "sequence_length",
    "input_resolution",
    "channels",
    "params_total",
    "pretraining_objective",
]


def _smallest(peak_mb: float, hardware: list[dict[str, Any]], device: str) -> str | None:
    fits = sorted(
        (h for h in hardware if h["device"] == device and h["memory_gb"] * 1024 >= peak_mb),
        key=lambda h: h["memory_gb"],
    )
    return fits[0]["name"] if fits else None


def accessibility(
    runtime: pd.DataFrame,
    hardware: list[dict[str, Any]],
    deployment: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per model: the smallest listed hardware that fits inference (batch 1 and the largest
    measured batch) and a training step (largest measured batch), from measured peak memory;
    and, where a deployment variant passes the accuracy gate and needs less memory than fp32,
    the hardware its CPU inference fits (`ptmeval.deployment`; labelled with the variant)."""
    if runtime.empty:
        return pd.DataFrame()
    leanest = {p["model"]: p for p in deploy.best_variants(deployment, "memory")}
    gated = set() if deployment is None or deployment.empty else set(deployment["model"])
    rows = []
    for model, group in runtime.groupby("model"):
        ok = group[group["status"] == "ok"]
        row: dict[str, Any] = {"model": model}
        parts = []
        for kind in ("cpu", "cuda"):
            device = "cpu" if kind == "cpu" else "gpu"
            on = ok[ok["device_kind"] == kind]
            if on.empty:
                continue
            memory = "peak_rss_mb" if kind == "cpu" else "gpu_peak_mb"
            where = "CPU" if kind == "cpu" else "GPU"
            for mode, verb in (("inference", "infers"), ("train_step", "fine-tunes")):
                sub = on[on["mode"] == mode].sort_values("batch_size")
                if sub.empty:
                    continue
                pick = sub.iloc[0] if mode == "inference" else sub.iloc[-1]
                peak = float(pick[memory])
                name = _smallest(peak, hardware, device)
                prefix = f"{kind}_{mode}"
                row[f"{prefix}_batch"] = int(pick["batch_size"])
                row[f"{prefix}_peak_gb"] = peak / 1024
                row[f"{prefix}_hardware"] = name or "none listed"
                fits = f"within '{name}'" if name else "on none of the listed hardware"
                parts.append(
                    f"{verb} on {where} at batch {int(pick['batch_size'])} {fits} "
                    f"(peak {peak / 1024:.2f} GB)"
                )
            inf = on[on["mode"] == "inference"]
            if not inf.empty:
                row[f"{kind}_latency_b1_ms"] = float(inf.iloc[0]["latency_p50_ms"])
                noisy = inf[inf["noisy"].fillna(False).astype(bool)] if "noisy" in inf else inf[:0]
                if len(noisy):
                    sizes = ", ".join(str(int(b)) for b in sorted(noisy["batch_size"]))
                    parts.append(
                        f"latency on {where} at batch {sizes} noisy (CV above the limit after "
                        "re-measuring; the machine was busy?): treat it as uncertain"
                    )
                row[f"{kind}_max_throughput_per_s"] = float(inf["throughput_per_s"].max())
        failed = group[group["status"] != "ok"]
        for _, f in failed.iterrows():
            parts.append(f"{f['mode']} at batch {int(f['batch_size'])} failed: {f['reason']}")
        if "cpu_inference_peak_gb" in row and model in leanest:
            parts.append(_deployed_fit(leanest[model], row, hardware))
        elif model in gated:
            parts.append("no deployment variant passes the accuracy gate with less memory")
        row["verdict"] = "; ".join(parts) if parts else "no successful measurement"
        rows.append(row)
    return pd.DataFrame(rows)


def _deployed_fit(pick: dict[str, Any], row: dict[str, Any], hardware: list[dict[str, Any]]) -> str:
    """The hardware a passing deployment variant's CPU inference fits: fp32's measured peak plus
    the variant's difference from fp32 measured side by side (at least its own peak)."""
    peak = max(row["cpu_inference_peak_gb"] * 1024 + pick["memory_diff_mb"], pick["peak_rss_mb"])
    name = _smallest(peak, hardware, "cpu")
    row.update(deploy_variant=pick["variant"], deploy_peak_gb=peak / 1024, deploy_hardware=name)
    fits = f"within '{name}'" if name else "on none of the listed hardware"
    return (
        f"deployed as {pick['variant']} (passes the {pick['gate']:.0%} gate on {pick['task']}: "
        f"{pick['metric']} {pick['score']:.3f} vs fp32 {pick['reference_score']:.3f}) it infers on "
        f"CPU {fits} (peak ≈ {peak / 1024:.2f} GB: fp32's plus the difference measured side by "
        "side)"
    )


def compatibility(
    models: dict[str, str],
    results: pd.DataFrame,
    export: pd.DataFrame,
    deepspeed: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Per model: eager PyTorch, torch.export, ONNX + onnxruntime, DeepSpeed fine-tune; a cell
    that is not 'ok' says why."""
    rows = []
    for model, adapter in models.items():
        evaluated = not results.empty and (results["model"] == model).any()
        row = {"model": model, "adapter": adapter}
        if adapter == "tfidf-logreg":
            row.update(
                eager_pytorch="not a torch model (scikit-learn)",
                torch_export="not applicable",
                onnx_onnxruntime="not applicable",
            )
        else:
            row["eager_pytorch"] = "ok" if evaluated else "not run"
            ex = export[export["model"] == model] if not export.empty else export
            if ex.empty:
                row.update(torch_export="not checked", onnx_onnxruntime="not checked")
            else:
                e = ex.iloc[0]
                row["torch_export"] = str(e.get("torch_export", "not checked"))
                onnx = str(e.get("onnx_export", "not checked"))
                ort = str(e.get("onnxruntime", "not run"))
                if onnx.startswith("ok") and ort == "ok":
                    row["onnx_onnxruntime"] = (
                        f"ok (max |Δlogit| {float(e['max_abs_diff']):.1e}, "
                        f"Δaccuracy {float(e['accuracy_change']):+.3f})"
                    )
                elif onnx.startswith("ok"):
                    row["onnx_onnxruntime"] = f"exported; onnxruntime {ort}"
                else:
                    row["onnx_onnxruntime"] = onnx
        row["deepspeed_finetune"] = (deepspeed or {}).get(
            model, "not run (finetune engine: plain PyTorch)"
        )
        rows.append(row)
    return pd.DataFrame(rows)


def structure(profile: pd.DataFrame) -> pd.DataFrame:
    """The structural table: one row per model, the columns the profile knows."""
    if profile.empty:
        return profile
    cols = [c for c in STRUCTURE_COLUMNS if c in profile.columns]
    return profile[cols].copy()


def failed_runs(difficulty: pd.DataFrame) -> list[str]:
    """One sentence per model x task x init x method of the training-difficulty table with runs
    whose predictions collapsed to one class or whose test score is at or below chance (the
    best score of a constant predictor; see `ptmeval.scaling.chance_scores`)."""
    if difficulty.empty or "n_collapsed" not in difficulty.columns:
        return []
    sentences = []
    for _, row in difficulty.iterrows():
        collapsed, at_chance = int(row["n_collapsed"]), int(row["n_at_chance"])
        if not collapsed and not at_chance:
            continue
        jobs = int(row["n_jobs"])
        parts = []
        if collapsed:
            parts.append(
                f"{collapsed} of {jobs} runs collapsed (one class predicted for at least "
                f"{COLLAPSE_SHARE:.0%} of the test examples)"
            )
        if at_chance:
            parts.append(f"{at_chance} of {jobs} runs scored at or below chance")
        chance = "unknown" if pd.isna(row["chance"]) else f"{float(row['chance']):.3f}"
        score = "–" if pd.isna(row["test_score_mean"]) else f"{float(row['test_score_mean']):.3f}"
        sentences.append(
            f"{row['model']} ({row['init']}, {row['method']}) on {row['task']}: "
            f"{' and '.join(parts)}; mean test score {score}, chance {chance}."
        )
    return sentences


def undertrained_runs(difficulty: pd.DataFrame) -> list[str]:
    """One sentence per model x task x init x method of the training-difficulty table with runs
    that ran out of their step budget while the validation score was still rising (see
    ``still_improving`` of `ptmeval.scaling.finetune_process`): their scores likely understate the model."""
    if difficulty.empty or "n_still_improving" not in difficulty.columns:
        return []
    sentences = []
    for _, row in difficulty.iterrows():
        improving = 0 if pd.isna(row["n_still_improving"]) else int(row["n_still_improving"])
        if not improving:
            continue
        sentences.append(
            f"{row['model']} ({row['init']}, {row['method']}) on {row['task']}: {improving} of "
            f"{int(row['n_jobs'])} runs used their whole step budget and were still improving at "
            "its end (their best validation point was the last); their scores likely understate "
            "the model (a larger min_steps would probably raise them)."
        )
    return sentences


def _fine_tune_kind(method: object) -> str:
    """How the sentences name a fine-tune of ``method`` ('full fine-tune', 'LoRA fine-tune')."""
    if isinstance(method, str) and method and method != "full":
        return f"{'LoRA' if method == 'lora' else method} fine-tune"
    return "full fine-tune"


def protocol_caveat(check: pd.DataFrame, models: Iterable[str] | None = None) -> str:
    """The sentence the recommendation opens with when a ranked score is not the model's own:
    every fine-tune (full or LoRA) whose score at its largest training size is below its own frozen
    features (``below_frozen`` in the `ptmeval.aggregate.protocol_check` table), among
    ``models`` (all when None). Empty when none is flagged."""
    if check.empty:
        return ""
    flagged = check[check["below_frozen"].astype(bool) & check["largest"].astype(bool)]
    if models is not None:
        flagged = flagged[flagged["model"].isin(list(models))]
    if flagged.empty:
        return ""
    cases = [
        f"{r['model']}'s {_fine_tune_kind(r.get('method'))} on {r['task']} scores {r['score']:.3f} {r['metric']} "
        f"at the largest size (interval up to {r['score_hi']:.3f}), below its own frozen "
        f"features ({r['frozen_score']:.3f} with a linear probe)"
        for _, r in flagged.sort_values(["model", "task"]).iterrows()
    ]
    return (
        "The ranking below is uncertain: "
        + "; ".join(cases)
        + ". There the protocol, not the model, limits the score, so the ranking does not "
        "reflect the model."
    )
