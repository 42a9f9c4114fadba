"""`profile_model`: size and compute of a model, measured (no fine-tuning needed).

FLOPs are counted by `torch.utils.flop_counter.FlopCounterMode`, which counts one
multiply-add as 2 FLOPs, on one full-size example (max_length tokens / image_size² pixels).
Operators it has no formula for (element-wise ops, softmax, normalisation) are not counted,
so the number is a floor dominated by the matrix multiplications and convolutions.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from ptmeval.jobs import ModelJob
from ptmeval.training import load_for_task, set_threads

log = logging.getLogger(__name__)

PROFILE_LABELS = 2  # head size used for profiling; the head is a negligible share of the model


def flops_per_sample(loaded: object) -> tuple[int, dict[str, int]]:
    """Forward FLOPs for one example, total and per operator."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    batch = loaded.example_batch(1)  # type: ignore[attr-defined]
    loaded.model.eval()  # type: ignore[attr-defined]
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        loaded.logits(batch)  # type: ignore[attr-defined]
    per_op = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return int(counter.get_total_flops()), per_op


def profile_model(
    job: ModelJob, snapshot: Path, manifest: pd.DataFrame, threads: int = 1
) -> pd.DataFrame:
    """One row: parameters, bytes on disk, forward FLOPs per sample at the configured input size."""
    set_threads(threads)
    init = (
        "pretrained" if (snapshot / "config.json").exists() or _has_weights(snapshot) else "scratch"
    )
    loaded = load_for_task(job, snapshot, PROFILE_LABELS, init)
    total = sum(p.numel() for p in loaded.model.parameters())
    head = sum(p.numel() for p in loaded.head.parameters())
    trainable = total if job.method == "full" else head
    flops, per_op = flops_per_sample(loaded)
    text = "text" if "input_ids" in loaded.example_batch(1) else "image"
    input_desc = (
        f"{job.finetune.max_length} tokens"
        if text == "text"
        else f"3×{job.finetune.image_size}² px"
    )
    row = {
        "model": job.model,
        "adapter": job.adapter,
        "method": job.method,
        **{k: v for k, v in loaded.info.items() if v is not None},
        "params_total": total,
        "params_trainable": trainable,
        "params_head": head,
        "bytes_on_disk": int(manifest["bytes_on_disk"].sum()),
        "weights_formats": ",".join(sorted(manifest["format"].unique())),
        "license": str(manifest["license"].iloc[0]) if len(manifest) else "not stated",
        "flops_forward_per_sample": flops,
        "flops_input": input_desc,
        "flops_convention": "1 multiply-add = 2 FLOPs",
        "flops_by_operator": ", ".join(f"{k}={v:.3g}" for k, v in sorted(per_op.items())),
    }
    for key in ("layers", "hidden_size", "vocab_size", "source_classes"):
        if key in row:
            row[key] = int(row[key])
    log.info("profile %s: %s", job.model, row)
    return pd.DataFrame([row])


def _has_weights(snapshot: Path) -> bool:
    import json

    arch = snapshot / "architecture.json"
    if not arch.exists():
        return False
    return bool(json.loads(arch.read_text()).get("pretrained", True))
