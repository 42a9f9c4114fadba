"""Deployment variants behind the accuracy gate (ptmeval.deployment): the gate's arithmetic on
known counts, and real variants (PyTorch bf16 and dynamic int8, ONNX in onnxruntime, ONNX int8
through onnxruntime.quantization) of small trained models, each built and run in its own
process."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import binomtest
from torch import nn

from ptmeval.compute import cpu_has_bf16
from ptmeval.deployment import (
    deployment_variants,
    gate_passes,
    gate_rows,
    measure_variants,
    wanted_variants,
)
from ptmeval.export import check_module


def _logits_for(correct: np.ndarray, target: np.ndarray, classes: int = 2) -> list[list[float]]:
    """Logits whose argmax is the target where `correct`, another class elsewhere."""
    out = np.zeros((len(target), classes))
    for i, (ok, t) in enumerate(zip(correct, target, strict=True)):
        out[i, t if ok else (t + 1) % classes] = 5.0
    return out.tolist()


def test_gate_arithmetic_on_known_counts():
    target = np.array([0, 1] * 100)  # 200 test examples
    ref = np.ones(200, bool)
    ref[:20] = False  # fp32: 180 of 200 = 0.90
    drops_two = ref.copy()
    drops_two[20:22] = False  # 178/200 = 0.89 = 0.9889 × 0.90 < 0.99 × 0.90: fails
    drops_one = ref.copy()
    drops_one[20] = False  # 179/200 = 0.895 = 0.99444 × 0.90: passes
    swaps = ref.copy()
    swaps[20:25] = False
    swaps[:5] = True  # 180/200, but 10 examples discordant: same score, passes
    results = {
        name: {"status": "ok", "logits": _logits_for(c, target)}
        for name, c in [
            ("fp32", ref),
            ("bf16", drops_one),
            ("int8-dynamic", drops_two),
            ("onnx-fp32", swaps),
        ]
    }
    results["onnx-int8"] = {"status": "failed", "reason": "some reason"}
    rows = {r["variant"]: r for r in gate_rows(results, target, "accuracy", 0.99, n_boot=500)}
    assert rows["fp32"]["score"] == 0.9 and rows["fp32"]["passes"] and rows["fp32"]["diff"] == 0
    assert rows["bf16"]["score"] == 0.895 and rows["bf16"]["passes"]
    assert rows["int8-dynamic"]["score"] == 0.89 and not rows["int8-dynamic"]["passes"]
    assert rows["int8-dynamic"]["ratio"] == pytest.approx(0.89 / 0.9)
    assert rows["int8-dynamic"]["accuracy_diff"] == pytest.approx(-0.01)
    assert rows["onnx-fp32"]["passes"] and rows["onnx-fp32"]["agreement"] == 0.95
    # McNemar on the discordant pairs: 2 (fp32 right, int8 wrong) and 0 the other way: exact
    # binomial; 5 and 5 for the swapped one
    assert rows["int8-dynamic"]["mcnemar_p"] == pytest.approx(binomtest(0, 2, 0.5).pvalue)
    assert rows["onnx-fp32"]["mcnemar_p"] == pytest.approx(binomtest(5, 10, 0.5).pvalue)
    # the paired interval: the variant is never right where fp32 is wrong, so no resample
    # favours it; resamples may hold those two examples several times
    assert -0.05 < rows["int8-dynamic"]["diff_lo"] < rows["int8-dynamic"]["diff"]
    assert rows["int8-dynamic"]["diff"] == pytest.approx(-0.01)
    assert rows["int8-dynamic"]["diff_hi"] == 0.0
    assert rows["onnx-int8"]["status"] == "failed" and "passes" not in rows["onnx-int8"]
    # the gate itself at its edge, and with a higher threshold
    assert gate_passes(0.891, 0.9, 0.99) and not gate_passes(0.8909, 0.9, 0.99)
    assert not gate_passes(0.895, 0.9, 1.0)


def test_no_reference_no_verdict():
    target = np.array([0, 1, 0, 1])
    results = {
        "fp32": {"status": "failed", "reason": "killed by signal 9 (out of memory?)"},
        "bf16": {"status": "ok", "logits": _logits_for(np.ones(4, bool), target)},
    }
    rows = {r["variant"]: r for r in gate_rows(results, target, "accuracy", 0.99)}
    assert "passes" not in rows["bf16"]
    assert rows["bf16"]["reason"] == "not gated: the fp32 reference failed"


def test_the_gpu_variant_only_with_a_gpu():
    assert wanted_variants(["bf16", "fp16-cuda"], gpu=False) == ["fp32", "bf16"]
    assert wanted_variants(["fp16-cuda"], gpu=True) == ["fp32", "fp16-cuda"]


def _separable(n: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centres = rng.normal(0, 3, size=(3, dim))
    x = centres[y] + rng.normal(0, 1, size=(n, dim))
    return x.astype(np.float32), y


def _trained(dim: int = 64, hidden: int = 256) -> tuple[nn.Module, np.ndarray, np.ndarray]:
    """A small MLP trained on a separable 3-class task; (model, test x, test y)."""
    torch.manual_seed(0)
    x, y = _separable(600, dim, 0)
    model = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, 3))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt, yt = torch.from_numpy(x[:400]), torch.from_numpy(y[:400])
    for _ in range(100):
        opt.zero_grad()
        nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()
    return model.eval(), x[400:], y[400:]


def _variants(model: nn.Module, x: np.ndarray, y: np.ndarray, tmp_path: Path, names: list[str]):
    module_file = tmp_path / "module.pt"
    torch.save(model, module_file)
    onnx_file = tmp_path / "model.onnx"
    row = check_module(model, [x], y, ["x"], latency_batch_sizes=(1,), onnx_keep=onnx_file)
    assert row["onnxruntime"] == "ok", row
    table = deployment_variants(
        {"model": "mlp", "task": "blobs"},
        {"module_file": str(module_file)},
        [x],
        y,
        onnx_file,
        {"variants": names, "gate": 0.99, "batch_sizes": [1, 16], "budget_s": 0.2, "n_boot": 200},
        "accuracy",
        threads=1,
    )
    return table.set_index("variant")


def test_real_variants_of_a_trained_model_pass_the_gate(tmp_path):
    model, x, y = _trained()
    table = _variants(
        model, x, y, tmp_path, ["fp32", "bf16", "int8-dynamic", "onnx-fp32", "onnx-int8"]
    )
    assert list(table.index) == ["fp32", "bf16", "int8-dynamic", "onnx-fp32", "onnx-int8"]
    if not cpu_has_bf16():  # emulated bf16 is no deployment option: said, not built
        assert table.loc["bf16", "status"] == "not built"
        assert "no native bf16" in table.loc["bf16", "reason"]
        table = table.drop(index="bf16")
    assert (table["status"] == "ok").all(), table[["status", "reason"]]
    assert table.loc["fp32", "score"] > 0.95  # the task is separable and the model learnt it
    assert table["passes"].all(), table[["score", "ratio", "diff_lo", "diff_hi"]]
    # fp32 in onnxruntime gives eager's logits; int8 weights take about a quarter of the bytes
    assert table.loc["onnx-fp32", "max_abs_logit_diff"] < 1e-3
    assert table.loc["int8-dynamic", "disk_mb"] < 0.4 * table.loc["fp32", "disk_mb"]
    assert table.loc["onnx-int8", "disk_mb"] < 0.4 * table.loc["onnx-fp32", "disk_mb"]
    for col in ("latency_b1_p50_ms", "latency_b16_p90_ms", "peak_rss_mb"):
        assert (table[col] > 0).all(), col
    assert (table["latency_b16_p90_ms"] >= table["latency_b16_p50_ms"]).all()
    assert table["peak_reset"].all()  # the peak is the variant's, not the fp32 load's


def test_the_bf16_variant_builds_and_runs(tmp_path):
    """bf16 by itself (deployment_variants builds it only where the CPU has native bf16): half
    the bytes on disk, the same predictions on a separable task."""
    model, x, y = _trained()
    torch.save(model, tmp_path / "module.pt")
    results = measure_variants(
        {"module_file": str(tmp_path / "module.pt")},
        [x],
        None,
        ["fp32", "bf16"],
        threads=1,
        batch_sizes=(1, 16),
        timing={"budget_s": 0.2},
    )
    assert results["bf16"]["status"] == "ok", results["bf16"]
    assert results["bf16"]["disk_mb"] < 0.6 * results["fp32"]["disk_mb"]
    rows = {r["variant"]: r for r in gate_rows(results, y, "accuracy", 0.99, n_boot=100)}
    assert rows["bf16"]["passes"] and rows["bf16"]["agreement"] > 0.98


def test_a_variant_reports_the_peak_of_the_job_while_it_runs(tmp_path):
    """The child's whole peak (building included) is at least its running peak, and the job's
    peak while the child runs adds the waiting parent's resident memory: 300 MB more held by the
    parent is in it (Snakemake's benchmark, sampling every 30 s, can miss it). The parent's own
    memory is read beside each call: in a long test session garbage from earlier tests can be
    freed between two calls, so the two calls' totals are not compared with each other."""
    import gc
    import mmap

    from ptmeval.runtime import status_mb

    model, x, _ = _trained()
    torch.save(model, tmp_path / "module.pt")
    spec = ({"module_file": str(tmp_path / "module.pt")}, [x], None, ["fp32"])
    timing = {"threads": 1, "batch_sizes": (1, 16), "timing": {"budget_s": 0.1}}
    gc.collect()
    before = status_mb("VmRSS")
    light = measure_variants(*spec, **timing)["fp32"]
    unheld = status_mb("VmRSS")
    # 300 MB in a fresh anonymous mapping, every page written: resident in the parent. Not a
    # numpy array: in a long session malloc can hand back freed pages that are still resident
    # (CI: VmRSS did not move), while a new mapping's pages count once they are touched
    held = mmap.mmap(-1, 300 * 2**20)
    np.frombuffer(held, dtype=np.uint8)[:] = 1
    holding = status_mb("VmRSS")
    heavy = measure_variants(*spec, **timing)["fp32"]
    after = status_mb("VmRSS")
    held.close()
    assert holding - unheld > 290  # the parent really holds the 300 MB while the child runs
    for result in (light, heavy):
        assert result["status"] == "ok", result
        assert result["process_peak_mb"] >= result["peak_rss_mb"] > 0
        assert result["tree_peak_mb"] > result["process_peak_mb"]
    parent_light = light["tree_peak_mb"] - light["process_peak_mb"]
    parent_heavy = heavy["tree_peak_mb"] - heavy["process_peak_mb"]
    assert min(before, unheld) - 30 <= parent_light <= max(before, unheld) + 30  # without them
    assert min(holding, after) - 30 <= parent_heavy <= max(holding, after) + 30  # with them


def test_a_variant_that_quantization_breaks_fails_the_gate(tmp_path):
    """One huge weight on an input that is always zero: fp32 ignores it, but per-tensor int8
    weights share one scale, so every other weight of that layer rounds to zero."""
    model, x, y = _trained()
    x[:, 0] = 0.0
    with torch.no_grad():
        model[0].weight[:, 0] = 1e4
    table = _variants(model, x, y, tmp_path, ["fp32", "int8-dynamic"])
    assert table.loc["fp32", "passes"] and table.loc["fp32", "score"] > 0.95
    broken = table.loc["int8-dynamic"]
    assert broken["status"] == "ok" and not broken["passes"]
    assert broken["score"] < 0.6 and broken["diff_hi"] < 0 and broken["mcnemar_p"] < 1e-6


def _table() -> pd.DataFrame:
    """A deployment table of two models on one task (what export_check writes)."""

    def row(model, variant, score, passes, b1, peak, disk, status="ok"):
        return {
            "model": model,
            "task": "t",
            "variant": variant,
            "status": status,
            "reason": "",
            "metric": "accuracy",
            "gate": 0.99,
            "score": score,
            "reference_score": 0.9,
            "diff": score - 0.9,
            "accuracy_diff": score - 0.9,
            "passes": passes,
            "latency_b1_p50_ms": b1,
            "peak_rss_mb": peak,
            "disk_mb": disk,
        }

    return pd.DataFrame(
        [
            row("a", "fp32", 0.9, True, 10.0, 600.0, 90.0),
            row("a", "bf16", 0.9, True, 12.0, 560.0, 45.0),
            row("a", "int8-dynamic", 0.85, False, 4.0, 520.0, 25.0),  # fastest, but fails
            row("a", "onnx-fp32", 0.9, True, 6.0, 150.0, 90.0),
            row("a", "onnx-int8", 0.895, True, 5.0, 120.0, 23.0),
            row("b", "fp32", 0.8, True, 3.0, 500.0, 10.0),
            row("b", "bf16", 0.8, True, 5.0, 490.0, 5.0),  # passes but slower
        ]
    )


def test_the_best_passing_variant_by_the_constraint():
    from ptmeval.deployment import best_variants

    by_latency = {p["model"]: p for p in best_variants(_table(), "latency")}
    # a's fastest variant fails the gate: the fastest that passes is onnx-int8; b has nothing
    # faster than fp32
    assert list(by_latency) == ["a"] and by_latency["a"]["variant"] == "onnx-int8"
    assert by_latency["a"]["latency_ratio"] == 0.5
    assert by_latency["a"]["memory_diff_mb"] == -480.0
    assert by_latency["a"]["diff"] == pytest.approx(-0.005)
    by_storage = {p["model"]: p["variant"] for p in best_variants(_table(), "storage")}
    assert by_storage == {"a": "onnx-int8", "b": "bf16"}
    assert best_variants(_table().iloc[0:0], "latency") == []


def test_hardware_verdict_and_scorecard_use_the_passing_variant():

    from ptmeval.scorecard import raw_measures
    from ptmeval.verdicts import accessibility

    runtime = pd.DataFrame(
        [
            {
                "model": m,
                "mode": "inference",
                "batch_size": 1,
                "device_kind": "cpu",
                "status": "ok",
                "peak_rss_mb": peak,
                "latency_p50_ms": 10.0,
                "throughput_per_s": 100.0,
            }
            for m, peak in (("a", 1100.0), ("b", 900.0))
        ]
    )
    hardware = [
        {"name": "edge, 1 GB", "device": "cpu", "memory_gb": 1},
        {"name": "vm, 2 GB", "device": "cpu", "memory_gb": 2},
    ]
    verdict = accessibility(runtime, hardware, _table()).set_index("model")
    # a: fp32 needs 1100 MB (the 2 GB VM); onnx-int8 needs 480 MB less, within 1 GB
    assert verdict.loc["a", "cpu_inference_hardware"] == "vm, 2 GB"
    assert verdict.loc["a", "deploy_variant"] == "onnx-int8"
    assert verdict.loc["a", "deploy_hardware"] == "edge, 1 GB"
    assert verdict.loc["a", "deploy_peak_gb"] == pytest.approx(620 / 1024)
    assert (
        "deployed as onnx-int8 (passes the 99% gate on t: accuracy 0.895 vs fp32 0.900)"
        in (verdict.loc["a", "verdict"])
    )
    # b: bf16 passes and is leaner than fp32 (490 vs 500 MB): still within 1 GB
    assert verdict.loc["b", "deploy_variant"] == "bf16"
    raw, status = raw_measures(
        {
            "deployment": _table(),
            "learning_curve": pd.DataFrame(
                {
                    "model": ["a", "b"],
                    "task": ["t", "t"],
                    "init": ["pretrained"] * 2,
                    "n_train": [10, 10],
                    "metric": ["accuracy"] * 2,
                    "mean": [0.9, 0.8],
                }
            ),
        },
        models={
            "a": {"modality": "text", "neural": True, "pretrained": True},
            "b": {"modality": "text", "neural": True, "pretrained": True},
        },
    )
    raw = raw.set_index("model")
    # the leanest passing variant's peak memory (int8-dynamic is leaner but fails the gate)
    assert raw.loc["a", "deploy_memory"] == 120.0 and raw.loc["b", "deploy_memory"] == 490.0
    assert (status.set_index("model")["deploy_memory"] == "measured").all()


def test_variant_names_are_the_configs():
    from typing import get_args

    from ptmeval.config import DeploymentVariant
    from ptmeval.deployment import VARIANTS

    assert get_args(DeploymentVariant) == VARIANTS


class Probe(nn.Module):
    """A backbone and a linear head, as export.build_model folds a linear probe."""

    def __init__(self, inner: nn.Module, linear: nn.Linear) -> None:
        super().__init__()
        self.inner, self.linear = inner, linear

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.linear(self.inner(*tensors))


def test_a_probe_head_stays_fp32_in_the_int8_variants(tmp_path):
    """A folded probe head can hold weights no per-tensor int8 scale represents (measured:
    EfficientNet-Lite0's probe on digits fell from 0.73 to 0.10): the int8 variants quantize the
    backbone and keep the head, which is what an independent check would deploy."""
    model, x, y = _trained()
    with torch.no_grad():  # a dead hidden unit, and a huge head weight on it
        model[0].weight[0] = 0.0
        model[0].bias[0] = -1.0
        model[2].weight[:, 0] = 1e4
    probe = Probe(model[:2], model[2]).eval()
    torch.save(probe, tmp_path / "module.pt")
    onnx_file = tmp_path / "model.onnx"
    row = check_module(probe, [x], y, ["x"], latency_batch_sizes=(1,), onnx_keep=onnx_file)
    assert row["onnxruntime"] == "ok", row
    settings = {"variants": ["int8-dynamic", "onnx-int8"], "batch_sizes": [1, 16], "n_boot": 100}
    settings["budget_s"] = 0.2

    def table(probe_head: bool) -> pd.DataFrame:
        source = {"module_file": str(tmp_path / "module.pt"), "probe_head": probe_head}
        frame = deployment_variants({}, source, [x], y, onnx_file, settings, "accuracy", 1)
        return frame.set_index("variant")

    kept, quantized = table(True), table(False)
    assert kept.loc["fp32", "score"] > 0.95
    assert kept.loc[["int8-dynamic", "onnx-int8"], "passes"].all(), kept[["score", "status"]]
    assert not quantized.loc[["int8-dynamic", "onnx-int8"], "passes"].any()
