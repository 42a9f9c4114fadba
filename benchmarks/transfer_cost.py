"""Transferability scores against the fine-tunes they stand in for (issue 9, item 4).

    .venv/bin/python benchmarks/transfer_cost.py [--workdir .]

Reads a finished run's cached tables (`make run` first): per model × task, the wall time of the
prediction (frozen-feature extraction + LogME/H-score/LEEP/NCE/k-NN, both measured inside their
jobs) against the summed wall time of that model's fine-tunes on the task (every size, seed and
init, from the fine-tune histories). Goal: at most 2% of the cost. For a linear-probe model the
features are computed once and shared with its probes, so they are counted on the fine-tune side
and the scores alone are the prediction's cost.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=ROOT)
    parser.add_argument("--run", default="default", help="the config's run_name")
    args = parser.parse_args()
    path = args.workdir / "results" / "aggregate" / args.run / "prediction_cost.parquet"
    if not path.exists():
        raise SystemExit(f"{path} is missing: run the workflow first (`make run`)")
    cost = pd.read_parquet(path)
    if cost.empty:
        raise SystemExit("no transferability scores in this run (no pretrained neural model)")
    print(
        "| model | features shared | task | features s | scores s | fine-tunes s "
        "| prediction / fine-tunes |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in cost.sort_values(["model", "task"]).itertuples():
        print(
            f"| {row.model} | {'yes' if row.shared_features else 'no'} | {row.task} "
            f"| {row.features_wall_s:.1f} | {row.scores_wall_s:.2f} | {row.finetune_wall_s:.1f} "
            f"| {row.cost_ratio:.2%} |"
        )
    total = cost["predict_wall_s"].sum() / cost["finetune_wall_s"].sum()
    print(f"\nAll pairs together: {total:.2%} of the fine-tuning cost (goal ≤ 2%).")
    print("Fine-tunes: every size, seed and init of the model on the task (training + validation")
    print("inside the job); where the features are shared (a linear probe), they count on the")
    print("fine-tune side and the scores alone are the prediction's cost.")


if __name__ == "__main__":
    main()
