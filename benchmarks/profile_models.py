"""Profile the default config's models: size, FLOPs, runtime (fresh subprocesses) and the
onnxruntime/eager and torch.compile/eager latency ratios at batch 1 and 32 (issue 3's profile,
issue 9's item 5).

    .venv/bin/python benchmarks/profile_models.py [--threads 2] [--out benchmarks/out/profile.md]

Snapshots are taken from results/download/ when the default run has made them (under this
config's settings key), otherwise made here. Prints a Markdown table (and writes it with
--out). On a GPU machine the runtime rows include the GPU automatically.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ptmeval.config import load_config
from ptmeval.export import check_module, input_names
from ptmeval.jobs import ModelJob
from ptmeval.plan import Plan
from ptmeval.profiling import profile_model
from ptmeval.runtime import measure_runtime
from ptmeval.sources import download_model
from ptmeval.training import load_for_task, seed_everything
from ptmeval.workflow import model_job, neural_models

ROOT = Path(__file__).resolve().parents[1]


def snapshot(cfg, slug: str, scratch: Path) -> tuple[Path, pd.DataFrame]:
    plan = Plan(cfg, root=ROOT / "results")
    manifest = Path(plan.path("download", "manifest", {"model": slug}))
    if manifest.exists():
        return manifest.parent / "snapshot", pd.read_parquet(manifest)
    return scratch / slug, download_model(cfg.model(slug), scratch / slug)


def ort_vs_eager(job: ModelJob, snap: Path, threads: int) -> dict:
    """Eager vs onnxruntime latency of the model (pretrained weights, 2-class head) at batch 1/32,
    side by side in this process, on synthetic full-size inputs."""
    from ptmeval.export import logits_module

    seed_everything(0)
    loaded = load_for_task(job, snap, 2, "pretrained")
    module = logits_module(loaded)
    arrays = [t.numpy() for t in loaded.example_batch(64).values()]
    target = np.zeros(64, dtype=int)
    row = check_module(module, arrays, target, input_names(loaded), threads, (1, 32))
    row.update(compiled_vs_eager(module, arrays, (1, 32)))
    keep = [
        "onnx_export",
        "max_abs_diff",
        "eager_latency_b1_ms",
        "onnx_latency_b1_ms",
        "onnx_vs_eager_b1",
        "eager_latency_b32_ms",
        "onnx_latency_b32_ms",
        "onnx_vs_eager_b32",
        "compile_s",
        "compiled_vs_eager_b1",
        "compiled_vs_eager_b32",
    ]
    return {k: row.get(k) for k in keep}


def compiled_vs_eager(module, arrays: list[np.ndarray], sizes: tuple[int, ...]) -> dict:
    """torch.compile (inductor, static shapes: one compilation per batch size) against eager,
    timed side by side; the compilation time is reported apart. A failure is recorded."""
    import torch

    from ptmeval.export import failure_reason, latency_ms

    out: dict = {"compile_s": 0.0}
    try:
        compiled = torch.compile(module, dynamic=False)
        for size in sizes:
            reps = -(-size // len(arrays[0]))
            batch = [torch.from_numpy(np.concatenate([a] * reps)[:size]) for a in arrays]
            with torch.inference_mode():
                start = time.perf_counter()
                compiled(*batch)
                out["compile_s"] += time.perf_counter() - start
                eager_ms = latency_ms(lambda b=batch: module(*b))
                compiled_ms = latency_ms(lambda b=batch: compiled(*b))
            out[f"compiled_vs_eager_b{size}"] = compiled_ms / eager_ms
    except Exception as err:  # inductor needs a C++ compiler; record why it failed
        out["compile"] = "failed: " + failure_reason(err)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    cfg = load_config(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()), ROOT)
    scratch = ROOT / "benchmarks" / "out" / "snapshots"
    rows = []
    for slug in neural_models(cfg):
        start = time.perf_counter()
        job = ModelJob.model_validate(model_job(cfg, slug, inference_only=True))
        snap, manifest = snapshot(cfg, slug, scratch)
        prof = profile_model(job, snap, manifest, args.threads).iloc[0]
        runtime = measure_runtime(
            job.model_dump(mode="json"),
            snap,
            "pretrained",
            [1, 8, 32],
            [8] if cfg.model(slug).method == "full" else [],
            args.threads,
            warmup=1,
            min_repeats=5,
            budget_s=2.0,
        )
        ort = ort_vs_eager(job, snap, args.threads)
        ok = runtime[runtime["status"] == "ok"].set_index(["mode", "batch_size"])
        rows.append(
            {
                "model": slug,
                "params": int(prof["params_total"]),
                "fwd GFLOPs": prof["flops_forward_per_sample"] / 1e9,
                "train GFLOPs": prof["flops_train_step_per_sample"] / 1e9,
                "counted vs analytical %": prof["flops_vs_analytical_pct"],
                "uncounted CPU time": prof["uncounted_time_share"],
                "b1 p50 ms": ok.loc[("inference", 1), "latency_p50_ms"],
                "b1 CV": ok.loc[("inference", 1), "latency_cv"],
                "b32 ex/s": ok.loc[("inference", 32), "throughput_per_s"],
                "b32 peak RSS MB": ok.loc[("inference", 32), "peak_rss_mb"],
                "train b8 ex/s": ok.loc[("train_step", 8), "throughput_per_s"]
                if ("train_step", 8) in ok.index
                else np.nan,
                "ORT/eager b1": ort["onnx_vs_eager_b1"],
                "ORT/eager b32": ort["onnx_vs_eager_b32"],
                "ORT max |Δ|": ort["max_abs_diff"],
                "compiled/eager b1": ort.get("compiled_vs_eager_b1"),
                "compiled/eager b32": ort.get("compiled_vs_eager_b32"),
                "compile s": ort.get("compile_s"),
                "seconds": time.perf_counter() - start,
            }
        )
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    text = table.to_markdown(index=False, floatfmt=".3g")
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
