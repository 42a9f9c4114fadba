"""Device and precision (ptmeval.compute): resolution, mixed precision, scheduler requests."""

from __future__ import annotations

import pytest
import torch

from ptmeval.adapters._base import LoadedModel
from ptmeval.compute import CPU_FP32, Placement, cpu_has_bf16, gpu_requested, place, resolve
from ptmeval.config import parse_config
from ptmeval.errors import ConfigError
from ptmeval.workflow import gpus_for, model_job, threads_for


def test_explicit_cpu_fp32_is_what_was_asked():
    assert resolve("cpu", "fp32") == CPU_FP32


def test_auto_picks_the_gpu_if_any_and_bf16_only_where_native():
    placement = resolve("auto", "auto")
    if torch.cuda.is_available():
        assert placement.device == "cuda"
        assert placement.precision == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")
    else:
        assert placement.device == "cpu"
        # bf16 is emulated (hundreds of times slower) on a CPU without AVX512-BF16 / AMX
        assert placement.precision == ("bf16" if cpu_has_bf16() else "fp32")


def test_cuda_without_a_gpu_is_an_error_naming_the_setting():
    if torch.cuda.is_available():
        assert resolve("cuda", "fp32").device == "cuda"
        return
    with pytest.raises(ConfigError, match="finetune.device is 'cuda'"):
        resolve("cuda", "auto")
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve("cpu", "fp8")


def tiny_loaded() -> LoadedModel:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    return LoadedModel(
        model=model,
        head=model[2],
        collate=lambda items: {"x": torch.stack(list(items))},
        logits_fn=lambda m, b: m(b["x"]),
        features_fn=lambda m, b: m[:2](b["x"]),
        example_batch=lambda n: {"x": torch.zeros(n, 8)},
    )


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_keeps_fp32_weights_and_learns(precision):
    loaded = place(tiny_loaded(), Placement("cpu", precision))
    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(1))
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    assert loaded.logits({"x": x}).dtype == loaded.placement.dtype  # autocast is on
    optimizer = torch.optim.AdamW(loaded.model.parameters(), lr=1e-2)
    scaler = loaded.placement.grad_scaler()
    assert (scaler is not None) == (precision == "fp16")
    losses = []
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(loaded.logits({"x": x}).float(), y)
        optimizer.zero_grad()
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        losses.append(loss.item())
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())  # master weights
    assert losses[-1] < 0.5 * losses[0]


def test_fp32_placement_computes_exactly_as_unplaced():
    x = {"x": torch.randn(5, 8)}
    plain = tiny_loaded()
    placed = place(tiny_loaded(), CPU_FP32)
    assert torch.equal(plain.logits(x), placed.logits(x))
    assert torch.equal(plain.features(x), placed.features(x))


def test_gpu_requests_follow_the_device(monkeypatch):
    assert gpu_requested("cuda") and not gpu_requested("cpu")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert not gpu_requested("auto")  # no GPU visible where the workflow is planned

    def cfg(device: str):
        return parse_config(
            {
                "finetune": {"device": device},
                "models": [
                    {"slug": "t", "adapter": "tfidf-logreg"},
                    {
                        "slug": "full",
                        "adapter": "hf-text",
                        "source": {"kind": "hub", "id": "org/a"},
                    },
                    {
                        "slug": "probe",
                        "adapter": "hf-text",
                        "method": "linear_probe",
                        "source": {"kind": "hub", "id": "org/b"},
                    },
                ],
                "tasks": [{"slug": "news", "source": {"kind": "packaged", "name": "bbc-news"}}],
            }
        )

    gpu, cpu = cfg("cuda"), cfg("cpu")
    assert [gpus_for(gpu, m) for m in ("t", "full", "probe")] == [0, 1, 0]
    # the light fits (scikit-learn) ask for one CPU thread, a network's training for two
    assert [threads_for(cpu, m) for m in ("t", "full", "probe")] == [1, 2, 1]
    assert [gpus_for(gpu, m, "features") for m in ("t", "full", "probe")] == [0, 1, 1]
    assert [gpus_for(cpu, m) + gpus_for(cpu, m, "features") for m in ("full", "probe")] == [0, 0]
    # feature extraction's params carry the placement; profiling's do not (it runs fp32 on CPU)
    assert model_job(gpu, "probe", inference_only=True, placed=True)["finetune"]["device"] == "cuda"
    assert model_job(gpu, "probe", inference_only=True)["finetune"]["device"] == "auto"
