"""Several adaptation methods of one model in one real run (`methods:`): the packaged MiniLM-L6
fully fine-tuned, with LoRA (real PEFT) and by a linear probe on BBC News, to the report.
Tests run in file order and share one directory."""

import re

import pandas as pd
import pytest
import yaml

from tests.conftest import REPO, job_stats, run_snakemake

pytestmark = pytest.mark.slow
CONFIG = REPO / "tests" / "e2e" / "methods.yaml"
METHODS = ["minilm-l6.full", "minilm-l6.lora", "minilm-l6.linear_probe"]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    work = tmp_path_factory.mktemp("methods")
    result = run_snakemake("--cores", "2", "--configfile", str(CONFIG), cwd=work)
    assert result.returncode == 0, result.stderr[-5000:]
    return work


def table(work, name):
    return pd.read_parquet(work / "results" / "aggregate" / "methods" / f"{name}.parquet")


def folders(work, stage):
    return sorted(p.name for p in (work / "results" / stage).iterdir())


def test_the_methods_share_one_download_and_one_set_of_features(work):
    assert folders(work, "download") == ["minilm-l6"]
    assert folders(work, "features") == ["minilm-l6"]
    assert folders(work, "transfer") == ["minilm-l6.full"]  # scored once, under the first
    assert folders(work, "finetune") == sorted(METHODS)
    assert folders(work, "export") == sorted(METHODS)


def test_each_method_trains_what_it_should_and_stores_what_it_trains(work):
    history = table(work, "history")
    last = history.sort_values("epoch").groupby(["model", "fraction"]).last()
    trainable = last.groupby("model")["trainable_params"].max()
    stored = last.groupby("model")["task_bytes"].max()
    # a probe trains its head; LoRA its adapters and the head; full every weight
    assert trainable["minilm-l6.linear_probe"] < trainable["minilm-l6.lora"]
    assert trainable["minilm-l6.lora"] < trainable["minilm-l6.full"] / 100
    assert stored["minilm-l6.linear_probe"] < stored["minilm-l6.lora"] < stored["minilm-l6.full"]
    # LoRA's stored adapter is its trainable parameters in fp32, plus PEFT's small config
    assert 4 * trainable["minilm-l6.lora"] <= stored["minilm-l6.lora"]
    assert stored["minilm-l6.lora"] < 4 * trainable["minilm-l6.lora"] + 20_000
    # full fine-tuning stores the whole fp32 model
    assert stored["minilm-l6.full"] == pytest.approx(4 * trainable["minilm-l6.full"], rel=0.01)
    # LoRA's learning rates are full fine-tuning's grid x lora.lr_scale (10)
    tuning = table(work, "tuning")
    grid = {m: sorted(g["value"]) for m, g in tuning.groupby("model")}
    assert grid["minilm-l6.full"] == pytest.approx([3e-4, 1e-3])
    assert grid["minilm-l6.lora"] == pytest.approx([3e-3, 1e-2])


def test_the_comparison_table_has_every_method_at_every_size(work):
    methods = table(work, "methods")
    assert sorted(set(methods["model"])) == sorted(METHODS)
    assert len(methods) == 3 * 2  # 3 methods x 2 sizes
    assert methods["score"].between(0, 1).all()
    top = methods[methods["largest"]].set_index("method")
    best = top["best_method"].iloc[0]
    assert top.at[best, "diff_vs_best"] == 0
    for method, row in top.drop(index=best).iterrows():
        assert row["diff_lo"] <= row["diff_vs_best"] <= row["diff_hi"], method
        assert 0 <= row["p_vs_best"] <= 1
    # LoRA learns the task (it is no longer starved by full fine-tuning's learning rates)
    assert top.at["lora", "score"] > 0.7
    # the runtime stage timed a training step of full and of LoRA (adapters and head), not of
    # the probe; the inference was measured once and is shared by the three
    assert top.at["lora", "train_step_ms"] > 0 and top.at["full", "train_step_ms"] > 0
    assert pd.isna(top.at["linear_probe", "train_step_ms"])
    runtime = table(work, "runtime")
    inference = runtime[runtime["mode"] == "inference"]
    per_model = inference.groupby("model")["latency_p50_ms"].apply(sorted)
    assert sorted(per_model.index) == sorted(METHODS)
    assert per_model["minilm-l6.lora"] == per_model["minilm-l6.full"]


def test_every_method_is_checked_against_the_frozen_probe_and_gets_an_export(work):
    check = table(work, "protocol_check")
    assert {"minilm-l6.full", "minilm-l6.lora"} <= set(check["model"])
    export = table(work, "export").set_index("model")
    # the merged LoRA model exports to ONNX and runs in onnxruntime like a full fine-tune
    assert export.at["minilm-l6.lora", "onnxruntime"] == "ok"
    assert export.at["minilm-l6.lora", "max_abs_diff"] < 1e-3
    deployment = table(work, "deployment")
    assert {"minilm-l6.lora"} <= set(deployment["model"])


def test_the_report_compares_the_methods_and_names_one(work):
    html = next((work / "reports" / "methods").glob("*.html")).read_text()
    assert 'id="methods"' in html and "Adaptation methods" in html
    notes = re.search(r'<ul id="method-notes">(.*?)</ul>', html, re.S)
    assert notes and "minilm-l6 on bbc-news (n = 96)" in notes.group(1)
    assert "per extra task" in notes.group(1)
    recommendation = re.search(r'<p id="recommendation">(.*?)</p>', html, re.S).group(1)
    assert re.search(r"minilm-l6 \(pretrained, (full|lora|linear_probe)\)", recommendation)
    decision = table(work, "decision")
    assert decision["chosen"].sum() == 1
    # every method's cost to adapt is measured: the probe's includes the shared features'
    # extraction (measured once, under the first method)
    parts = table(work, "scorecard_parts")
    adapt = parts[parts["submeasure"] == "finetune_time"].set_index("model")
    assert (adapt.loc[METHODS, "status"] == "measured").all()


def test_dropping_a_method_or_listing_the_model_alone_reuses_what_it_shares(work):
    data = yaml.safe_load(CONFIG.read_text())
    data["models"][0]["methods"] = ["full", "lora"]
    fewer = work / "fewer.yaml"
    fewer.write_text(yaml.safe_dump(data))
    plan = run_snakemake("-n", "--cores", "2", "--configfile", str(fewer), cwd=work)
    assert plan.returncode == 0, plan.stderr[-3000:]
    # the two remaining methods' jobs keep their settings keys: only the run's summaries
    assert set(job_stats(plan.stdout + plan.stderr)) <= {
        "all",
        "estimate_cost",
        "aggregate",
        "render_report",
    }
    model = data["models"][0]
    del model["methods"], model["lora"]
    model["method"] = "full"
    alone = work / "alone.yaml"
    alone.write_text(yaml.safe_dump(data))
    plan = run_snakemake("-n", "--cores", "2", "--configfile", str(alone), cwd=work)
    assert plan.returncode == 0, plan.stderr[-3000:]
    stats = job_stats(plan.stdout + plan.stderr)
    # the slug is minilm-l6 again (new fine-tune folders), but the download and the frozen
    # features do not depend on the method: not redone
    assert stats.get("finetune") and "download_model" not in stats
    assert "extract_features" not in stats
