"""`measure_runtime`: latency, throughput and peak memory, each measured in a fresh process.

Every (mode, batch size) is measured by `python -m ptmeval.runtime` in its own subprocess, so
that one measurement's allocations cannot inflate another's peak memory: the child loads the
model, pins its threads, runs warm-up iterations, then repeats until it has `min_repeats`
timings and `budget_s` seconds (at most `max_repeats`), and reports the latency percentiles,
the coefficient of variation, throughput, the resident set size after loading and its peak
(VmHWM of the child's own process image), and on a GPU `torch.cuda.max_memory_allocated`. A child that is killed (e.g.
out of memory) or fails is recorded as a row with its reason, not raised.

Inference runs `logits` under `torch.inference_mode`; a training step is forward, cross-entropy,
backward and an AdamW update of every weight (the cost of full fine-tuning), on full-size
synthetic inputs (max_length tokens / image_size² pixels).
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)


def _status_mb(field: str) -> float:
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
    import torch

    from ptmeval.jobs import ModelJob
    from ptmeval.training import load_for_task, seed_everything

    torch.set_num_threads(spec["threads"])
    seed_everything(0)
    job = ModelJob.model_validate(spec["job"])
    device = spec.get("device", "cpu")
    loaded = load_for_task(job, Path(spec["snapshot"]), 2, spec["init"])
    model = loaded.model.to(device)
    batch = {k: v.to(device) for k, v in loaded.example_batch(spec["batch_size"]).items()}
    rss_loaded = _status_mb("VmRSS")
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    if spec["mode"] == "train":
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
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
    mean = statistics.fmean(times)
    quantiles = (
        statistics.quantiles(times, n=10, method="inclusive") if len(times) > 1 else times * 9
    )
    result = {
        "status": "ok",
        "reason": "",
        "repeats": len(times),
        "latency_p50_ms": 1000 * statistics.median(times),
        "latency_p90_ms": 1000 * quantiles[8],
        "latency_mean_ms": 1000 * mean,
        "latency_cv": statistics.stdev(times) / mean if len(times) > 1 else float("nan"),
        "throughput_per_s": spec["batch_size"] / mean,
        "rss_loaded_mb": rss_loaded,
        "peak_rss_mb": _status_mb("VmHWM"),
        "gpu_peak_mb": (
            torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None
        ),
        "device": torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu",
    }
    return result


def measure_in_subprocess(spec: dict[str, Any], timeout_s: float = 900) -> dict[str, Any]:
    """Run one measurement in a fresh Python process; failures come back as a status."""
    env = dict(os.environ, OMP_NUM_THREADS=str(spec["threads"]))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "ptmeval.runtime"],
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


def measure_runtime(
    job: dict[str, Any],
    snapshot: str | Path,
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
) -> pd.DataFrame:
    """One row per device × mode × batch size."""
    if devices is None:
        devices = ["cpu"]
        try:
            import torch

            if torch.cuda.is_available():
                devices.append("cuda")
        except ImportError:
            pass
    rows = []
    for device in devices:
        for mode, sizes in (
            ("inference", inference_batch_sizes),
            ("train_step", train_batch_sizes),
        ):
            for size in sizes:
                spec = {
                    "job": job,
                    "snapshot": str(snapshot),
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
                result = measure_in_subprocess(spec)
                log.info("%s %s batch %d on %s: %s", job["model"], mode, size, device, result)
                rows.append(
                    {
                        "model": job["model"],
                        "mode": mode,
                        "batch_size": size,
                        "threads": threads,
                        "device_kind": device,
                        **result,
                    }
                )
    frame = pd.DataFrame(rows)
    for col in ("gpu_peak_mb", "device", "latency_p50_ms", "peak_rss_mb"):
        if col not in frame:
            frame[col] = None
    return frame


if __name__ == "__main__":
    logging.disable(logging.WARNING)
    print(json.dumps(_measure(json.loads(sys.stdin.read()))))
