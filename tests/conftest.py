"""Shared fixtures: the repository root, offline mode, a Snakemake runner, and the fine-tune
job the workflow would build."""

from __future__ import annotations

import ast
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


def e2e_run_readers(root: Path) -> set[str]:
    """The test modules (paths from `root`) whose functions, tests or fixtures, take the
    session's e2e run (`e2e_workdir`)."""
    return {
        str(path.relative_to(root))
        for path in (root / "tests").rglob("test_*.py")
        if any(
            arg.arg == "e2e_workdir"
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.FunctionDef)
            for arg in node.args.args
        )
    }


def xdist_scope(nodeid: str, e2e_readers: set[str]) -> str:
    """The unit of work a test belongs to under `make test`'s two workers: its module, or one
    unit for all the e2e run's readers."""
    module = nodeid.split("::", 1)[0]
    return "e2e-workdir" if module in e2e_readers else module


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """How `make test` (`pytest -n 2 --dist loadfile`) shares the tests between its two workers.
    A worker runs each test module whole, so a module's fixtures (a workflow run, a cluster)
    run once. The modules that read the session's e2e run (`e2e_workdir`) are one unit: some of
    their tests change that workdir and restore it, so they run on one worker in the order they
    have without xdist, and the run is made once. Units go out in the order they are collected
    (the e2e modules, the slowest, first), not by their number of tests."""
    from xdist.scheduler import LoadFileScheduling

    readers = e2e_run_readers(config.rootpath)

    class Scheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_scope(nodeid, readers)

    config.option.loadscopereorder = False
    return Scheduling(config, log)
