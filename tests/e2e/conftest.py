"""The e2e run, shared by the e2e and browser tests (run once per session)."""

import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import REPO, run_snakemake

CONFIG = REPO / "tests" / "e2e" / "config.yaml"
TEXT_TASK = "bbc-news"
TEXT_MODELS = ("minilm-l6", "tfidf-logreg")


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
    """The e2e config with one seed and its text task only (MiniLM-L6 from both inits, TF-IDF):
    every rule of the DAG and 6 of its 16 fine-tunes, for the runs that test how the DAG runs
    — under kills, on SLURM — rather than what it finds. The image model's path is the same
    rules with other inputs; the e2e run covers it. Its results are the e2e run's seed-0 rows
    of TEXT_TASK."""
    data = yaml.safe_load(CONFIG.read_text())
    data["subsample"]["seeds"] = [0]
    data["tasks"] = [t for t in data["tasks"] if t["slug"] == TEXT_TASK]
    data["models"] = [m for m in data["models"] if m["slug"] in TEXT_MODELS]
    path = folder / "one-seed.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def one_seed_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of an e2e table that the one-seed config computes too."""
    return table[(table["seed"] == 0) & (table["task"] == TEXT_TASK)]
