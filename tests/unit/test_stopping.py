"""A job stops when its run is stopped (ptmeval.stopping): with its Snakemake killed, any job
at once with its own child processes instead of living on as an orphan; a fine-tune — its
Snakemake killed or Ctrl-C — after checkpointing its current step, from which the next run
resumes bit-identical."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ptmeval.training import finetune
from tests.system import alive
from tests.unit.test_checkpoint import CHILD, JOB, reference_run

# The parent stands in for Snakemake: it starts the job as its child and is then SIGKILLed.
PARENT = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", *sys.argv[1:]])
print(child.pid, flush=True)
child.wait()
"""
JOB_WITH_A_CHILD = """
import subprocess, sys, time
from pathlib import Path
from ptmeval.logs import log_to
log_to(sys.argv[1])
sleeper = subprocess.Popen(["sleep", "300"])
Path(sys.argv[2]).write_text(str(sleeper.pid))
time.sleep(300)
"""


def start(args: list[str]) -> tuple[subprocess.Popen, int]:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, *args], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    return parent, int(parent.stdout.readline())


def kill_parent_and_wait(parent: subprocess.Popen, pids: list[int], within_s: float) -> None:
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.time() + within_s
    while time.time() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.1)
    assert not [pid for pid in pids if alive(pid)], "the orphaned job (or its child) lives on"


def test_a_job_stops_with_its_children_when_its_snakemake_is_killed(tmp_path):
    log, sleeper_file = tmp_path / "job.log", tmp_path / "sleeper.pid"
    parent, job = start([JOB_WITH_A_CHILD, str(log), str(sleeper_file)])
    deadline = time.time() + 60
    while not sleeper_file.exists() and time.time() < deadline:
        time.sleep(0.1)
    sleeper = int(sleeper_file.read_text())
    assert alive(job) and alive(sleeper)
    kill_parent_and_wait(parent, [job, sleeper], within_s=15)
    assert f"Snakemake (pid {parent.pid}), which started this job, is gone" in log.read_text()


def test_only_a_rules_job_takes_over_ctrl_c():
    """The library called from a notebook keeps Python's Ctrl-C (KeyboardInterrupt) inside the
    training loop; a rule's job (log_to called) records it and stops after the step."""
    probe = """
import signal, sys
from ptmeval import stopping
if sys.argv[1] == "job":
    stopping.watch_parent()
before = signal.getsignal(signal.SIGINT)
with stopping.cooperating():
    inside = signal.getsignal(signal.SIGINT)
print(inside is before, signal.getsignal(signal.SIGINT) is before)
"""
    said = {
        mode: subprocess.run(
            [sys.executable, "-c", probe, mode], capture_output=True, text=True, check=True
        ).stdout.split()
        for mode in ("library", "job")
    }
    assert said == {"library": ["True", "True"], "job": ["False", "True"]}


def launch(tmp_path, ckpt: Path, log: Path) -> tuple[subprocess.Popen, int]:
    """The fine-tune of test_checkpoint's CHILD, its log set up as a rule script's is."""
    logged = "from ptmeval.logs import log_to; log_to(sys.argv[7])\n"
    return start(
        [
            CHILD.replace("from pathlib import Path\n", "from pathlib import Path\n" + logged),
            *(str(tmp_path / name) for name in ("job.json", "data.parquet", "subset.parquet")),
            str(tmp_path / "stopped"),
            str(tmp_path / "snap"),
            str(ckpt),
            str(log),
        ]
    )


def wait_for(condition, child: int, within_s: float = 300) -> None:
    deadline = time.time() + within_s
    while time.time() < deadline and alive(child) and not condition():
        time.sleep(0.02)
    assert alive(child), "the fine-tune finished before it could be stopped"


def checkpointed_step(ckpt: Path) -> int:
    return json.loads((ckpt / "state.json").read_text())["progress"]["step"]


@pytest.mark.slow
def test_a_stopped_finetune_checkpoints_its_step_and_the_next_run_resumes(tmp_path):
    """Stopped twice — its Snakemake killed, then Ctrl-C (SIGINT) — each time between the
    validation points at which it checkpoints anyway; it then ends as an uninterrupted run."""
    job = JOB.model_copy(
        update={"finetune": JOB.finetune.model_copy(update={"checkpoint_every_steps": 0})}
    )  # checkpoints only at validation points (every 6 steps) — and when stopped
    data, subset, reference, reference_probs = reference_run(tmp_path, job)
    ckpt = tmp_path / "ckpt"

    # 1. its Snakemake SIGKILLed after the first validation point's checkpoint
    log = tmp_path / "first.log"
    parent, child = launch(tmp_path, ckpt, log)
    wait_for(lambda: (ckpt / "state.json").exists(), child)
    kill_parent_and_wait(parent, [child], within_s=60)
    said = log.read_text()
    assert "which started this job, is gone: the job stops after its current step" in said
    first = checkpointed_step(ckpt)
    assert f"is gone; checkpointed step {first} to resume from" in said
    assert not (tmp_path / "stopped" / "model.safetensors").exists()  # no outputs written

    # 2. the next run resumes there; Ctrl-C once it trains
    log = tmp_path / "second.log"
    parent, child = launch(tmp_path, ckpt, log)
    wait_for(lambda: log.exists() and "validation every" in log.read_text(), child)
    time.sleep(0.5)
    os.kill(child, signal.SIGINT)
    wait_for(lambda: not alive(child), parent.pid, within_s=60)
    parent.wait()
    said = log.read_text()
    assert f"resumed from {ckpt} at step {first}" in said
    second = checkpointed_step(ckpt)
    assert second > first
    assert f"interrupted (Ctrl-C); checkpointed step {second} to resume from" in said

    resumed, resumed_probs = finetune(
        job,
        data,
        subset,
        tmp_path / "resumed",
        snapshot=tmp_path / "snap",
        threads=1,
        checkpoint_dir=ckpt,
    )
    columns = ["step", "train_loss", "val_accuracy", "val_loss", "best_step", "stop_reason"]
    pd.testing.assert_frame_equal(resumed[columns], reference[columns])
    np.testing.assert_array_equal(resumed_probs, reference_probs)
