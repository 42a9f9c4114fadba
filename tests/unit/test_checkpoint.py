"""A fine-tune killed (SIGKILL) mid-way resumes from its checkpoint and ends bit-identical to an
uninterrupted run on CPU (same seeds, same thread count)."""

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file

from ptmeval.config import parse_config
from ptmeval.jobs import FinetuneJob
from ptmeval.sources import download_model
from ptmeval.subsample import subsample
from ptmeval.tasks import prepare_task
from ptmeval.training import finetune
from tests.conftest import finetune_job

pytestmark = pytest.mark.slow

CFG = parse_config(
    {
        "models": [
            {
                "slug": "r18",
                "adapter": "torchvision-image",
                "options": {"architecture": "resnet18"},
                "inits": ["scratch"],
            }
        ],
        "tasks": [
            {
                "slug": "digits",
                "source": {"kind": "packaged", "name": "digits"},
                "test_size": 40,
                "val_size": 20,
                "max_train": 96,
            }
        ],
        "finetune": {
            # fp32 pinned: compared with fp32 references (auto would pick bf16 on a CPU with
            # native bf16); precision auto is tested in test_compute and by the e2e run
            "precision": "fp32",
            "epochs": 3,
            "min_steps": 1,
            "eval_points": 6,
            "patience": 3,
            "batch_size": 8,
            "lr": 1e-3,
            "image_size": 32,
            "checkpoint_every_steps": 2,
        },
    }
)
JOB = finetune_job(CFG, "r18", "digits", seed=3, init="scratch")
CHILD = """
import sys, pandas as pd
from pathlib import Path
from ptmeval.jobs import FinetuneJob
from ptmeval.training import finetune
job = FinetuneJob.model_validate_json(Path(sys.argv[1]).read_text())
data = pd.read_parquet(sys.argv[2]); subset = pd.read_parquet(sys.argv[3])
finetune(job, data, subset, sys.argv[4], snapshot=Path(sys.argv[5]), threads=1, checkpoint_dir=sys.argv[6])
"""


def reference_run(tmp_path, job: FinetuneJob) -> tuple[Any, Any, pd.DataFrame, np.ndarray]:
    """The data, the subset and an uninterrupted fine-tune's history and test probabilities;
    the job, data, subset and snapshot written under `tmp_path` for CHILD."""
    data, _ = prepare_task(CFG.tasks[0], seed=0)
    subset = subsample(data, 1.0, seed=3)
    download_model(CFG.models[0], tmp_path / "snap")
    reference, reference_probs = finetune(
        job, data, subset, tmp_path / "ref", snapshot=tmp_path / "snap", threads=1
    )
    data.to_parquet(tmp_path / "data.parquet")
    subset.to_parquet(tmp_path / "subset.parquet")
    (tmp_path / "job.json").write_text(job.model_dump_json())
    return data, subset, reference, reference_probs


def kill_once_checkpointed(
    child: subprocess.Popen, ckpt: Path, ready: Callable[[dict[str, Any]], bool]
) -> None:
    """SIGKILL the fine-tune `child` as soon as its checkpoint's progress is `ready`."""
    deadline = time.time() + 300
    while time.time() < deadline and child.poll() is None:
        state = ckpt / "state.json"
        try:
            progress = json.loads(state.read_text())["progress"] if state.exists() else None
        except (OSError, ValueError):
            progress = None
        if progress and ready(progress):
            break
        time.sleep(0.05)
    assert child.poll() is None, "the child finished before it could be killed"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()


def test_killed_finetune_resumes_bit_identical(tmp_path):
    data, subset, reference, reference_probs = reference_run(tmp_path, JOB)
    ckpt = tmp_path / "ckpt"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD,
            str(tmp_path / "job.json"),
            str(tmp_path / "data.parquet"),
            str(tmp_path / "subset.parquet"),
            str(tmp_path / "killed"),
            str(tmp_path / "snap"),
            str(ckpt),
        ],
    )
    # kill it mid-epoch in the second pass, once the best weights so far are in the checkpoint
    kill_once_checkpointed(
        child, ckpt, lambda p: p["step"] >= 14 and p["best_step"] > 0 and p["position"] > 0
    )
    assert (ckpt / "state.json").exists()

    resumed, resumed_probs = finetune(
        JOB,
        data,
        subset,
        tmp_path / "resumed",
        snapshot=tmp_path / "snap",
        threads=1,
        checkpoint_dir=ckpt,
    )
    deterministic = [
        "step",
        "epoch",
        "train_loss",
        "val_accuracy",
        "val_macro_f1",
        "val_loss",
        "samples_seen",
        "best_step",
        "stop_reason",
    ]
    pd.testing.assert_frame_equal(resumed[deterministic], reference[deterministic])
    a = load_file(tmp_path / "ref" / "model.safetensors")
    b = load_file(tmp_path / "resumed" / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    np.testing.assert_array_equal(resumed_probs, reference_probs)  # the in-process test scores
    assert not ckpt.exists()  # removed once the job is done


def test_checkpoint_from_other_settings_is_ignored(tmp_path):
    data, _ = prepare_task(CFG.tasks[0], seed=0)
    subset = subsample(data, 0.25, seed=3)
    download_model(CFG.models[0], tmp_path / "snap")
    import torch

    from ptmeval.checkpoint import save_checkpoint

    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    save_checkpoint(
        tmp_path / "ckpt", "other-settings", model, opt, sched, torch.Generator(), {"epoch": 3}
    )
    history, _ = finetune(
        JOB,
        data,
        subset,
        tmp_path / "out",
        snapshot=tmp_path / "snap",
        threads=1,
        checkpoint_dir=tmp_path / "ckpt",
    )
    assert history["step"].iloc[0] == 2  # from the first step, not from the stale checkpoint
