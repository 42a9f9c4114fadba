"""Decoder feature pooling: a linear probe on frozen features, mean over the real tokens
against the last real token.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/decoder_pooling.py \
        [--model smollm2-135m] [--tasks bbc-news reuters-r8] [--workdir /tmp/ptmeval-pooling]

Uses the default config (config/config.yaml) as the workflow does: the model's snapshot as
`download_model` writes it (the GGUF file converted once, then reused from --workdir), each
task's fixed split (`split_seed`; training pool 160, validation 64, test 120), max_length 48,
and `ptmeval.training.extract_features` with the hf-text option `pooling` set to each value.
The probe is the workflow's: logistic regression (L-BFGS) on features standardised with the
training pool's mean and standard deviation, trained on the whole pool; C is chosen on the
validation split from the default grid (ties: the smaller C), and C = 1 is shown too.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
C_GRID = (0.01, 0.1, 1.0, 10.0)


def probe_accuracy(features: pd.DataFrame, c: float) -> tuple[float, float]:
    """Validation and test accuracy of the probe trained on the training pool at C = c."""
    from sklearn.linear_model import LogisticRegression

    def split(name: str) -> tuple[np.ndarray, np.ndarray]:
        part = features[features["split"] == name]
        return np.stack(part["feature"].to_numpy()).astype(np.float64), part["label"].to_numpy()

    x, y = split("train")
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    clf = LogisticRegression(C=c, max_iter=2000).fit((x - mean) / scale, y)
    scores = []
    for name in ("validation", "test"):
        xs, ys = split(name)
        scores.append(float((clf.predict((xs - mean) / scale) == ys).mean()))
    return scores[0], scores[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--tasks", nargs="+", default=["bbc-news", "reuters-r8"])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ptmeval-pooling"))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    from ptmeval.config import parse_config
    from ptmeval.jobs import ModelJob
    from ptmeval.sources import download_model
    from ptmeval.tasks import prepare_task
    from ptmeval.training import extract_features

    cfg = parse_config(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))
    entry = cfg.model(args.model)
    snapshot = args.workdir / args.model / "snapshot"
    if not (snapshot / "config.json").exists():
        download_model(entry, snapshot)
    print(
        "| task | pooling | C (chosen on validation) | validation | test | test at C = 1 ", end=""
    )
    print("| features s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for slug in args.tasks:
        data, _ = prepare_task(cfg.task(slug), seed=cfg.split_seed)
        for pooling in ("mean", "last"):
            job = ModelJob(
                model=entry.slug,
                adapter=entry.adapter,
                method="linear_probe",
                options={**entry.options, "pooling": pooling},
                finetune=cfg.finetune_settings(entry.slug),
            )
            start = time.perf_counter()
            features = extract_features(job, snapshot, data, "pretrained", args.threads)
            wall = time.perf_counter() - start
            scored = {c: probe_accuracy(features, c) for c in C_GRID}
            best = max(C_GRID, key=lambda c: (scored[c][0], -c))
            print(
                f"| {slug} | {pooling} | {best:g} | {scored[best][0]:.3f} | {scored[best][1]:.3f} "
                f"| {scored[1.0][1]:.3f} | {wall:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
