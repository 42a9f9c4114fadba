"""Shared fixtures: the repository root, offline mode, and a Snakemake runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ptmeval.workflow import job_stats  # noqa: F401 (re-exported for the tests)

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")

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
