"""The README's first run on one's own data, as written: a CSV of real texts at
data/my-texts.csv, config/examples/first-run.yaml, the plan, the estimate, the run, the report."""

import io
import os
from contextlib import redirect_stderr, redirect_stdout

import pandas as pd
import pytest

from ptmeval.cli import main
from ptmeval.config import TaskEntry
from ptmeval.tasks import load_source
from tests.conftest import REPO, job_file, job_stats, run_snakemake

pytestmark = pytest.mark.slow

CONFIG = REPO / "config" / "examples" / "first-run.yaml"


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """A user's folder: their CSV (300 BBC News articles, topic names as labels), then the
    README's three commands, in order."""
    work = tmp_path_factory.mktemp("first-run")
    task = TaskEntry.model_validate(
        {"slug": "bbc", "source": {"kind": "packaged", "name": "bbc-news"}}
    )
    raw = load_source(task.source)
    sample = raw.groupby("label_name").head(60)[["text", "label_name"]]
    (work / "data").mkdir()
    sample.rename(columns={"label_name": "label"}).to_csv(
        work / "data" / "my-texts.csv", index=False
    )
    plan = run_snakemake("-n", "--cores", "2", "--configfile", str(CONFIG), cwd=work)
    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    os.chdir(work)  # the user's folder: the config's data path is relative to it
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = main(["estimate", "--configfile", str(CONFIG), "--cache", "results"])
    finally:
        os.chdir(here)
    run = run_snakemake("--cores", "2", "--configfile", str(CONFIG), cwd=work)
    return work, plan, (code, out.getvalue() + err.getvalue()), run


def test_the_plan_and_the_estimate(first_run):
    _, plan, (code, said), _ = first_run
    assert plan.returncode == 0, plan.stderr[-3000:]
    stats = job_stats(plan.stdout + plan.stderr)
    assert stats["finetune"] == stats["evaluate"] == 2 * 2 * 2  # 2 models × 2 sizes × 2 seeds
    assert code == 0, said
    assert "finetune" in said and "total" in said


def test_the_run_ends_in_a_report(first_run):
    work, _, _, run = first_run
    assert run.returncode == 0, run.stderr[-3000:]
    html = (work / "reports" / "first-run" / "index.html").read_text()
    assert "First look: MiniLM-L6 against TF-IDF on my texts" in html
    assert 'id="recommendation"' in html and "my-texts" in html
    results = pd.read_parquet(work / "results" / "aggregate" / "first-run" / "results.parquet")
    assert set(results["model"]) == {"minilm-l6", "tfidf-logreg"}
    failures = pd.read_parquet(work / "results" / "aggregate" / "first-run" / "failures.parquet")
    assert failures.empty, failures
    # the labels are the CSV's topic names, five classes, and the models learnt them
    tasks = pd.read_parquet(job_file(work, "tasks/my-texts", "summary.parquet"))
    assert len(tasks) > 0
    best = results[(results["metric"] == "accuracy") & (results["fraction"] == 1.0)]
    assert best.groupby("model")["value"].mean().min() > 0.5, best
