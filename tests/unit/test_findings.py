"""A model's failing job writes failure records that the jobs after it pass on and the
aggregate sets apart; the next run retries them."""

from types import SimpleNamespace

import pandas as pd

from ptmeval.aggregate import concat_tables, failure_summary
from ptmeval.errors import ModelSourceError
from ptmeval.findings import retry_failed, run_as_finding, upstream_failure
from ptmeval.io import write_table


class Named(dict):
    """Snakemake's named input/output lists: items() by name, iteration over the paths."""

    def __iter__(self):
        return iter(self.values())


def job(inputs, outputs):
    return SimpleNamespace(input=Named(inputs), output=Named(outputs))


def test_a_failure_is_recorded_passed_on_summarised_and_retried(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    snapshot = "results/download/m/snapshot"
    download = job({}, {"snapshot": snapshot, "manifest": "results/download/m/manifest.parquet"})

    def broken():
        raise ModelSourceError("'x' has no config.json: not a Hugging Face model folder")

    run_as_finding(download, "download_model", "m", broken)  # recorded, not raised
    assert upstream_failure([snapshot])["stage"] == "download_model"
    ran = []
    profile = job({"snapshot": snapshot}, {"profile": "results/profile/m.parquet"})
    run_as_finding(profile, "profile_model", "m", lambda: ran.append(1))
    assert not ran  # its input is a failure record: it is passed on, the body never runs

    def crashes():
        raise ZeroDivisionError("a bug")

    other = job({}, {"metrics": "results/evaluate/n/t/1/0/scratch/metrics.parquet"})
    run_as_finding(other, "evaluate", "n", crashes)
    good = tmp_path / "good.parquet"
    write_table(pd.DataFrame({"model": ["ok"], "value": [0.9]}), good)
    failures: list[pd.DataFrame] = []
    paths = [good, "results/download/m/manifest.parquet", "results/profile/m.parquet"]
    table = concat_tables([*paths, "results/evaluate/n/t/1/0/scratch/metrics.parquet"], failures)
    assert list(table["model"]) == ["ok"]  # the records are set apart
    summary = failure_summary(failures).set_index("model")
    assert summary.at["m", "failed_stage"] == "download_model" and summary.at["m", "jobs"] == 2
    assert "no config.json" in summary.at["m", "reason"]
    assert summary.at["n", "reason"] == "ZeroDivisionError: a bug"
    removed = retry_failed("results")
    assert snapshot in removed and "results/profile/m.parquet" in removed
    assert not (tmp_path / snapshot).exists()
    # still asked for until recomputed (an interrupted run does not lose them) ...
    assert retry_failed("results") == removed
    # ... and dropped once a job has written a real table there
    write_table(pd.DataFrame({"model": ["m"]}), tmp_path / "results/profile/m.parquet")
    assert "results/profile/m.parquet" not in retry_failed("results")
