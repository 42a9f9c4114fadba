"""Shared fixtures: the repository root, offline mode, a Snakemake runner, and the fine-tune
job the workflow would build."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ptmeval.config import Config
from ptmeval.jobs import FinetuneJob
from ptmeval.workflow import (
    job_stats,  # noqa: F401 (re-exported for the tests)
    model_job,
)

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def finetune_job(
    cfg: Config,
    model: str,
    task: str,
    *,
    init: str | None = None,
    fraction: float = 1.0,
    seed: int = 0,
    **settings: object,
) -> FinetuneJob:
    """The fine-tune job the workflow builds for `model` on `task` (`ptmeval.workflow.model_job`:
    adapter, method, options, LoRA and the settings the model depends on), `settings`
    overriding fine-tune settings; `init` defaults to the model's first."""
    base = model_job(cfg, model)
    base["finetune"] = {**base["finetune"], **settings}
    return FinetuneJob(
        **base,
        task=task,
        fraction=fraction,
        seed=seed,
        init=init or cfg.model(model).init_list[0],
        metric=cfg.analysis.metric,
    )


def job_file(work: Path, job: str, name: str) -> Path:
    """The file `name` of the one job `job` ('<stage>/<identity…>') under `work`: jobs write
    into results/<stage>/<identity…>/<settings key>/ (ptmeval.plan)."""
    found = sorted((work / "results" / job).glob(f"*/{name}"))
    assert len(found) == 1, f"{len(found)} settings keys for results/{job}/*/{name}: {found}"
    return found[0]


def job_log(work: Path, job: str) -> Path:
    """The log of the one job `job` ('<rule>/<identity…>') under `work`: logs/<rule>/<identity…>/
    <settings key>.log."""
    found = sorted((work / "logs" / job).glob("*.log"))
    assert len(found) == 1, f"{len(found)} logs under logs/{job}: {found}"
    return found[0]


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def run_snakemake(
    *args: str, cwd: Path | None = None, timeout: int = 1800
) -> subprocess.CompletedProcess:
    """Run the repository's workflow (outputs under `cwd`), capturing its output."""
    cmd = [SNAKEMAKE, "-s", str(REPO / "Snakefile")]
    if cwd is not None:
        cmd += ["--directory", str(cwd)]
    return subprocess.run(
        [*cmd, *args], cwd=cwd or REPO, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
