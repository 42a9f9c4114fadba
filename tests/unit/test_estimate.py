"""`ptmeval estimate` before anything ran: architectures from configs alone (a GGUF file's
config has no `architectures`), parameter counts against real models, peak-memory formula."""

from __future__ import annotations

import pytest
import yaml
from transformers import BertConfig, BertModel, GPT2Config, LlamaConfig, LlamaForCausalLM

from ptmeval.adapters.hf_text import is_decoder
from ptmeval.config import load_config
from ptmeval.estimate import MEMORY_MB, estimate, memory_mb, model_cost, transformer_params
from tests.conftest import REPO


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_decoder_told_apart_without_architectures():
    assert is_decoder(LlamaConfig()) and is_decoder(GPT2Config())
    assert not is_decoder(BertConfig())
    assert not is_decoder(LlamaConfig(architectures=["LlamaForSequenceClassification"]))
    assert is_decoder(BertConfig(is_decoder=True))


@pytest.mark.parametrize("tied", [True, False])
def test_decoder_params_with_grouped_kv_heads(tied):
    config = LlamaConfig(
        hidden_size=128,
        intermediate_size=320,
        num_hidden_layers=3,
        num_attention_heads=8,
        num_key_value_heads=2,
        vocab_size=1000,
        tie_word_embeddings=tied,
    )
    real = _count(LlamaForCausalLM(config))
    assert transformer_params(config) == pytest.approx(real, rel=0.01)


def test_encoder_params():
    config = BertConfig(
        hidden_size=128,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        vocab_size=2000,
        max_position_embeddings=64,
    )
    real = _count(BertModel(config))  # with its pooler
    assert transformer_params(config) == pytest.approx(real, rel=0.03)


@pytest.fixture(scope="module")
def default_config():
    return load_config(yaml.safe_load((REPO / "config" / "config.yaml").read_text()), REPO)


def test_cold_estimate_of_the_packaged_decoder(default_config):
    # SmolLM2-135M from its GGUF file: 134,515,008 parameters (its model card), a Llama decoder
    # with 3 key/value heads of 9 and tied embeddings; an encoder reading of the same config
    # gave 121.2M and 12% fewer FLOPs
    cost = model_cost(default_config, "smollm2-135m", None)
    assert cost.basis == "analytical"
    assert cost.params == pytest.approx(134_515_008, rel=0.001)
    assert cost.weight_bytes == 4 * cost.params


def test_every_stage_has_a_peak_memory(default_config):
    table = estimate(default_config, cache=None, peak=1e11, cores=2).set_index("stage")
    assert (table["peak_mb"] > 0).all() and (table["wall_s"] > 0).all()
    # the peak of these stages is their formula at the largest model, SmolLM2
    weights = model_cost(default_config, "smollm2-135m", None).weight_bytes
    for stage in ("profile_model", "extract_features", "export_check"):
        assert table.loc[stage, "peak_mb"] == pytest.approx(memory_mb(stage, weights))
    assert all(base > 500 and per_mb >= 0.5 for base, per_mb in MEMORY_MB.values())
