"""Deployment variants of a fine-tuned model, each behind an accuracy gate.

For the model the export check examines (`ptmeval.export`: the largest size, the first seed, the
pretrained initialisation; for a linear probe, the backbone with its probe folded into a linear
layer), each variant is built with a real toolkit and run on the task's whole test split:

- `fp32`: eager PyTorch, the reference;
- `bf16`: the weights cast to bfloat16 (`module.to(torch.bfloat16)`; float inputs cast too),
  on a CPU with native bf16 (AVX512-BF16 or AMX; emulated elsewhere and slower than fp32 —
  4.9× on MiniLM-L6 in benchmarks/README.md — a row that says so);
- `int8-dynamic`: PyTorch's dynamic quantization of the linear layers
  (`torch.ao.quantization.quantize_dynamic`, qint8 weights, activations quantized per batch);
  a linear probe's head stays fp32 in both int8 variants (its folded standardisation makes
  weights no per-tensor int8 scale holds; measured: EfficientNet-Lite0's probe on digits fell
  from 0.73 to 0.10 with the head quantized);
- `onnx-fp32`: the export check's ONNX model in onnxruntime (CPU);
- `onnx-int8`: that ONNX model through `onnxruntime.quantization.quantize_dynamic` (int8
  weights of its MatMul and Gemm nodes, the same layers as `int8-dynamic`);
- `fp16-cuda`: the weights in float16 on the GPU, only when one is present.

Every variant runs in its own fresh Python process (`python -m ptmeval.deployment`): it builds
the variant, collects garbage, resets the process's peak-memory mark (`/proc/self/clear_refs`),
scores the test split at the larger batch size (its full batches after the first are that batch
size's timings when there are at least `min_repeats` of them), times the other batch sizes (and
the larger one on a small test split: warm-up, then repeats until `min_repeats` and
`budget_s`), and reports the peak resident memory since the reset
(the variant running, not the fp32 model it was converted from) and the variant's size on disk
(its saved state dict, or its ONNX file). It also reports its whole process's peak
(`process_peak_mb`, building included); with the waiting parent's resident memory that is the
export job's peak while the variant runs (`tree_peak_mb`), which Snakemake's benchmark, sampling
every 30 s after a job's first 15 s, can miss. A variant that cannot be built or run is a row
with its reason, never a crash.

The gate (`gate_rows`), as MLPerf Inference applies it: a variant passes when its score on the
primary metric is at least `gate` (0.99) × the fp32 reference's, on the same test examples. Each
row also has the paired difference from fp32 with its percentile bootstrap interval (the test
examples resampled, the same resample for both) and McNemar's test of equal accuracy, so that the
page can say how sure the gate's verdict is.
"""

from __future__ import annotations

import gc
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

TORCH_VARIANTS = ("fp32", "bf16", "int8-dynamic")
ONNX_VARIANTS = ("onnx-fp32", "onnx-int8")
GPU_VARIANTS = ("fp16-cuda",)
VARIANTS = (*TORCH_VARIANTS, *ONNX_VARIANTS, *GPU_VARIANTS)
REFERENCE = "fp32"
DESCRIPTIONS = {
    "fp32": "eager PyTorch, float32 (the reference)",
    "bf16": "eager PyTorch, weights cast to bfloat16",
    "int8-dynamic": "PyTorch dynamic quantization of the linear layers (int8 weights)",
    "onnx-fp32": "ONNX in onnxruntime (CPU), float32",
    "onnx-int8": "ONNX in onnxruntime, dynamic int8 (onnxruntime.quantization)",
    "fp16-cuda": "eager PyTorch on the GPU, weights cast to float16",
}


# --- the child process: one variant ---------------------------------------------------------


def _reset_peak() -> bool:
    """Reset this process's peak resident memory (VmHWM) to its current RSS (Linux)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _torch_module(spec: dict[str, Any]) -> Any:
    """The fp32 module mapping the input tensors to logits: a pickled module (`module_file`), or
    rebuilt from a fine-tune job's weights (`job`, `snapshot`, `model_dir`, `labels`)."""
    import torch

    if spec.get("module_file"):
        return torch.load(spec["module_file"], weights_only=False).eval()
    from ptmeval.export import build_model
    from ptmeval.jobs import FinetuneJob

    job = FinetuneJob.model_validate(spec["job"])
    module, _ = build_model(job, Path(spec["snapshot"]), Path(spec["model_dir"]), spec["labels"])
    return module.eval()


def _build_torch(spec: dict[str, Any]) -> tuple[Callable[[list[np.ndarray]], np.ndarray], int]:
    """(run: input arrays -> float32 logits, bytes on disk) of a PyTorch variant."""
    import torch

    variant = spec["variant"]
    module = _torch_module(spec)
    device, dtype = "cpu", None
    if variant == "bf16":
        dtype = torch.bfloat16
        module = module.to(dtype)
    elif variant == "int8-dynamic" and spec.get("probe_head"):
        # a linear probe's head stays fp32: standardisation folded into it gives weights whose
        # range one per-tensor int8 scale cannot hold, and it is a tiny layer; the backbone is
        # what deployment shrinks
        module.inner = torch.ao.quantization.quantize_dynamic(
            module.inner, {torch.nn.Linear}, dtype=torch.qint8
        )
    elif variant == "int8-dynamic":
        module = torch.ao.quantization.quantize_dynamic(
            module, {torch.nn.Linear}, dtype=torch.qint8
        )
    elif variant == "fp16-cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("no GPU in this process")
        device, dtype = "cuda", torch.float16
        module = module.to(device=device, dtype=dtype)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "weights.pt"
        torch.save(module.state_dict(), path)
        size = path.stat().st_size
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def run(arrays: list[np.ndarray]) -> np.ndarray:
        tensors = []
        for a in arrays:
            t = torch.from_numpy(a).to(device)
            if dtype is not None and t.is_floating_point():
                t = t.to(dtype)
            tensors.append(t)
        with torch.inference_mode():
            out = module(*tensors).float().cpu().numpy()
        sync()
        return np.asarray(out)

    return run, size


def _build_onnx(spec: dict[str, Any]) -> tuple[Callable[[list[np.ndarray]], np.ndarray], int]:
    import onnxruntime as ort

    path = Path(spec["onnx_file"])
    options = ort.SessionOptions()
    options.intra_op_num_threads = spec["threads"]
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))

    def run(arrays: list[np.ndarray]) -> np.ndarray:
        return np.asarray(session.run(None, dict(zip(names, arrays, strict=True)))[0])

    return run, size


def _batches(arrays: list[np.ndarray], size: int) -> list[np.ndarray]:
    """`size` examples, the test inputs repeated if there are fewer."""
    reps = -(-size // len(arrays[0]))
    return [np.concatenate([a] * reps)[:size] for a in arrays]


def _measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs in the child process: build the variant, score the test inputs, time it. An ONNX
    variant's process never imports torch (its memory is onnxruntime's alone)."""
    from ptmeval.runtime import latency_stats, status_mb, timed_repeats

    if spec["variant"] not in ONNX_VARIANTS:
        import torch

        torch.set_num_threads(spec["threads"])
        torch.manual_seed(0)
    loaded = np.load(spec["inputs_file"], allow_pickle=False)
    arrays = [loaded[f"a{i}"] for i in range(len(loaded.files))]
    build = _build_onnx if spec["variant"] in ONNX_VARIANTS else _build_torch
    run, size = build(spec)
    gc.collect()
    built_peak = status_mb("VmHWM")  # the process's peak so far (torch, loading, converting)
    reset = _reset_peak()
    rss_built = status_mb("VmRSS")
    big = max(spec["batch_sizes"])
    n = len(arrays[0])
    chunks, scoring = [], []  # the full batches after the first time the largest batch size
    for i in range(0, n, big):
        t0 = time.perf_counter()
        chunks.append(run([a[i : i + big] for a in arrays]))
        if i > 0 and i + big <= n:
            scoring.append(time.perf_counter() - t0)
    logits = np.concatenate(chunks).astype(np.float64)
    row: dict[str, Any] = {
        "status": "ok",
        "reason": "",
        "disk_mb": size / 2**20,
        "rss_built_mb": rss_built,
        "peak_reset": reset,
        "logits": logits.tolist(),
    }
    timing = {k: spec[k] for k in ("warmup", "min_repeats", "max_repeats", "budget_s")}
    for batch_size in spec["batch_sizes"]:
        if batch_size == big and len(scoring) >= spec["min_repeats"]:
            stats = latency_stats(scoring, big)  # scoring the test split timed it already
            row[f"latency_b{big}_p50_ms"] = stats["latency_p50_ms"]
            row[f"latency_b{big}_p90_ms"] = stats["latency_p90_ms"]
            continue
        batch = _batches(arrays, batch_size)

        def step(batch: list[np.ndarray] = batch) -> None:
            run(batch)

        timed = timed_repeats(
            step,
            lambda: None,
            {**timing, "batch_size": batch_size},
            rss_built,
        )
        row[f"latency_b{batch_size}_p50_ms"] = timed["latency_p50_ms"]
        row[f"latency_b{batch_size}_p90_ms"] = timed["latency_p90_ms"]
    row["peak_rss_mb"] = status_mb("VmHWM")
    row["process_peak_mb"] = max(built_peak, row["peak_rss_mb"])  # the child's whole peak
    return row


def measure_variant(spec: dict[str, Any], timeout_s: float = 900) -> dict[str, Any]:
    """One variant in a fresh Python process; a failure comes back as a status with its reason."""
    from ptmeval.runtime import measure_in_subprocess

    return measure_in_subprocess(spec, timeout_s, module="ptmeval.deployment")


# --- the parent: build the ONNX int8 file, run every variant, gate ---------------------------


def head_nodes(path: Path) -> list[str]:
    """The MatMul/Gemm nodes that compute the graph's output directly (through a bias Add at
    most): a linear probe's folded head, which `keep_head` leaves in fp32."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    producer = {out: node for node in graph.node for out in node.output}
    found, frontier = [], [o.name for o in graph.output]
    for _ in range(2):
        step = []
        for name in frontier:
            node = producer.get(name)
            if node is None:
                continue
            if node.op_type == "MatMul":
                found.append(node.name)
            elif node.op_type == "Gemm":  # the quantizer first splits it into <name>_MatMul + Add
                found += [node.name, f"{node.name}_MatMul"]
            elif node.op_type == "Add":
                step.extend(node.input)
        frontier = step
    return found


def quantize_onnx(source: Path, target: Path, keep_head: bool = False) -> None:
    """Dynamic int8 quantization of an ONNX model's MatMul and Gemm weights (onnxruntime);
    `keep_head`: not the nodes of a linear probe's head (`head_nodes`)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(source),
        str(target),
        op_types_to_quantize=["MatMul", "Gemm"],
        weight_type=QuantType.QInt8,
        nodes_to_exclude=head_nodes(source) if keep_head else None,
    )


def wanted_variants(names: Sequence[str], gpu: bool | None = None) -> list[str]:
    """The variants to build, in order; `fp16-cuda` only with a GPU; the reference always."""
    if gpu is None:
        try:
            import torch

            gpu = bool(torch.cuda.is_available())
        except ImportError:
            gpu = False
    chosen = [REFERENCE, *(v for v in names if v != REFERENCE)]
    return [v for v in chosen if v not in GPU_VARIANTS or gpu]


def measure_variants(
    source: dict[str, Any],
    arrays: list[np.ndarray],
    onnx_file: Path | None,
    variants: list[str],
    threads: int,
    batch_sizes: tuple[int, ...] = (1, 32),
    timing: dict[str, Any] | None = None,
    onnx_reason: str = "no ONNX model (the export failed)",
) -> dict[str, dict[str, Any]]:
    """Each variant's child-process result by name. `source`: how a child gets the fp32 module
    (`module_file`, or `job`/`snapshot`/`model_dir`/`labels`); `onnx_file`: the exported fp32
    ONNX model (None when the export failed: the ONNX variants are then rows with the reason)."""
    from ptmeval.runtime import status_mb

    timing = {"warmup": 1, "min_repeats": 3, "max_repeats": 30, "budget_s": 1.0, **(timing or {})}
    out: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        inputs_file = Path(tmp) / "inputs.npz"
        np.savez(inputs_file, **{f"a{i}": a for i, a in enumerate(arrays)})  # type: ignore[arg-type]
        files: dict[str, Path | None] = {"onnx-fp32": onnx_file, "onnx-int8": None}
        if onnx_file is not None and "onnx-int8" in variants:
            int8_file = Path(tmp) / "model.int8.onnx"
            try:
                quantize_onnx(onnx_file, int8_file, keep_head=bool(source.get("probe_head")))
                files["onnx-int8"] = int8_file
            except Exception as err:
                from ptmeval.export import failure_reason

                files["onnx-int8"] = None
                onnx_reason = "onnxruntime.quantization failed: " + failure_reason(err)
        for variant in variants:
            spec = {
                **source,
                **timing,
                "variant": variant,
                "threads": threads,
                "batch_sizes": list(batch_sizes),
                "inputs_file": str(inputs_file),
            }
            if variant in ONNX_VARIANTS:
                path = files[variant]
                if path is None:
                    out[variant] = {"status": "not built", "reason": onnx_reason}
                    continue
                spec["onnx_file"] = str(path)
            parent_rss = status_mb("VmRSS")  # the parent only waits while the child runs
            result = measure_variant(spec)
            if "process_peak_mb" in result:
                result["tree_peak_mb"] = parent_rss + float(result["process_peak_mb"])
            log.info(
                "variant %s: %s",
                variant,
                {k: v for k, v in result.items() if k != "logits"},
            )
            out[variant] = result
    return out


def _metric_fn(metric: str) -> Callable[[np.ndarray, np.ndarray], float]:
    from ptmeval.metrics import get_metric

    return get_metric(metric)


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def paired_metric_interval(
    probs_ref: np.ndarray,
    probs_var: np.ndarray,
    target: np.ndarray,
    metric: str,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """Percentile bootstrap interval of metric(variant) − metric(reference): the test examples
    resampled with replacement, the same resample for both."""
    score = _metric_fn(metric)
    rng = np.random.default_rng(seed)
    n = len(target)
    diffs = np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.integers(0, n, n)
        diffs[b] = score(probs_var[idx], target[idx]) - score(probs_ref[idx], target[idx])
    low, high = np.quantile(diffs, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def gate_passes(value: float, reference: float, gate: float) -> bool:
    """MLPerf's rule: the variant's score is at least `gate` × the reference's (higher is
    better); a tiny tolerance absorbs floating-point error in the product."""
    return bool(value >= gate * reference - 1e-12)


def gate_rows(
    results: dict[str, dict[str, Any]],
    target: np.ndarray,
    metric: str,
    gate: float,
    n_boot: int = 1000,
    alpha: float = 0.05,
) -> list[dict[str, Any]]:
    """One row per variant: its score, the paired difference from fp32 (bootstrap interval,
    McNemar), prediction agreement, and whether it passes the gate."""
    from ptmeval.comparison import mcnemar

    score = _metric_fn(metric)
    ref = results.get(REFERENCE, {})
    ref_ok = ref.get("status") == "ok"
    ref_probs = _softmax(np.asarray(ref["logits"])) if ref_ok else None
    ref_score = score(ref_probs, target) if ref_probs is not None else float("nan")
    rows = []
    for variant, result in results.items():
        row = {
            "variant": variant,
            "description": DESCRIPTIONS.get(variant, variant),
            "status": result.get("status", "failed"),
            "reason": result.get("reason", ""),
            "metric": metric,
            "reference_score": ref_score,
            "gate": gate,
            **{k: v for k, v in result.items() if k not in {"status", "reason", "logits"}},
        }
        if row["status"] == "ok" and ref_probs is not None:
            probs = _softmax(np.asarray(result["logits"]))
            if probs.shape != ref_probs.shape:
                row.update(status="failed", reason=f"output shape {probs.shape} ≠ fp32's")
                rows.append(row)
                continue
            value = score(probs, target)
            correct_ref = ref_probs.argmax(1) == target
            correct_var = probs.argmax(1) == target
            low, high = paired_metric_interval(
                ref_probs, probs, target, metric, n_boot=n_boot, alpha=alpha
            )
            row.update(
                score=value,
                ratio=value / ref_score if ref_score > 0 else float("nan"),
                diff=value - ref_score,
                accuracy_diff=float(correct_var.mean() - correct_ref.mean()),
                diff_lo=low,
                diff_hi=high,
                mcnemar_p=mcnemar(correct_ref, correct_var)[1],
                agreement=float(np.mean(probs.argmax(1) == ref_probs.argmax(1))),
                max_abs_logit_diff=float(
                    np.abs(np.asarray(result["logits"]) - np.asarray(ref["logits"])).max()
                ),
                passes=gate_passes(value, ref_score, gate),
            )
        elif row["status"] == "ok":
            row["reason"] = "not gated: the fp32 reference failed"
        rows.append(row)
    return rows


def deployment_variants(
    keys: dict[str, Any],
    source: dict[str, Any],
    arrays: list[np.ndarray],
    target: np.ndarray,
    onnx_file: Path | None,
    settings: dict[str, Any],
    metric: str,
    threads: int,
    onnx_reason: str = "no ONNX model (the export failed)",
) -> Any:
    """The deployment table of one model × task: one row per variant (`keys` on every row)."""
    import pandas as pd

    from ptmeval.compute import cpu_has_bf16

    variants = wanted_variants(settings.get("variants", VARIANTS))
    skipped: dict[str, dict[str, Any]] = {}
    if "bf16" in variants and not cpu_has_bf16():
        skipped["bf16"] = {
            "status": "not built",
            "reason": "this CPU has no native bf16 (AVX512-BF16 or AMX): emulated, it runs "
            "slower than fp32, not faster, and is no deployment option here",
        }
    results = measure_variants(
        source,
        arrays,
        onnx_file,
        [v for v in variants if v not in skipped],
        threads,
        tuple(settings.get("batch_sizes", (1, 32))),
        {"budget_s": float(settings.get("budget_s", 1.0))},
        onnx_reason,
    )
    results = {v: results.get(v) or skipped[v] for v in variants}
    rows = gate_rows(
        results,
        target,
        metric,
        float(settings.get("gate", 0.99)),
        n_boot=int(settings.get("n_boot", 1000)),
    )
    frame = pd.DataFrame([{**keys, "n_test": len(target), **row} for row in rows])
    for col in ("score", "ratio", "diff", "diff_lo", "diff_hi", "mcnemar_p", "passes"):
        if col not in frame:
            frame[col] = None
    return frame


# --- reading the deployment table (aggregate, verdicts, scorecard) ---------------------------

CONSTRAINT_COST = {
    "latency": "latency_b1_p50_ms",
    "finetune_cost": "latency_b1_p50_ms",
    "memory": "peak_rss_mb",
    "storage": "disk_mb",
}


def passing_variants(table: Any) -> Any:
    if table is None or len(table) == 0 or "passes" not in table:
        return table.iloc[0:0] if table is not None else None
    ok = table[(table["status"] == "ok") & (table["passes"].astype("boolean").fillna(False))]
    return ok


def best_variants(table: Any, constraint: str = "latency") -> list[dict[str, Any]]:
    """Per model × task of the deployment table: the passing variant other than fp32 that is
    cheapest by the constraint's cost (batch-1 latency, peak memory or size on disk), when it is
    cheaper than fp32 on it; with its paired change (`diff`), its latency ratio and peak-memory
    difference to fp32, all measured side by side."""
    cost = CONSTRAINT_COST.get(constraint, "latency_b1_p50_ms")
    ok = passing_variants(table)
    if ok is None or len(ok) == 0:
        return []
    picks = []
    for (model, task), group in ok.groupby(["model", "task"], sort=True):
        ref = group[group["variant"] == REFERENCE]
        others = group[group["variant"] != REFERENCE].dropna(subset=[cost])
        if ref.empty or others.empty:
            continue
        r = ref.iloc[0]
        best = others.sort_values(cost).iloc[0]
        if not float(best[cost]) < float(r[cost]):
            continue
        picks.append(
            {
                "model": model,
                "task": task,
                "variant": str(best["variant"]),
                "cost": cost,
                "score": float(best["score"]),
                "reference_score": float(r["score"]),
                "diff": float(best["diff"]),
                "accuracy_diff": float(best["accuracy_diff"]),
                "latency_ratio": float(best["latency_b1_p50_ms"]) / float(r["latency_b1_p50_ms"]),
                "memory_diff_mb": float(best["peak_rss_mb"]) - float(r["peak_rss_mb"]),
                "peak_rss_mb": float(best["peak_rss_mb"]),
                "disk_mb": float(best["disk_mb"]),
                "gate": float(best["gate"]),
                "metric": str(best["metric"]),
            }
        )
    return picks


if __name__ == "__main__":
    logging.disable(logging.WARNING)
    import warnings

    warnings.filterwarnings("ignore")
    print(json.dumps(_measure(json.loads(sys.stdin.read()))))
