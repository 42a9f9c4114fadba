"""The real DAG on the e2e config (packaged MiniLM-L6, TF-IDF, EfficientNet-Lite0 on packaged
BBC News and digits), then rerun behaviour. Tests run in file order and share one directory."""

import re
import shutil

import pandas as pd
import pytest
import yaml

from ptmeval.compute import cpu_has_bf16
from ptmeval.io import read_provenance
from tests.conftest import REPO, job_file, job_stats, run_snakemake

pytestmark = pytest.mark.slow
CONFIG = REPO / "tests" / "e2e" / "config.yaml"


@pytest.fixture(scope="module")
def workdir(e2e_workdir):
    return e2e_workdir


def table(work, name):
    return pd.read_parquet(work / "results" / "aggregate" / "e2e" / f"{name}.parquet")


def test_every_job_has_results(workdir):
    results = table(workdir, "results")
    jobs = results.groupby(["model", "task", "fraction", "seed", "init"]).size()
    # minilm (2 inits) + tfidf on bbc-news, efficientnet probe on digits; 2 sizes × 2 seeds
    assert len(jobs) == (2 + 1 + 1) * 2 * 2
    assert (jobs == 3).all()  # accuracy, macro_f1, ece
    assert results["value"].between(0, 1).all()
    assert set(results["n_train"]) == {48, 96}
    preds = pd.read_parquet(
        job_file(workdir, "evaluate/minilm-l6/bbc-news/1/0/pretrained", "predictions.parquet")
    )
    assert len(preds) == 100 and preds["row_id"].is_unique


def test_pretrained_minilm_beats_its_scratch_twin(workdir):
    curve = table(workdir, "learning_curve")
    acc = curve[
        (curve["model"] == "minilm-l6") & (curve["metric"] == "accuracy") & (curve["n_train"] == 96)
    ]
    by_init = acc.set_index("init")["mean"]
    assert by_init["pretrained"] > by_init["scratch"] + 0.2, by_init


def test_baseline_and_image_model_learn(workdir):
    curve = table(workdir, "learning_curve")
    acc = curve[(curve["metric"] == "accuracy") & (curve["n_train"] == 96)].set_index("model")[
        "mean"
    ]
    assert acc["tfidf-logreg"] > 0.6  # 5 classes: chance is 0.2
    assert acc["efficientnet-lite0"] > 0.3  # 10 classes: chance is 0.1


def test_profile_and_provenance(workdir):
    profile = table(workdir, "profile").set_index("model")
    # profiled with a 2-class head (the head is a negligible share of the model)
    assert profile.loc["minilm-l6", "params_total"] == 22_713_986
    assert profile.loc["minilm-l6", "flops_forward_per_sample"] > 1e8
    assert (
        profile.loc["efficientnet-lite0", "params_trainable"]
        < profile.loc["efficientnet-lite0", "params_total"]
    )
    prov = read_provenance(
        job_file(workdir, "finetune/minilm-l6/bbc-news/1/0/pretrained", "history.parquet")
    )
    assert prov["params"]["seed"] == 0 and prov["params"]["init"] == "pretrained"
    history = table(workdir, "history")
    full = history[(history["method"] == "full") & (history["model"] == "minilm-l6")]
    # the protocol: at least min_steps (12) steps unless stopped early, one row per validation
    # point, and the reason it stopped
    assert set(full["stop_reason"]) <= {"budget", "early_stopping", "diverged"}
    per_job = full.groupby(["model", "task", "fraction", "seed", "init"])
    assert (per_job["step"].max() >= 6).all() and (per_job.size() >= 2).all()
    assert ((full["best_step"] > 0) & (full["best_step"] <= full["budget_steps"])).all()
    assert (full["budget_steps"] >= 12).all()


def test_only_the_weights_a_later_stage_reads_are_kept(workdir):
    """Test scores are computed inside the fine-tune job; of the full fine-tunes' weights only
    the export check's (largest size, first seed, pretrained) are written."""
    finetune = workdir / "results" / "finetune"
    kept = {p.parents[2].relative_to(finetune) for p in finetune.rglob("model.safetensors")}
    assert {str(p) for p in kept} == {"minilm-l6/bbc-news/1/0/pretrained"}
    assert job_file(
        workdir, "finetune/minilm-l6/bbc-news/0.5/0/pretrained", "model/WEIGHTS_NOT_KEPT.txt"
    ).exists()
    probs = pd.read_parquet(
        job_file(workdir, "finetune/minilm-l6/bbc-news/1/1/scratch", "test_probs.parquet")
    )
    assert len(probs) == 100 and (probs["n_train"] == 96).all()
    history = table(workdir, "history")
    neural = history[history["model"] == "minilm-l6"]
    # resolved on the machine that ran the job: the CPU (no GPU here), in its native precision
    # (fp32 without AVX512-BF16 or AMX); TF-IDF and probes have no device
    assert set(neural["device"]) == {"cpu"}
    assert set(neural["precision"]) == {"bf16" if cpu_has_bf16() else "fp32"}
    assert history[history["model"] != "minilm-l6"]["device"].isna().all()
    html = (workdir / "reports" / "e2e" / "index.html").read_text()
    assert re.search(r"full fine-tunes ran on</th><td>cpu, (fp32|bf16) \(8 runs\)", html)


def test_hyperparameters_chosen_on_validation(workdir):
    tuning = table(workdir, "tuning")
    # one selection per model × task × init, each over its 2-value grid, at the largest size
    chosen = tuning[tuning["chosen"]]
    assert len(chosen) == 4 and chosen["tuned"].all()
    assert set(tuning[tuning["param"] == "lr"]["value"]) == {1.0e-4, 3.0e-4}
    assert set(tuning[tuning["param"] == "c"]["value"]) == {0.1, 1.0}
    assert (tuning["n_train"] == 96).all() and (tuning["seed"] == 0).all()
    for (model, task, init), group in tuning.groupby(["model", "task", "init"]):
        best = group.sort_values(["val_score", "val_loss"], ascending=[False, True]).iloc[0]
        assert best["chosen"], (model, task, init)
    history = table(workdir, "history")
    lrs = history[(history["model"] == "minilm-l6") & (history["init"] == "pretrained")]["lr"]
    picked = chosen[(chosen["model"] == "minilm-l6") & (chosen["init"] == "pretrained")]
    assert set(lrs) == {picked["value"].item()}  # every size and seed uses the choice
    difficulty = table(workdir, "difficulty")
    assert {"hparam_value", "hparam_spread"} <= set(difficulty.columns)


def test_profile_runtime_export_and_transfer_tables(workdir):
    runtime = table(workdir, "runtime")
    assert set(runtime["status"]) == {"ok"}
    minilm = runtime[runtime["model"] == "minilm-l6"]
    assert set(minilm["mode"]) == {"inference", "train_step"}
    assert (minilm["latency_p50_ms"] > 0).all() and (minilm["peak_rss_mb"] > 100).all()
    tfidf = runtime[runtime["model"] == "tfidf-logreg"]  # inference only, on CPU
    assert set(tfidf["mode"]) == {"inference"} and set(tfidf["device_kind"]) == {"cpu"}
    assert set(tfidf["batch_size"]) == {1, 16} and (tfidf["latency_p50_ms"] > 0).all()
    assert (runtime["attempts"] >= 1).all() and runtime["load_1min"].notna().all()
    export = table(workdir, "export").set_index("model")
    assert export.loc["minilm-l6", "onnxruntime"] == "ok"
    assert export.loc["minilm-l6", "max_abs_diff"] < 1e-3
    assert abs(export.loc["minilm-l6", "accuracy_change"]) <= 0.01
    # the deployment variants of both exported models (a fine-tune and a linear probe), each
    # built and gated; bf16 only where this CPU computes it natively
    variants = table(workdir, "deployment")
    assert set(variants["model"]) == {"minilm-l6", "efficientnet-lite0"}
    from ptmeval.compute import cpu_has_bf16

    for model, rows in variants.groupby("model"):
        by = rows.set_index("variant")
        assert list(by.index) == ["fp32", "bf16", "int8-dynamic", "onnx-fp32", "onnx-int8"]
        built = ["fp32", "int8-dynamic", "onnx-fp32", "onnx-int8"]
        built += ["bf16"] if cpu_has_bf16() else []
        assert (by.loc[built, "status"] == "ok").all(), (model, by[["status", "reason"]])
        assert by.loc["fp32", "passes"] and by.loc["onnx-fp32", "passes"], model
        assert by.loc["onnx-fp32", "max_abs_logit_diff"] < 1e-3
        assert by.loc["onnx-fp32", "peak_rss_mb"] < by.loc["fp32", "peak_rss_mb"]  # no torch
        # int8 shrinks the Linear/MatMul weights: MiniLM's; a linear probe's head stays fp32 and
        # EfficientNet's backbone is convolutions, so its int8 file is its fp32 file
        assert by.loc["onnx-int8", "disk_mb"] <= 1.01 * by.loc["onnx-fp32", "disk_mb"]
        if model == "minilm-l6":
            assert by.loc["onnx-int8", "disk_mb"] < 0.8 * by.loc["onnx-fp32", "disk_mb"]
        assert (by.loc[built, "latency_b16_p90_ms"] > 0).all()
        assert by["n_test"].eq(100).all()
    transfer = table(workdir, "transfer").set_index("model")
    assert transfer.loc["efficientnet-lite0", "leep"] < 0  # it has an ImageNet head
    assert pd.isna(transfer.loc["minilm-l6", "leep"])  # an encoder has no source classifier
    fits = table(workdir, "fits")
    assert fits["reason"].str.startswith("too few points").all()  # 2 sizes
    assert not fits["trustworthy"].any()
    gain = table(workdir, "transfer_gain")
    assert (gain[gain["model"] == "minilm-l6"]["gain"] > 0.2).all()
    assert len(table(workdir, "pairwise")) > 0 and len(table(workdir, "ranks")) >= 3
    assert set(table(workdir, "compatibility")["model"]) == {
        "minilm-l6",
        "tfidf-logreg",
        "efficientnet-lite0",
    }


def test_report_rendered(workdir):
    html = (workdir / "reports" / "e2e" / "index.html").read_text()
    for task in ("bbc-news", "digits"):  # one learning-curve figure per task
        assert re.search(f'<figure id="curve-{task}"><svg', html), task
    assert html.count("<svg") >= 4  # and the Pareto, cost, transfer and similarity figures
    for name in ("minilm-l6", "tfidf-logreg", "efficientnet-lite0", "bbc-news", "digits"):
        assert name in html
    # the deployment table, with the gate's verdict per variant, and the hardware verdict or the
    # statement that no variant is leaner
    section = html[html.index("Deployment variants behind an accuracy gate") :]
    section = section[: section.index("<h3>")]
    assert section.count("passes (") >= 4  # fp32 and onnx-fp32 of both models at least
    verdicts = table(workdir, "accessibility").set_index("model")["verdict"]
    for model in ("minilm-l6", "efficientnet-lite0"):
        assert "deployed as " in verdicts[model] or "no deployment variant" in verdicts[model]


def test_recommendation_follows_the_decision_rule(workdir):
    decision = table(workdir, "decision")
    assert set(decision["task"]) == {"bbc-news", "digits"}
    for task, rows in decision.groupby("task"):
        assert rows["best"].sum() == 1 and rows["chosen"].sum() <= 1, task
        assert rows.loc[rows["best"], "tied"].all()
        assert rows.loc[rows["chosen"], "cost"].notna().all()  # never picked without a cost
        assert rows.loc[rows["chosen"], "tied"].all()  # only from the tied set
    parts = table(workdir, "scorecard_parts").set_index(["model", "submeasure"])["status"]
    assert parts["tfidf-logreg", "latency_b1"].startswith("measured")
    assert parts["tfidf-logreg", "safetensors"].startswith("not applicable")
    assert parts["tfidf-logreg", "transfer_gain"].startswith("not applicable")
    html = (workdir / "reports" / "e2e" / "index.html").read_text()
    paragraph = html[html.index('id="recommendation"') :].split("</p>")[0]
    assert "On bbc-news" in paragraph and "On digits" in paragraph
    assert 'id="decision-rule"' in html


def test_estimate_within_a_factor_of_two_of_the_measured_wall_time(workdir):
    estimate = pd.read_parquet(workdir / "results" / "estimate" / "e2e.parquet")
    predicted = estimate["wall_s"].sum()
    actual = float((workdir / "wall_s.txt").read_text())
    assert 0.5 <= predicted / actual <= 2.0, (predicted, actual)
    times = table(workdir, "stage_times").set_index("stage")
    assert {"finetune", "evaluate"} <= set(times.index)
    assert times.loc["finetune", "estimated_wall_s"] > 0 and times.loc["finetune", "wall_s"] > 0


def test_estimated_peak_memory_is_near_the_measured(workdir):
    """Per stage that loads a model, the estimate's peak RSS against the largest one measured
    (Snakemake's sample, or the export check's own record of itself waiting on a deployment
    variant's process, which a 30 s sample can miss): at most 25% low (a SLURM request from it
    would kill the job) and at most 2× high."""
    times = table(workdir, "stage_times").set_index("stage")
    stages = ["download_model", "profile_model", "measure_runtime", "extract_features"]
    stages += ["finetune", "evaluate", "export_check"]
    ratios = (times.loc[stages, "estimated_peak_mb"] / times.loc[stages, "max_rss_mb"]).round(2)
    assert ratios.between(0.75, 2.0).all(), ratios.to_dict()


def test_snakemakes_own_report_includes_ours(workdir):
    result = run_snakemake("--configfile", str(CONFIG), "--report", "smk-report.html", cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    html = (workdir / "smk-report.html").read_text(errors="replace")
    assert "ptmeval report" in html and "index.html" in html


def test_nothing_changed_runs_nothing(workdir):
    result = run_snakemake("--cores", "2", "--configfile", str(CONFIG), cwd=workdir)
    assert result.returncode == 0
    assert job_stats(result.stderr + result.stdout) == {}
    assert "Nothing to be done" in result.stderr + result.stdout


def test_changing_one_finetune_setting_reruns_only_its_jobs(workdir):
    data = yaml.safe_load(CONFIG.read_text())
    data["models"][2]["finetune"] = {"probe_c": 0.5}  # efficientnet-lite0's linear probe
    changed = workdir / "changed.yaml"
    changed.write_text(yaml.safe_dump(data))
    untouched = {
        p: p.stat().st_mtime_ns
        for p in (workdir / "results").rglob("*.parquet")
        if not any(part in str(p) for part in ("efficientnet", "aggregate", "estimate"))
    }
    result = run_snakemake("--cores", "2", "--configfile", str(changed), cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert job_stats(result.stderr + result.stdout) == {
        "estimate_cost": 1,  # a fixed C instead of a grid: one selection fit fewer to estimate
        "select_hparams": 1,  # a fixed C replaces the selection
        "finetune": 4,
        "evaluate": 4,
        "export_check": 1,  # it exports the fine-tuned model of the largest subset
        "aggregate": 1,
        "render_report": 1,
        "all": 1,
    }
    assert all(p.stat().st_mtime_ns == t for p, t in untouched.items())
    # switching back recomputes none of those jobs: the original settings' results were kept
    # beside the new ones (another settings key); the run's own estimate, aggregate and report
    # (one per run name) are redone
    result = run_snakemake("--cores", "2", "--configfile", str(CONFIG), cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert job_stats(result.stderr + result.stdout) == {
        "estimate_cost": 1,
        "aggregate": 1,
        "render_report": 1,
        "all": 1,
    }
    assert all(p.stat().st_mtime_ns == t for p, t in untouched.items())


def test_changing_an_analysis_setting_reruns_only_aggregate_and_report(workdir):
    data = yaml.safe_load(CONFIG.read_text())
    data["analysis"] = {"n_boot": 400}
    changed = workdir / "analysis.yaml"
    changed.write_text(yaml.safe_dump(data))
    result = run_snakemake("--cores", "2", "--configfile", str(changed), cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert job_stats(result.stderr + result.stdout) == {
        "aggregate": 1,
        "render_report": 1,
        "all": 1,
    }
    result = run_snakemake("--cores", "2", "--configfile", str(CONFIG), cwd=workdir)
    assert job_stats(result.stderr + result.stdout) == {
        "aggregate": 1,
        "render_report": 1,
        "all": 1,
    }


def test_deleted_report_is_regenerated_from_cache_alone(workdir):
    shutil.rmtree(workdir / "reports")
    result = run_snakemake("--cores", "2", "--configfile", str(CONFIG), cwd=workdir)
    assert result.returncode == 0
    assert job_stats(result.stderr + result.stdout) == {"render_report": 1, "all": 1}
    assert (workdir / "reports" / "e2e" / "index.html").exists()
