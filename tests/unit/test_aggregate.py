"""The aggregate stage's entry point: it makes exactly the tables the workflow declares (the
rule's outputs come from ptmeval.plan.AGGREGATE_TABLES), also when every job of every model
failed, in which case the failures table is what the report has to show."""

import pandas as pd

from ptmeval.aggregate import aggregate
from ptmeval.findings import write_failure
from ptmeval.plan import AGGREGATE_TABLES

SETTINGS = {"models": {"m": "tfidf-logreg"}, "metric": "accuracy", "n_boot": 50}


def test_every_declared_table_is_made_even_from_nothing():
    tables = aggregate([], [], [], [], [], settings=SETTINGS)
    assert list(tables) and set(tables) == set(AGGREGATE_TABLES)
    assert all(isinstance(t, pd.DataFrame) for t in tables.values())
    assert tables["results"].empty and tables["failures"].empty


def test_a_model_whose_every_job_failed_is_a_failure_row(tmp_path):
    metrics = tmp_path / "evaluate/m/t/1/0/scratch/0123abcd/metrics.parquet"
    history = tmp_path / "finetune/m/t/1/0/scratch/0123abcd/history.parquet"
    write_failure({"metrics": str(metrics)}, "m", "evaluate", "finetune", "ValueError: boom")
    write_failure({"history": str(history)}, "m", "finetune", "finetune", "ValueError: boom")
    tables = aggregate([metrics], [history], [], [], [], settings=SETTINGS)
    assert set(tables) == set(AGGREGATE_TABLES)
    failures = tables["failures"]
    assert list(failures["model"]) == ["m"]
    assert failures["failed_stage"].iloc[0] == "finetune"
    assert "boom" in failures["reason"].iloc[0]
    assert tables["results"].empty
