"""A config with one broken model and two good ones ends in a report that names the broken one
(its failure is a finding, not the end of the run); the next run tries the failed jobs again
and recomputes nothing of the good models; a second run beside it keeps its own aggregate and
report."""

import pandas as pd
import pytest
import yaml

from tests.conftest import job_log, job_stats, run_snakemake

pytestmark = pytest.mark.slow


def config(tmp_path, run_name: str = "findings", broken_model: bool = True):
    broken = tmp_path / "not-a-model"
    broken.mkdir(exist_ok=True)
    (broken / "README.md").write_text("weights that never arrived\n")
    data = {
        "run_name": run_name,
        "models": [
            {
                "slug": "broken",
                "adapter": "hf-text",
                "source": {"kind": "path", "path": str(broken)},
            },
            {"slug": "tfidf-a", "adapter": "tfidf-logreg"},
            {"slug": "tfidf-b", "adapter": "tfidf-logreg", "options": {"ngram_max": 1}},
        ],
        "tasks": [
            {
                "slug": "bbc-news",
                "source": {"kind": "packaged", "name": "bbc-news"},
                "test_size": 60,
                "val_size": 20,
                "max_train": 40,
            }
        ],
        "subsample": {"fractions": [0.5, 1.0], "seeds": [0]},
        "finetune": {"c_grid": [1.0], "lr_grid": [1.0e-4], "min_steps": 2, "max_length": 16},
        "profile": {
            "inference_batch_sizes": [1],
            "train_batch_sizes": [2],
            "warmup": 0,
            "min_repeats": 2,
            "budget_s": 0.1,
        },
        "analysis": {"n_boot": 100},
    }
    if not broken_model:
        data["models"] = data["models"][1:]
    path = tmp_path / f"{run_name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_one_broken_model_is_a_finding_and_the_report_completes(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    cfg = config(tmp_path)
    result = run_snakemake("--cores", "2", "--configfile", str(cfg), cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    aggregate = work / "results" / "aggregate" / "findings"
    failures = pd.read_parquet(aggregate / "failures.parquet").set_index("model")
    assert list(failures.index) == ["broken"]
    assert failures.at["broken", "failed_stage"] == "download_model"
    assert "no config.json" in failures.at["broken", "reason"]
    assert failures.at["broken", "jobs"] > 5  # everything after the download, recorded
    results = pd.read_parquet(aggregate / "results.parquet")
    assert set(results["model"]) == {"tfidf-a", "tfidf-b"}
    html = (work / "reports" / "findings" / "index.html").read_text()
    paragraph = html[html.index('id="recommendation"') :].split("</p>")[0]
    assert "broken (download_model failed:" in paragraph and "On bbc-news" in paragraph
    assert 'id="failures"' in html
    log = job_log(work, "download_model/broken").read_text()
    assert "no config.json" in log

    good = {
        p: p.stat().st_mtime_ns
        for p in (work / "results" / "finetune").rglob("history.parquet")
        if "broken" not in p.parts
    }
    again = run_snakemake("--cores", "2", "--configfile", str(cfg), cwd=work)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "outputs of failed jobs" in again.stderr and "trying them again" in again.stderr
    stats = job_stats(again.stderr + again.stdout)
    assert stats["download_model"] == 1 and "prepare_task" not in stats
    assert all(p.stat().st_mtime_ns == t for p, t in good.items())  # the good models: kept

    # A second run (another run name, the good models alone, the same settings) beside it: its
    # own aggregate and report, every job's result shared, nothing of the first run touched;
    # switching back to the first recomputes none of the good models' jobs.
    other = config(tmp_path, run_name="good-only", broken_model=False)
    first = {
        p: p.stat().st_mtime_ns
        for p in [*aggregate.glob("*.parquet"), work / "reports" / "findings" / "index.html"]
    }
    beside = run_snakemake("--cores", "2", "--configfile", str(other), cwd=work)
    assert beside.returncode == 0, beside.stderr[-3000:]
    ran = job_stats(beside.stderr + beside.stdout)
    assert set(ran) - {"all"} == {"estimate_cost", "aggregate", "render_report"}, ran
    assert all(p.stat().st_mtime_ns == t for p, t in first.items())
    theirs = work / "results" / "aggregate" / "good-only"
    assert pd.read_parquet(theirs / "failures.parquet").empty
    assert set(pd.read_parquet(theirs / "results.parquet")["model"]) == {"tfidf-a", "tfidf-b"}
    assert (work / "reports" / "good-only" / "index.html").exists()
    shared = {
        p: p.stat().st_mtime_ns
        for p in (work / "results").rglob("*.parquet")
        if not {"broken", "aggregate", "estimate", ".failed"} & set(p.parts)
    }
    back = run_snakemake("--cores", "2", "--configfile", str(cfg), cwd=work)
    assert back.returncode == 0, back.stderr[-3000:]  # (it tries the broken model once more)
    assert len(shared) > 20 and all(p.stat().st_mtime_ns == t for p, t in shared.items())

    # A third run, the same slugs with another setting of one model (tfidf-b's n-grams): only
    # that model's jobs run, into folders of their own (a new settings key), nothing of the
    # others is overwritten; switching back to the second run then recomputes nothing at all.
    tuned = yaml.safe_load(other.read_text())
    tuned["run_name"] = "tuned"
    tuned["models"][1]["options"] = {"ngram_max": 2}
    tuned_cfg = tmp_path / "tuned.yaml"
    tuned_cfg.write_text(yaml.safe_dump(tuned))
    before = {
        p: p.stat().st_mtime_ns
        for p in [*(work / "results").rglob("*.parquet"), *(work / "reports").rglob("*.html")]
        if ".failed" not in p.parts
    }
    changed = run_snakemake("--cores", "2", "--configfile", str(tuned_cfg), cwd=work)
    assert changed.returncode == 0, changed.stderr[-3000:]
    ran = job_stats(changed.stderr + changed.stdout)
    ran.pop("all", None)
    assert ran == {
        "select_hparams": 1,
        "finetune": 2,
        "evaluate": 2,
        "measure_runtime": 1,
        "estimate_cost": 1,
        "aggregate": 1,
        "render_report": 1,
    }, ran
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())
    fits = work / "results" / "finetune"
    assert len(list((fits / "tfidf-b/bbc-news/1/0/scratch").iterdir())) == 2  # both settings
    assert len(list((fits / "tfidf-a/bbc-news/1/0/scratch").iterdir())) == 1  # shared
    switched = run_snakemake("--cores", "2", "--configfile", str(other), cwd=work)
    assert switched.returncode == 0, switched.stderr[-3000:]
    assert job_stats(switched.stderr + switched.stdout) == {}, switched.stderr[-3000:]
    assert "Nothing to be done" in switched.stderr + switched.stdout
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())
