"""The aggregate stage's entry point: it makes exactly the tables the workflow declares (the
rule's outputs come from ptmeval.plan.AGGREGATE_TABLES), also when every job of every model
failed, in which case the failures table is what the report has to show."""

import math

import pandas as pd

from ptmeval.aggregate import aggregate, at_grid_edge, pareto_points, with_tuning
from ptmeval.figures import pareto_figure
from ptmeval.findings import write_failure
from ptmeval.plan import AGGREGATE_TABLES
from ptmeval.report import VIEWS, Cell, render_view
from ptmeval.tables import CONTRACTS, interval_of

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


def _pareto_tables():
    curve = pd.DataFrame(
        [
            # model, init, n_train, metric, mean: "a" is better in accuracy, "b" in macro-F1
            ("t", "a", "pretrained", 100, "accuracy", 0.90),
            ("t", "a", "pretrained", 100, "macro_f1", 0.60),
            ("t", "a", "pretrained", 50, "macro_f1", 0.95),  # not the largest size
            ("t", "b", "pretrained", 100, "accuracy", 0.80),
            ("t", "b", "pretrained", 100, "macro_f1", 0.75),
            ("t", "b", "scratch", 100, "macro_f1", 0.20),  # not the best init
        ],
        columns=["task", "model", "init", "n_train", "metric", "mean"],
    )
    ranks = pd.DataFrame(
        {
            "task": ["t", "t"],
            "model": ["a", "b"],
            "accuracy": [0.90, 0.80],
            "accuracy_lo": [0.85, 0.74],
            "accuracy_hi": [0.95, 0.86],
        }
    )
    parts = pd.DataFrame(
        [
            (m, s, v)
            for m in ("a", "b")
            for s, v in (
                ("latency_b1", 1.0),
                ("inference_memory", 2.0),
                ("flops", 3.0),
                ("finetune_time", 4.0),
            )
        ],
        columns=["model", "submeasure", "raw"],
    )
    return {"learning_curve": curve, "ranks": ranks, "scorecard_parts": parts}


def test_the_pareto_view_plots_the_analysis_metric():
    tables = _pareto_tables()
    accuracy = pareto_points(tables, "accuracy").set_index("model")
    assert accuracy.loc["a", "score"] == 0.90 and accuracy.loc["a", "score_lo"] == 0.85
    assert set(accuracy["metric"]) == {"accuracy"}
    f1 = pareto_points(tables, "macro_f1").set_index("model")
    assert (f1.loc["a", "score"], f1.loc["b", "score"]) == (0.60, 0.75)  # largest size, best init
    assert f1["score_lo"].isna().all() and set(f1["metric"]) == {"macro_f1"}
    assert f1.loc["a", "latency_b1"] == 1.0
    assert "test macro_f1" in str(pareto_figure(f1.reset_index(), "t"))


def test_every_table_the_page_reads_is_in_its_contract():
    """The page's views take their formats from the table contracts: every column a view shows
    or a cell reads is in its table's contract, and every contract is of a declared table."""
    assert set(CONTRACTS) <= set(AGGREGATE_TABLES)
    for name, view in VIEWS.items():
        if callable(view.columns):  # columns made from the rows (timings per batch, structure)
            specs = view.columns(pd.DataFrame(columns=["latency_b1_p50_ms"]))
        else:
            specs = list(view.columns)
        reads = set()
        for spec in specs:
            if isinstance(spec, Cell):
                reads |= set(spec.reads)
            elif len(spec) == 2:
                reads.add(spec[0])
        unknown = reads - set(CONTRACTS.get(view.source, {}))
        assert not unknown, f"view {name} reads {sorted(unknown)} outside its table's contract"
        assert render_view(view, {})["rows"] == []  # an absent table is an empty view


def test_made_tables_have_their_contract_columns():
    tables = aggregate([], [], [], [], [], settings=SETTINGS)
    for name, contract in CONTRACTS.items():
        assert set(contract) <= set(tables[name].columns), name
    assert interval_of("accuracy") == ("accuracy_lo", "accuracy_hi")
    assert set(interval_of("diff")) <= set(CONTRACTS["pairwise"])


def _grid(scores, chosen, tuned=True):
    values = [1e-4, 3e-4, 1e-3][: len(scores)]
    return pd.DataFrame(
        {
            "value": values,
            "val_score": scores,
            "chosen": [v == chosen for v in values],
            "tuned": tuned,
        }
    )


def test_a_choice_at_the_grid_edge_is_flagged_only_when_the_score_still_rises():
    assert at_grid_edge(_grid([0.45, 0.80, 0.93], 1e-3))  # rising to the top: flagged
    assert at_grid_edge(_grid([0.90, 0.80, 0.70], 1e-4))  # rising to the bottom: flagged
    assert not at_grid_edge(_grid([0.80, 0.93, 0.90], 3e-4))  # inside the grid
    assert not at_grid_edge(_grid([0.78, 0.78, 0.78], 1e-4))  # a tie, chosen by the rule
    assert not at_grid_edge(_grid([0.9], 1e-4))  # one value: nothing to compare
    assert not at_grid_edge(_grid([math.nan, math.nan], 1e-4, tuned=False))  # fixed
    difficulty = pd.DataFrame({"model": ["m"], "task": ["t"], "init": ["pretrained"]})
    tuning = _grid([0.45, 0.80, 0.93], 1e-3).assign(
        model="m", task="t", init="pretrained", param="lr", spread=0.48
    )
    row = with_tuning(difficulty, tuning).iloc[0]
    assert row["hparam_value"] == 1e-3 and bool(row["hparam_at_edge"])


def test_a_runtime_latency_far_from_the_export_checks_is_marked_noisy():
    from ptmeval.aggregate import latency_cross_check
    from ptmeval.scorecard import noise_note

    runtime = pd.DataFrame(
        {
            "model": ["slow", "slow", "fine", "alone"],
            "mode": ["inference", "inference", "inference", "inference"],
            "batch_size": [1, 8, 1, 1],
            "latency_p50_ms": [1118.0, 2465.0, 20.8, 5.0],
            "latency_cv": [0.17, 0.19, 0.13, 0.1],
            "attempts": [1, 1, 2, 1],
            "noisy": [False, False, False, False],
        }
    )
    deployment = pd.DataFrame(
        {
            "model": ["slow", "slow", "fine", "fine"],
            "variant": ["fp32", "bf16", "fp32", "fp32"],
            "status": ["ok", "ok", "ok", "ok"],
            "latency_b1_p50_ms": [108.5, 42.9, 12.0, 14.0],
        }
    )
    out = latency_cross_check(runtime, deployment)
    assert out["noisy"].tolist() == [True, False, False, False]  # only batch 1 is compared
    assert out["export_b1_ms"].iloc[0] == 108.5 and out["export_b1_ms"].iloc[2] == 13.0
    assert math.isnan(out["export_b1_ms"].iloc[3])  # no export check: nothing to compare
    assert "10.3x the export check's fp32 latency (108 ms)" in noise_note(out.iloc[0])
    assert latency_cross_check(runtime, pd.DataFrame())["noisy"].tolist() == [False] * 4


def test_a_stages_peak_is_the_higher_of_snakemakes_sample_and_its_jobs_record(tmp_path):
    """Snakemake's benchmark samples a job's RSS every 30 s after its first 15 s, so it can miss
    a short-lived child; a job's own record of its peak (the export check's) raises the stage's
    maximum, and never lowers it."""
    from ptmeval.aggregate import run_tables

    benchmarks = []
    for stage, rss in (("export_check", 1200.0), ("export_check", 1100.0), ("finetune", 900.0)):
        path = tmp_path / "benchmarks" / stage / f"{len(benchmarks)}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"s\tmax_rss\n10.0\t{rss}\n")
        benchmarks.append(path)
    peaks = {"export_check": pd.Series([1989.0, None]), "finetune": pd.Series([500.0])}
    times = run_tables(benchmarks, None, [], [], peaks)["stage_times"].set_index("stage")
    assert times.loc["export_check", "max_rss_mb"] == 1989.0
    assert times.loc["finetune", "max_rss_mb"] == 900.0
    assert times.loc["export_check", "jobs"] == 2
