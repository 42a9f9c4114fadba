"""Per-job overhead and disk (issue 13, item 3): job wall time against the compute inside it,
per rule, for finished runs side by side (e.g. before and after a change, same config).

    .venv/bin/python benchmarks/job_overhead.py BEFORE_WORKDIR AFTER_WORKDIR [...]

Each workdir holds a finished run (`results/`, with Snakemake's benchmark files). Per rule:
jobs, the sum of the jobs' wall times (Snakemake's benchmark files), the sum of the compute the
jobs record themselves (fine-tunes: training and validation, the histories' `wall_s` +
`val_wall_s`; selection runs: the tune tables' `wall_s`; feature extraction: `extract_wall_s`),
and the rest — process start-up, imports, loading and writing — as overhead. Rules that record
no compute count whole (their work is small or is itself bookkeeping). Also the run's wall time
(`wall_s.txt`, written by the e2e fixture) and the disk used by `results/`.
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import pandas as pd


def job_walls(results: Path) -> pd.DataFrame:
    rows = []
    for tsv in (results / "benchmarks").rglob("*.tsv"):
        rule = tsv.relative_to(results / "benchmarks").parts[0]
        rows.append({"rule": rule, "wall_s": float(pd.read_csv(tsv, sep="\t")["s"].iloc[0])})
    return pd.DataFrame(rows)


def recorded_compute(results: Path) -> dict[str, float]:
    """Seconds of compute the jobs of each rule record in their own tables."""
    out = {"finetune": 0.0, "select_hparams": 0.0, "extract_features": 0.0}
    for path in (results / "finetune").rglob("history.parquet"):
        h = pd.read_parquet(path, columns=["wall_s", "val_wall_s"])
        out["finetune"] += float(h["wall_s"].max() + h["val_wall_s"].max())
    for path in (results / "tune").rglob("*.parquet"):
        out["select_hparams"] += float(pd.read_parquet(path, columns=["wall_s"])["wall_s"].sum())
    for path in (results / "features").rglob("*.parquet"):
        f = pd.read_parquet(path, columns=["extract_wall_s"])
        out["extract_features"] += float(f["extract_wall_s"].iloc[0])
    return out


def disk_mb(path: Path) -> float:
    out = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0]) / 1024


def summary(work: Path) -> tuple[pd.DataFrame, dict[str, float]]:
    results = work / "results"
    walls = job_walls(results)
    table = walls.groupby("rule")["wall_s"].agg(jobs="count", job_wall_s="sum")
    compute = recorded_compute(results)
    table["compute_s"] = [compute.get(rule, 0.0) for rule in table.index]
    table["overhead_s"] = table["job_wall_s"] - table["compute_s"]
    table["per_job_overhead_s"] = table["overhead_s"] / table["jobs"]
    weights = sum(f.stat().st_size for f in (results / "finetune").rglob("model.safetensors"))
    wall_file = work / "wall_s.txt"
    totals = {
        "jobs": float(table["jobs"].sum()),
        "job_wall_s": float(table["job_wall_s"].sum()),
        "compute_s": float(table["compute_s"].sum()),
        "overhead_s": float(table["overhead_s"].sum()),
        "run_wall_s": float(wall_file.read_text()) if wall_file.exists() else float("nan"),
        "results_mb": disk_mb(results),
        "finetuned_weights_mb": weights / 2**20,
    }
    return table, totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdirs", nargs="+", type=Path)
    args = parser.parse_args()
    all_totals = {}
    for work in args.workdirs:
        table, totals = summary(work)
        all_totals[str(work)] = totals
        print(f"\n## {work}\n")
        print(table.round(1).to_markdown())
    print("\n## totals\n")
    frame = pd.DataFrame(all_totals).T
    frame["overhead_share_of_job_wall"] = frame["overhead_s"] / frame["job_wall_s"]
    print(frame.round(3).to_markdown())


if __name__ == "__main__":
    main()
