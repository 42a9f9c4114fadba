"""The e2e run, shared by the e2e and browser tests (run once per session)."""

import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, run_snakemake

CONFIG = REPO / "tests" / "e2e" / "config.yaml"


@pytest.fixture(scope="session")
def e2e_workdir(tmp_path_factory):
    work = tmp_path_factory.mktemp("e2e")
    start = time.perf_counter()
    result = run_snakemake("--cores", "2", "--configfile", str(CONFIG), cwd=work)
    elapsed = time.perf_counter() - start
    assert result.returncode == 0, result.stderr[-5000:]
    (work / "snakemake.stderr").write_text(result.stderr)
    (work / "wall_s.txt").write_text(f"{elapsed:.1f}")
    return work


def one_seed_config(folder: Path) -> Path:
    """The e2e config with one seed: every rule of the DAG, half its fine-tunes (the runs that
    test how the DAG runs — under kills, on SLURM — rather than what it finds). Its results are
    the e2e run's seed-0 rows."""
    data = yaml.safe_load(CONFIG.read_text())
    data["subsample"]["seeds"] = [0]
    path = folder / "one-seed.yaml"
    path.write_text(yaml.safe_dump(data))
    return path
