"""`profile_model`: size and compute of a model, measured (no fine-tuning needed).

FLOPs are counted by `torch.utils.flop_counter.FlopCounterMode`, which counts one multiply-add
as 2 FLOPs, on one full-size example (max_length tokens / image_size² pixels), for a forward
pass and for a training step (forward + backward). Operators it has no formula for
(element-wise ops, softmax, normalisation, pooling) are not counted: they are listed with their
share of the measured CPU time, so a reader knows how far the count is a floor. Each count is
cross-checked against an analytical formula for its family (transformer encoder, decoder, CNN).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from ptmeval.adapters import get_spec
from ptmeval.jobs import ModelJob
from ptmeval.training import load_for_task, set_threads

log = logging.getLogger(__name__)

PROFILE_LABELS = 2  # head size used for profiling; the head is a negligible share of the model
_REGISTERED = False


def register_cpu_attention_flops() -> None:
    """Teach the counter PyTorch's CPU flash-attention kernels (same formula as on GPU)."""
    global _REGISTERED
    if _REGISTERED:
        return
    import torch
    from torch.utils.flop_counter import (
        flop_registry,
        register_flop_formula,
        sdpa_backward_flop_count,
        sdpa_flop_count,
    )

    aten = torch.ops.aten

    @register_flop_formula(aten._scaled_dot_product_flash_attention_for_cpu, get_raw=True)
    def _cpu_sdpa(query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> int:
        return int(sdpa_flop_count(query.shape, key.shape, value.shape))

    @register_flop_formula(aten._scaled_dot_product_flash_attention_for_cpu_backward, get_raw=True)
    def _cpu_sdpa_bw(grad_out: Any, query: Any, key: Any, value: Any, *args: Any, **kw: Any) -> int:
        return int(sdpa_backward_flop_count(grad_out.shape, query.shape, key.shape, value.shape))

    flop_registry[aten.convolution_backward] = _conv_backward_flops
    _REGISTERED = True


def _conv_backward_flops(
    grad_out: Any,
    x: Any,
    weight: Any,
    bias_sizes: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    transposed: bool,
    output_padding: Any,
    groups: int,
    output_mask: Any,
    out_val: Any = None,
) -> int:
    """Backward of a (grouped) convolution: the input and the weight gradients each cost as
    much as the forward convolution. PyTorch's own formula ignores `groups` in the weight
    gradient, which overcounts depthwise convolutions by the channel count."""
    from math import prod

    from torch.utils.flop_counter import conv_backward_flop

    if transposed:  # rare in classifiers: keep PyTorch's formula
        out_shape = [None if t is None else t.shape for t in (out_val or (None, None, None))]
        return int(
            conv_backward_flop(
                grad_out.shape,
                x.shape,
                weight.shape,
                bias_sizes,
                stride,
                padding,
                dilation,
                transposed,
                output_padding,
                groups,
                output_mask,
                out_shape,
            )
        )
    forward = 2 * prod(grad_out.shape) * prod(weight.shape[1:])
    return int(forward * (int(bool(output_mask[0])) + int(bool(output_mask[1]))))


def count_flops(fn: Callable[[], Any]) -> tuple[int, dict[str, int]]:
    """FLOPs of running `fn` once: total and per operator."""
    from torch.utils.flop_counter import FlopCounterMode

    register_cpu_attention_flops()
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    per_op = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return int(counter.get_total_flops()), per_op


def forward_flops(loaded: Any, batch_size: int = 1) -> tuple[int, dict[str, int]]:
    import torch

    batch = loaded.example_batch(batch_size)
    loaded.model.eval()
    with torch.no_grad():
        return count_flops(lambda: loaded.logits(batch))


def train_step_flops(loaded: Any, batch_size: int = 1) -> tuple[int, dict[str, int]]:
    """Forward + backward of the cross-entropy loss (the optimizer update is not counted)."""
    import torch

    batch = loaded.example_batch(batch_size)
    loaded.model.train()
    target = torch.zeros(batch_size, dtype=torch.long)

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(loaded.logits(batch), target)
        loss.backward()

    try:
        return count_flops(step)
    finally:
        loaded.model.zero_grad(set_to_none=True)
        loaded.model.eval()


def uncounted_operators(loaded: Any, batch_size: int = 1) -> tuple[float, str]:
    """Share of forward CPU time spent in operators the counter has no formula for, and the
    largest of them ("aten::gelu 12.3%, ..."). Time inside a counted operator (e.g. the
    mkldnn kernel under aten::convolution) counts as counted."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import flop_registry

    register_cpu_attention_flops()
    counted = {f"aten::{getattr(op, '__name__', str(op)).split('.')[-1]}" for op in flop_registry}
    batch = loaded.example_batch(batch_size)
    loaded.model.eval()
    with torch.no_grad():
        loaded.logits(batch)  # warm-up
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            loaded.logits(batch)
    total = 0.0
    missing: dict[str, float] = {}
    for event in prof.events():
        if not event.name.startswith("aten::") or event.self_cpu_time_total <= 0:
            continue
        total += event.self_cpu_time_total
        node, inside = event, False
        while node is not None:
            if node.name in counted:
                inside = True
                break
            node = node.cpu_parent
        if not inside:
            missing[event.name] = missing.get(event.name, 0.0) + event.self_cpu_time_total
    total = total or 1.0
    top = sorted(missing.items(), key=lambda r: -r[1])[:6]
    share = sum(missing.values()) / total
    return share, ", ".join(f"{k} {100 * t / total:.1f}%" for k, t in top)


def attention_shape(config: Any) -> tuple[int, int, int]:
    """(query heads, key/value heads, head dimension) of a transformer config; key/value heads
    fewer than query heads for grouped-query attention."""
    heads = config.num_attention_heads
    kv = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return heads, kv, head_dim


def analytical_flops(loaded: Any, settings: Any, labels: int = PROFILE_LABELS) -> tuple[int, str]:
    """Forward FLOPs of one example from the architecture's shapes (1 multiply-add = 2 FLOPs)."""
    family = loaded.info.get("family")
    if family in ("encoder", "decoder"):
        cfg = loaded.model.config
        s, h, n_layers = settings.max_length, cfg.hidden_size, cfg.num_hidden_layers
        inter = cfg.intermediate_size
        if family == "encoder":
            per_layer = 2 * s * (4 * h * h + 2 * h * inter) + 2 * 2 * s * s * h
            head = 2 * h * h + 2 * h * labels  # pooler on one token + classifier
            return n_layers * per_layer + head, "transformer encoder: L·[2s(4h²+2h·ffn) + 4s²h]"
        heads, kv, head_dim = attention_shape(cfg)
        attn_proj = 2 * s * h * (heads * head_dim) * 2 + 2 * 2 * s * h * (kv * head_dim)
        per_layer = attn_proj + 3 * 2 * s * h * inter + 2 * 2 * s * s * heads * head_dim
        head = 2 * s * h * labels  # the score head is applied at every position
        return n_layers * per_layer + head, "decoder: L·[q,k,v,o + 3·2sh·ffn + 4s²h]"
    return _cnn_flops(loaded), "CNN: Σ conv 2·(Cin/groups)·k²·Cout·H·W + Σ linear 2·in·out"


def _cnn_flops(loaded: Any) -> int:
    import torch
    from torch import nn

    total = 0
    hooks = []

    def conv_hook(mod: nn.Conv2d, inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        k = mod.kernel_size[0] * mod.kernel_size[1]
        total += (
            2 * (mod.in_channels // mod.groups) * k * out.shape[1] * out.shape[2] * out.shape[3]
        )

    def linear_hook(mod: nn.Linear, inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        total += 2 * mod.in_features * mod.out_features * (out.numel() // out.shape[-1])

    for mod in loaded.model.modules():
        if isinstance(mod, nn.Conv2d):
            hooks.append(mod.register_forward_hook(conv_hook))
        elif isinstance(mod, nn.Linear):
            hooks.append(mod.register_forward_hook(linear_hook))
    loaded.model.eval()
    with torch.no_grad():
        loaded.logits(loaded.example_batch(1))
    for hook in hooks:
        hook.remove()
    return total


def weight_bytes(model: Any) -> dict[str, int | None]:
    """In-memory bytes of the weights in fp32, bf16, and int8 (dynamic quantisation of the
    Linear layers, the rest kept fp32; None when quantisation fails for the model)."""
    import copy

    import torch

    params = list(model.parameters()) + list(model.buffers())
    fp32 = sum(t.numel() * 4 for t in params if t.is_floating_point())
    other = sum(t.numel() * t.element_size() for t in params if not t.is_floating_point())
    bf16 = sum(t.numel() * 2 for t in params if t.is_floating_point()) + other
    int8: int | None
    try:
        quant = torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(model).eval(), {torch.nn.Linear}, dtype=torch.qint8
        )
        buf = io.BytesIO()
        torch.save(quant.state_dict(), buf)
        int8 = buf.tell()
    except Exception as err:  # a finding, not a failure
        log.warning("int8 dynamic quantisation failed: %s", err)
        int8 = None
    return {
        "weights_fp32_bytes": fp32 + other,
        "weights_bf16_bytes": bf16,
        "weights_int8_bytes": int8,
    }


def disk_by_format(manifest: pd.DataFrame) -> str:
    """'safetensors/F32 90.9 MB, json 0.7 MB, ...' from the download manifest."""
    if manifest.empty:
        return ""
    keyed = manifest.assign(
        key=manifest["format"] + manifest["dtypes"].map(lambda d: f"/{d}" if d else "")
    )
    sizes = keyed.groupby("key")["bytes_on_disk"].sum().sort_values(ascending=False)
    return ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in sizes.items())


def parameter_split(loaded: Any) -> dict[str, Any]:
    """Parameters by part: the backbone, the task head (PROFILE_LABELS classes; each more class
    adds `params_task_head_per_class`), and the source head, the pretrained classifier the task
    head replaces (e.g. ImageNet's 1000 classes; an untied LM head). Backbone + source head is
    the count a model card publishes; `params_total` is backbone + task head."""
    total = sum(p.numel() for p in loaded.model.parameters())
    task = sum(p.numel() for p in loaded.head.parameters())
    source = loaded.info.get("params_source_head")
    if source is None:
        parts = loaded.source_head.parameters() if loaded.source_head is not None else ()
        source = sum(p.numel() for p in parts)
    return {
        "params_backbone": total - task,
        "params_task_head": task,
        "params_task_head_per_class": task // PROFILE_LABELS,
        "task_head_classes": PROFILE_LABELS,
        "params_source_head": int(source),
        "source_head": loaded.info.get("source_head", "none"),
        "params_published_total": total - task + int(source),
    }


def profile_model(
    job: ModelJob, snapshot: Path, manifest: pd.DataFrame, threads: int = 1
) -> pd.DataFrame:
    """One row: parameters, bytes on disk and in memory, FLOPs per example (forward and training
    step) with the uncounted operators and an analytical cross-check."""
    set_threads(threads)
    init = "pretrained" if _has_pretrained(snapshot, job) else "scratch"
    loaded = load_for_task(job, snapshot, PROFILE_LABELS, init)
    total = sum(p.numel() for p in loaded.model.parameters())
    head = sum(p.numel() for p in loaded.head.parameters())
    fwd, per_op = forward_flops(loaded)
    # a training step at batch 2 (batch statistics fail on one example), per example
    train = train_step_flops(loaded, batch_size=2)[0] // 2
    analytic, formula = analytical_flops(loaded, job.finetune)
    uncounted_share, uncounted_top = uncounted_operators(loaded)
    is_text = "input_ids" in loaded.example_batch(1)
    settings = job.finetune
    formats = set(manifest["format"]) if len(manifest) else set()
    row: dict[str, Any] = {
        "model": job.model,
        "adapter": job.adapter,
        "method": job.method,
        **{k: v for k, v in loaded.info.items() if v is not None},
        "params_total": total,
        "params_trainable": total if job.method == "full" else head,
        "params_trainable_full": total,
        "params_trainable_linear_probe": head,
        "params_head": head,
        **parameter_split(loaded),
        "bytes_on_disk": int(manifest["bytes_on_disk"].sum()) if len(manifest) else 0,
        "bytes_on_disk_by_format": disk_by_format(manifest),
        "weights_formats": ",".join(sorted(formats)),
        "safetensors": "safetensors" in formats,
        "license": str(manifest["license"].iloc[0]) if len(manifest) else "not stated",
        **weight_bytes(loaded.model),
        "flops_forward_per_sample": fwd,
        "flops_train_step_per_sample": train,
        "flops_analytical_forward": analytic,
        "flops_analytical_formula": formula,
        "flops_vs_analytical_pct": 100.0 * (fwd - analytic) / analytic if analytic else None,
        "flops_input": f"{settings.max_length} tokens"
        if is_text
        else f"3×{settings.image_size}² px",
        "flops_convention": "1 multiply-add = 2 FLOPs",
        "flops_by_operator": ", ".join(f"{k}={v:.3g}" for k, v in sorted(per_op.items())),
        "uncounted_time_share": uncounted_share,
        "uncounted_operators": uncounted_top,
        "threads": threads,
    }
    for key in ("layers", "hidden_size", "vocab_size", "source_classes"):
        if key in row:
            row[key] = int(row[key])
    if job.method == "lora":  # last: the adapters are added to the loaded model in place
        from ptmeval.training.lora import trainable_parameters

        row["params_trainable"] = row["params_trainable_lora"] = trainable_parameters(loaded, job)
    log.info("profile %s: %s", job.model, row)
    return pd.DataFrame([row])


def _has_pretrained(snapshot: Path, job: ModelJob) -> bool:
    import json

    if not get_spec(job.adapter).neural:
        return False
    arch = snapshot / "architecture.json"
    if arch.exists():
        return bool(json.loads(arch.read_text()).get("pretrained", True))
    return (snapshot / "config.json").exists()
