"""`measure_runtime`: latency, throughput and peak memory, each measured in a fresh process.

Every (mode, batch size) is measured by `python -m ptmeval.runtime` in its own subprocess, so
that one measurement's allocations cannot inflate another's peak memory: the child loads the
model, pins its threads, runs warm-up iterations, then repeats until it has `min_repeats`
timings and `budget_s` seconds (at most `max_repeats`), and reports the latency percentiles,
the coefficient of variation, throughput, the resident set size after loading and its peak
(VmHWM of the child's own process image), and on a GPU `torch.cuda.max_memory_allocated`. A child that is killed (e.g.
out of memory) or fails is recorded as a row with its reason, not raised. A measurement whose
latency CV is above `max_cv` (a busy machine) is repeated up to `noisy_retries` times and the
steadiest kept; each row records the attempts, whether it is still noisy, and the machine's
1-minute load average and CPU count.

Inference runs `logits` under `torch.inference_mode`; a training step is forward, cross-entropy,
backward and an AdamW update of every weight (the cost of full fine-tuning), on full-size
synthetic inputs (max_length tokens / image_size² pixels). A classical model (`tfidf-logreg`)
is measured on CPU, inference only (its fitting time is in the fine-tune cost): the child loads
the fitted state of one fine-tune job once and predicts real test texts of its task.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ptmeval.adapters import get_spec
from ptmeval.errors import DataError

if TYPE_CHECKING:  # pandas only in the parent: the child's memory is the model's
    import pandas as pd

log = logging.getLogger(__name__)


def status_mb(field: str) -> float:
    """A memory field of /proc/self/status in MB: VmRSS (now) or VmHWM (peak of this process
    image; unlike ru_maxrss it does not carry the parent's peak over fork + exec)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs in the child process."""
    if spec.get("memory_limit_mb"):  # simulate a smaller machine: cap the address space
        import resource

        limit = int(spec["memory_limit_mb"]) * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if spec.get("classical"):
        return _measure_classical(spec)
    import torch

    from ptmeval.jobs import ModelJob
    from ptmeval.training import load_for_task, seed_everything

    torch.set_num_threads(spec["threads"])
    seed_everything(0)
    job = ModelJob.model_validate(spec["job"])
    device = spec.get("device", "cpu")
    loaded = load_for_task(job, Path(spec["model_dir"]), 2, spec["init"])
    if spec["mode"] == "train" and job.method == "lora":  # a step trains the adapters and head
        from ptmeval.training.lora import apply_lora

        apply_lora(loaded, job)
    model = loaded.model.to(device)
    batch = {k: v.to(device) for k, v in loaded.example_batch(spec["batch_size"]).items()}
    rss_loaded = status_mb("VmRSS")
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    if spec["mode"] == "train":
        model.train()
        trained = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trained, lr=1e-5)
        target = torch.zeros(spec["batch_size"], dtype=torch.long, device=device)

        def step() -> None:
            loss = torch.nn.functional.cross_entropy(loaded.logits(batch), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    else:
        model.eval()

        def step() -> None:
            with torch.inference_mode():
                loaded.logits(batch)

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    result = timed_repeats(step, sync, spec, rss_loaded)
    result["gpu_peak_mb"] = (
        torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None
    )
    result["device"] = torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu"
    return result


def _measure_classical(spec: dict[str, Any]) -> dict[str, Any]:
    """A classical model's inference (child process): its fitted state loaded once, then
    `predict` on `batch_size` real texts; no torch."""
    from ptmeval.adapters import get_adapter

    job = spec["job"]
    fitted = get_adapter(job["adapter"], job.get("options")).load_fitted(Path(spec["model_dir"]))
    texts, labels = list(spec["texts"]), int(spec["num_labels"])
    rss_loaded = status_mb("VmRSS")

    def step() -> None:
        fitted.predict(texts, labels)

    return {
        **timed_repeats(step, lambda: None, spec, rss_loaded),
        "gpu_peak_mb": None,
        "device": "cpu",
    }


def timed_repeats(
    step: Callable[[], None], sync: Callable[[], None], spec: dict[str, Any], rss_loaded: float
) -> dict[str, Any]:
    """Warm up, then time `step` until `min_repeats` timings and `budget_s` seconds (at most
    `max_repeats`); the latency statistics, throughput and memory (child process)."""
    for _ in range(spec["warmup"]):
        step()
    sync()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < spec["max_repeats"] and (
        len(times) < spec["min_repeats"] or time.perf_counter() - start < spec["budget_s"]
    ):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    return {
        "status": "ok",
        "reason": "",
        **latency_stats(times, spec["batch_size"]),
        "rss_loaded_mb": rss_loaded,
        "peak_rss_mb": status_mb("VmHWM"),
    }


def latency_stats(times: list[float], batch_size: int) -> dict[str, Any]:
    """Repeats, latency p50/p90/mean (ms), CV and throughput of timed repeats (seconds)."""
    mean = statistics.fmean(times)
    quantiles = (
        statistics.quantiles(times, n=10, method="inclusive") if len(times) > 1 else times * 9
    )
    return {
        "repeats": len(times),
        "latency_p50_ms": 1000 * statistics.median(times),
        "latency_p90_ms": 1000 * quantiles[8],
        "latency_mean_ms": 1000 * mean,
        "latency_cv": statistics.stdev(times) / mean if len(times) > 1 else float("nan"),
        "throughput_per_s": batch_size / mean,
    }


def measure_in_subprocess(
    spec: dict[str, Any], timeout_s: float = 900, module: str = "ptmeval.runtime"
) -> dict[str, Any]:
    """Run one measurement in a fresh Python process (`python -m <module>`, the spec as JSON
    on stdin, the result as the last line of JSON on stdout); failures come back as a status
    with the reason."""
    env = dict(os.environ, OMP_NUM_THREADS=str(spec["threads"]))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", module],
            input=json.dumps(spec),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return {"status": "failed", "reason": f"timed out after {timeout_s:.0f} s"}
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        if proc.returncode < 0:
            reason = f"killed by signal {-proc.returncode} (out of memory?)"
        elif any(
            "MemoryError" in ln or "out of memory" in ln.lower() or "can't allocate memory" in ln
            for ln in lines
        ):
            reason = "out of memory" + (
                f" (capped at {spec['memory_limit_mb']} MB)" if spec.get("memory_limit_mb") else ""
            )
        else:
            reason = lines[-1] if lines else f"exit status {proc.returncode}"
        return {"status": "failed", "reason": reason[:300]}
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def measure_until_steady(
    spec: dict[str, Any], max_cv: float = 0.25, noisy_retries: int = 2
) -> dict[str, Any]:
    """One measurement (`measure_in_subprocess`), repeated up to `noisy_retries` more times
    while the steadiest so far has a latency CV above `max_cv`; the attempt with the lowest CV
    is kept, with the 1-minute load average just before it (`load_1min`), the attempts made
    and whether it is still `noisy`. A failed first attempt is returned as it is."""
    label = f"{spec['job']['model']} {spec['mode']} batch {spec['batch_size']}"
    kept = _attempt(spec)
    attempts = 1
    if kept["status"] != "ok":
        return {**kept, "attempts": attempts, "noisy": False}
    while _cv(kept) > max_cv and attempts <= noisy_retries:
        log.info(
            "%s: latency CV %.3f above %.3f, measuring again (retry %d of %d)",
            label,
            _cv(kept),
            max_cv,
            attempts,
            noisy_retries,
        )
        again = _attempt(spec)
        attempts += 1
        if again["status"] == "ok" and _cv(again) < _cv(kept):
            kept = again
    return {**kept, "attempts": attempts, "noisy": bool(_cv(kept) > max_cv)}


def _attempt(spec: dict[str, Any]) -> dict[str, Any]:
    load_1min = os.getloadavg()[0]
    return {**measure_in_subprocess(spec), "load_1min": load_1min}


def _cv(result: dict[str, Any]) -> float:
    cv = result.get("latency_cv")
    return float("nan") if cv is None else float(cv)


def classical_texts(data: str | Path) -> tuple[list[str], int]:
    """The test texts of a task's data (all of its texts if it has no test split) and its
    number of labels: what a classical model's runtime is measured on."""
    from ptmeval.io import read_table

    table = read_table(data, columns=["split", "text", "label"])
    test = table[table["split"] == "test"]
    texts = (test if len(test) else table)["text"].astype(str).tolist()
    if not texts:
        raise DataError(f"'{data}': no texts to measure a classical model's runtime on")
    return texts, int(table["label"].max()) + 1


def _default_devices() -> list[str]:
    """The CPU, and CUDA when torch is installed and sees a GPU."""
    devices = ["cpu"]
    try:
        import torch

        if torch.cuda.is_available():
            devices.append("cuda")
    except ImportError:
        pass
    return devices


def _row(
    job: dict[str, Any], mode: str, size: int, threads: int, device: str, result: dict[str, Any]
) -> dict[str, Any]:
    """One row of the runtime table: what was measured, and the measurement."""
    return {
        "model": job["model"],
        "mode": mode,
        "batch_size": size,
        "threads": threads,
        "device_kind": device,
        "cpu_count": os.cpu_count(),
        **result,
    }


def measure_runtime(
    job: dict[str, Any],
    model_dir: str | Path,
    init: str,
    inference_batch_sizes: list[int],
    train_batch_sizes: list[int],
    threads: int,
    warmup: int = 2,
    min_repeats: int = 5,
    max_repeats: int = 50,
    budget_s: float = 3.0,
    devices: list[str] | None = None,
    memory_limit_mb: int | None = None,
    max_cv: float = 0.25,
    noisy_retries: int = 2,
    data: str | Path | None = None,
) -> pd.DataFrame:
    """One row per device × mode × batch size. `model_dir`: a neural model's snapshot, or a
    classical model's fitted state (a fine-tune job's model folder), measured on CPU, inference
    only, on the test texts of `data` (the task's table; cycled to the batch size)."""
    import pandas as pd

    classical = not get_spec(job["adapter"]).neural
    texts: list[str] = []
    labels = 0
    if classical:
        if data is None:
            raise DataError(f"model '{job['model']}': a classical model's runtime needs task data")
        texts, labels = classical_texts(data)
        devices, train_batch_sizes = ["cpu"], []
    if devices is None:
        devices = _default_devices()
    rows = []
    for device in devices:
        for mode, sizes in (
            ("inference", inference_batch_sizes),
            ("train_step", train_batch_sizes),
        ):
            for size in sizes:
                spec = {
                    "job": job,
                    "model_dir": str(model_dir),
                    "init": init,
                    "mode": "train" if mode == "train_step" else "inference",
                    "batch_size": size,
                    "threads": threads,
                    "warmup": warmup,
                    "min_repeats": min_repeats,
                    "max_repeats": max_repeats,
                    "budget_s": budget_s,
                    "device": device,
                    "memory_limit_mb": memory_limit_mb,
                }
                if classical:
                    spec |= {
                        "classical": True,
                        "texts": [texts[i % len(texts)] for i in range(size)],
                        "num_labels": labels,
                    }
                result = measure_until_steady(spec, max_cv, noisy_retries)
                log.info("%s %s batch %d on %s: %s", job["model"], mode, size, device, result)
                rows.append(_row(job, mode, size, threads, device, result))
    frame = pd.DataFrame(rows)
    for col in ("gpu_peak_mb", "device", "latency_p50_ms", "latency_cv", "peak_rss_mb"):
        if col not in frame:
            frame[col] = None
    return frame


if __name__ == "__main__":
    logging.disable(logging.WARNING)
    print(json.dumps(_measure(json.loads(sys.stdin.read()))))
