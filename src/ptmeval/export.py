"""`export_check`: can the fine-tuned model leave PyTorch, and does it still give the same answers?

For one fine-tuned model per model × task (the largest training size, the first seed, the
pretrained initialisation when there is one) this records, as findings and never as failures:
- whether it loads through a standard API with no custom code;
- whether `torch.export.export` succeeds (or the first line of the reason);
- whether ONNX export succeeds (`torch.onnx.export`, the dynamo exporter, then the TorchScript
  exporter as a fallback), and then, in onnxruntime on the task's test inputs: the largest
  absolute logit difference to eager PyTorch, the largest difference relative to the largest
  eager logit magnitude, the accuracy and macro-F1 of both and their change, and the latency of
  onnxruntime and eager at batch 1 and 32, measured side by side in this process;
- the deployment variants (fp32, bf16, int8, ONNX fp32 and int8) behind the accuracy gate:
  `ptmeval.deployment`.
Text inputs are padded to max_length so that only the batch dimension is dynamic.
"""

from __future__ import annotations

import inspect
import logging
import re
import statistics
import tempfile
import time
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ptmeval.adapters import get_spec
from ptmeval.jobs import FinetuneJob
from ptmeval.metrics import accuracy, macro_f1
from ptmeval.training import (
    HEAD_FILE,
    input_column,
    load_finetuned,
    load_for_task,
    num_labels,
    set_threads,
)

log = logging.getLogger(__name__)
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def failure_reason(err: BaseException) -> str:
    """'Type: first line' of an exception, following `__cause__` to the root, ANSI stripped."""
    while err.__cause__ is not None:
        err = err.__cause__
    lines = [ln.strip() for ln in ANSI.sub("", str(err)).strip().splitlines() if ln.strip()]
    first = lines[0] if lines else ""
    return f"{type(err).__name__}: {first}"[:300]


def build_model(job: FinetuneJob, snapshot: Path, model_dir: Path, labels: int) -> tuple[Any, Any]:
    """(torch module mapping the input tensors to logits, the LoadedModel) of a fine-tuned job."""
    import torch

    if job.method in ("full", "lora"):  # a LoRA fine-tune's weights are saved merged
        loaded = load_finetuned(job, snapshot, model_dir, labels)
        loaded.model.eval()
        return logits_module(loaded), loaded
    loaded = load_for_task(job, snapshot, labels, job.init)
    loaded.model.eval()
    head = np.load(model_dir / HEAD_FILE, allow_pickle=False)
    coef = head["coef"]
    intercept = head["intercept"]
    classes = head["classes"].astype(int)
    if coef.shape[0] == 1:  # binary logistic regression: one logit
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.concatenate([[0.0], intercept])
    # fold the standardisation into the linear layer; unseen classes get a very low logit
    weight = np.zeros((labels, coef.shape[1]))
    bias = np.full(labels, -1e4)
    weight[classes] = coef / head["scale"]
    bias[classes] = intercept - (coef * (head["mean"] / head["scale"])).sum(1)
    linear = torch.nn.Linear(coef.shape[1], labels)
    with torch.no_grad():
        linear.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
        linear.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    return probe_module(loaded, linear), loaded


def input_names(loaded: Any) -> list[str]:
    return list(loaded.example_batch(1).keys())


def _make_modules() -> tuple[type, type]:
    import torch

    class LogitsModule(torch.nn.Module):
        def __init__(self, loaded: Any) -> None:
            super().__init__()
            self.inner = loaded.model
            self.names = input_names(loaded)
            self.fn = loaded.logits_fn

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return self.fn(self.inner, dict(zip(self.names, tensors, strict=True)))

    class ProbeModule(torch.nn.Module):
        def __init__(self, loaded: Any, linear: torch.nn.Linear) -> None:
            super().__init__()
            self.inner = loaded.model
            self.names = input_names(loaded)
            self.fn = loaded.features_fn
            self.linear = linear

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            feats = self.fn(self.inner, dict(zip(self.names, tensors, strict=True)))
            return self.linear(feats)

    return LogitsModule, ProbeModule


def logits_module(loaded: Any) -> Any:
    """The loaded model as a module mapping its input tensors to logits (eval mode)."""
    return _make_modules()[0](loaded).eval()


def probe_module(loaded: Any, linear: Any) -> Any:
    """The frozen model's features followed by a fitted linear head, as one module (eval mode)."""
    return _make_modules()[1](loaded, linear).eval()


def test_inputs(loaded: Any, items: list[Any], settings: Any) -> list[np.ndarray]:
    """The test set as input arrays in the model's input order; text padded to max_length."""
    import torch

    batch = loaded.collate(items)
    if "input_ids" in batch:
        pad = loaded.info.get("pad_token_id") or 0
        extra = settings.max_length - batch["input_ids"].shape[1]
        if extra > 0:
            batch["input_ids"] = torch.nn.functional.pad(batch["input_ids"], (0, extra), value=pad)
            batch["attention_mask"] = torch.nn.functional.pad(batch["attention_mask"], (0, extra))
    return [batch[name].numpy() for name in input_names(loaded)]


def _run_batched(
    fn: Callable[[list[np.ndarray]], np.ndarray], arrays: list[np.ndarray], size: int
) -> np.ndarray:
    out = [fn([a[i : i + size] for a in arrays]) for i in range(0, len(arrays[0]), size)]
    return np.concatenate(out)


def latency_ms(fn: Callable[[], Any], repeats: int = 10, budget_s: float = 2.0) -> float:
    fn()  # warm-up
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 3 or (len(times) < repeats and time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def export_check(
    job: FinetuneJob,
    data: pd.DataFrame,
    model_dir: Path,
    snapshot: Path | None,
    threads: int = 1,
    latency_batch_sizes: tuple[int, ...] = (1, 32),
    deployment: dict[str, Any] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row of findings, the deployment variants' table: `ptmeval.deployment`) for the
    fine-tuned model in `model_dir`. `deployment`: the config's deployment settings (None: the
    variants are not built, an empty table)."""
    from ptmeval.deployment import deployment_variants

    row: dict[str, Any] = job.keys()
    if not get_spec(job.adapter).neural or snapshot is None:
        row.update(
            standard_api="scikit-learn (not a torch model)",
            torch_export="not applicable",
            onnx_export="not applicable",
            onnxruntime="not applicable",
        )
        return pd.DataFrame([row]), pd.DataFrame()
    set_threads(threads)
    labels = num_labels(data)
    module, loaded = build_model(job, snapshot, model_dir, labels)
    row["standard_api"] = loaded.info.get("standard_api", "unknown")
    test = data[data["split"] == "test"]
    arrays = test_inputs(loaded, test[input_column(data)].tolist(), job.finetune)
    target = test["label"].to_numpy()
    with tempfile.TemporaryDirectory() as keep:
        onnx_file = Path(keep) / "model.onnx"
        row.update(
            check_module(
                module,
                arrays,
                target,
                input_names(loaded),
                threads,
                latency_batch_sizes,
                onnx_keep=onnx_file,
            )
        )
        log.info("export check %s on %s: %s", job.model, job.task, row)
        variants = pd.DataFrame()
        if deployment is not None:
            del module, loaded  # each variant is built in its own process
            source = {
                "job": job.model_dump(mode="json"),
                "snapshot": str(snapshot),
                "model_dir": str(model_dir),
                "labels": labels,
                "probe_head": job.method == "linear_probe",
            }
            variants = deployment_variants(
                job.keys(),
                source,
                arrays,
                target,
                onnx_file if onnx_file.exists() else None,
                deployment,
                job.metric,
                threads,
                onnx_reason=f"no ONNX model: {row.get('onnx_export', 'not exported')}",
            )
    row["job_peak_rss_mb"] = job_peak_mb(variants)
    return pd.DataFrame([row]), variants


def job_peak_mb(variants: pd.DataFrame) -> float:
    """This job's peak resident memory (MB): this process's own peak or, higher, this process
    waiting plus a deployment variant's child at its peak (`tree_peak_mb`)."""
    from ptmeval.runtime import status_mb

    tree = pd.to_numeric(variants.get("tree_peak_mb", pd.Series(dtype=float)), errors="coerce")
    return float(np.fmax(status_mb("VmHWM"), tree.max()))


def _dynamic_shapes(module: Any, arrays: list[np.ndarray]) -> Any:
    """The exporters' dynamic-shape spec for `module`: a dynamic batch dimension on every
    input (one entry for a `*tensors` signature)."""
    import torch

    batch_dim = torch.export.Dim("batch", min=1, max=4096)
    per_input = tuple({0: batch_dim} for _ in arrays)
    varargs = any(
        p.kind is inspect.Parameter.VAR_POSITIONAL
        for p in inspect.signature(module.forward).parameters.values()
    )
    return (per_input,) if varargs else per_input  # *tensors is one entry in the spec


def _ort_runner(path: Path, threads: int) -> Callable[[list[np.ndarray]], np.ndarray]:
    """A function running the ONNX model at `path` in onnxruntime (CPU, `threads` threads) on a
    batch of inputs; returns its logits."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    inputs = [i.name for i in session.get_inputs()]

    def run_ort(batch: list[np.ndarray]) -> np.ndarray:
        return np.asarray(session.run(None, dict(zip(inputs, batch, strict=True)))[0])

    return run_ort


def _parity(eager_logits: np.ndarray, ort_logits: np.ndarray, target: np.ndarray) -> dict[str, Any]:
    """onnxruntime against eager PyTorch: logit differences, prediction agreement, and both
    accuracies and macro-F1s with their change."""
    diff = np.abs(ort_logits - eager_logits)
    eager_probs, ort_probs = _softmax(eager_logits), _softmax(ort_logits)
    row: dict[str, Any] = dict(
        onnxruntime="ok",
        max_abs_diff=float(diff.max()),
        max_rel_diff=float(diff.max() / max(np.abs(eager_logits).max(), 1e-12)),
        prediction_agreement=float(np.mean(eager_logits.argmax(1) == ort_logits.argmax(1))),
        accuracy_eager=accuracy(eager_probs, target),
        accuracy_onnx=accuracy(ort_probs, target),
        macro_f1_eager=macro_f1(eager_probs, target),
        macro_f1_onnx=macro_f1(ort_probs, target),
    )
    row["accuracy_change"] = row["accuracy_onnx"] - row["accuracy_eager"]
    row["macro_f1_change"] = row["macro_f1_onnx"] - row["macro_f1_eager"]
    return row


def _latencies(
    eager: Callable[[list[np.ndarray]], np.ndarray],
    run_ort: Callable[[list[np.ndarray]], np.ndarray],
    arrays: list[np.ndarray],
    sizes: tuple[int, ...],
) -> dict[str, Any]:
    """Eager and onnxruntime latency side by side at each batch size (the inputs cycled to
    it), and their ratio."""
    row: dict[str, Any] = {}
    for size in sizes:
        reps = -(-size // len(arrays[0]))
        batch = [np.concatenate([a] * reps)[:size] for a in arrays]
        row[f"eager_latency_b{size}_ms"] = latency_ms(partial(eager, batch))
        row[f"onnx_latency_b{size}_ms"] = latency_ms(partial(run_ort, batch))
        row[f"onnx_vs_eager_b{size}"] = (
            row[f"onnx_latency_b{size}_ms"] / row[f"eager_latency_b{size}_ms"]
        )
    return row


def check_module(
    module: Any,
    arrays: list[np.ndarray],
    target: np.ndarray,
    names: list[str],
    threads: int = 1,
    latency_batch_sizes: tuple[int, ...] = (1, 32),
    onnx_keep: Path | None = None,
) -> dict[str, Any]:
    """torch.export, ONNX export and onnxruntime parity of `module` (inputs -> logits) on
    `arrays`; every failure is recorded with its reason, never raised. `onnx_keep`: where to
    copy the exported ONNX model (the deployment variants use it)."""
    import torch

    row: dict[str, Any] = {}
    example = tuple(torch.from_numpy(a[:2]) for a in arrays)

    def eager(batch: list[np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            return np.asarray(module(*(torch.from_numpy(a) for a in batch)).float().numpy())

    eager_logits = _run_batched(eager, arrays, 32)
    dynamic = _dynamic_shapes(module, arrays)
    try:  # inline: the logged traceback names check_module
        torch.export.export(module, example, dynamic_shapes=dynamic, strict=False)
        row["torch_export"] = "ok"
    except Exception as err:
        row["torch_export"] = "failed: " + failure_reason(err)
        log.info("torch.export failed: %s", traceback.format_exc(limit=2))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        exporter = _onnx_export(module, example, names, dynamic, path, row)
        if exporter is None:
            row["onnxruntime"] = "not run (no ONNX model)"
            return row
        row["onnx_exporter"] = exporter
        row["onnx_bytes"] = sum(p.stat().st_size for p in Path(tmp).iterdir())
        if onnx_keep is not None:
            import shutil

            shutil.copyfile(path, onnx_keep)
        try:
            run_ort = _ort_runner(path, threads)
            ort_logits = _run_batched(run_ort, arrays, 32)
        except Exception as err:
            row["onnxruntime"] = "failed: " + failure_reason(err)
            return row
        row.update(_parity(eager_logits, ort_logits, target))
        row.update(_latencies(eager, run_ort, arrays, latency_batch_sizes))
    return row


def _onnx_export(
    module: Any,
    example: tuple[Any, ...],
    names: list[str],
    dynamic: Any,
    path: Path,
    row: dict[str, Any],
) -> str | None:
    """Export to ONNX; returns the exporter that worked, records reasons in `row`."""
    import torch

    try:
        torch.onnx.export(
            module,
            example,
            str(path),
            input_names=names,
            output_names=["logits"],
            dynamic_shapes=dynamic,
            dynamo=True,
            external_data=False,
        )
        row["onnx_export"] = "ok"
        return "dynamo"
    except Exception as err:
        first = failure_reason(err)
        log.info("dynamo ONNX export failed: %s", first)
    try:
        torch.onnx.export(
            module,
            example,
            str(path),
            input_names=names,
            output_names=["logits"],
            dynamic_axes={n: {0: "batch"} for n in [*names, "logits"]},
            dynamo=False,
        )
        row["onnx_export"] = f"ok (TorchScript exporter; dynamo exporter failed: {first})"
        return "torchscript"
    except Exception as err:
        row["onnx_export"] = f"failed: dynamo: {first}; torchscript: {failure_reason(err)}"
        return None
