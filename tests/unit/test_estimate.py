"""`ptmeval estimate` before anything ran: architectures from configs alone (a GGUF file's
config has no `architectures`), parameter counts against real models, peak-memory formula.
The packaged GGUF decoder's count is checked against the loaded model in test_adapters.py."""

from __future__ import annotations

from pathlib import Path

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


def test_every_stage_has_a_peak_memory(default_config):
    table = estimate(default_config, cache=None, peak=1e11, cores=2).set_index("stage")
    assert (table["peak_mb"] > 0).all() and (table["wall_s"] > 0).all()
    # the peak of these stages is their formula at the largest model, SmolLM2
    weights = model_cost(default_config, "smollm2-135m", None).weight_bytes
    for stage in ("profile_model", "extract_features", "export_check"):
        assert table.loc[stage, "peak_mb"] == pytest.approx(memory_mb(stage, weights))
    assert all(base > 500 and per_mb >= 0.5 for base, per_mb in MEMORY_MB.values())


def test_a_hub_model_not_downloaded_yet_is_left_out_with_a_note(monkeypatch, caplog):
    # offline mode (HF_HUB_OFFLINE=1): neither the Hugging Face cache nor the Hub has its config
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    cfg = load_config(
        {
            "models": [
                {"slug": "bert", "adapter": "hf-text", "source": {"kind": "hub", "id": "no/such"}},
                {"slug": "tfidf", "adapter": "tfidf-logreg"},
            ],
            "tasks": [{"slug": "t", "source": {"kind": "packaged", "name": "bbc-news"}}],
        }
    )
    table = estimate(cfg, cache=None, peak=1e11, cores=2).set_index("stage")
    assert "model 'bert': no config.json to estimate from" in caplog.text
    assert "download_model" not in table.index  # the TF-IDF baseline downloads nothing
    n_jobs = len(cfg.subsample.fractions) * len(cfg.subsample.seeds)
    assert table.loc["finetune", "jobs"] == n_jobs  # the baseline's only
    assert table.loc["measure_runtime", "jobs"] == 1  # the baseline's, on its fitted state
    assert table["basis"].str.endswith("without bert (architecture not readable yet)").all()


def test_a_cached_profile_under_this_config_s_settings_key_is_used(default_config, tmp_path):
    """`ptmeval estimate --cache results` reads the profile table the workflow wrote for the
    same settings (ptmeval.plan's path); a profile made under other settings is not used."""
    import pandas as pd

    from ptmeval.plan import Plan

    analytical = model_cost(default_config, "minilm-l6", tmp_path)
    assert analytical.basis == "analytical"
    path = Plan(default_config, root=tmp_path).path("profile", "profile", {"model": "minilm-l6"})
    other = tmp_path / "profile" / "minilm-l6" / "0123abcd" / "profile.parquet"
    profile = pd.DataFrame({"flops_forward_per_sample": [1.5e9], "params_total": [22_700_000]})
    other.parent.mkdir(parents=True)
    profile.to_parquet(other)
    assert model_cost(default_config, "minilm-l6", tmp_path).basis == "analytical"
    Path(path).parent.mkdir(parents=True)
    profile.to_parquet(path)
    measured = model_cost(default_config, "minilm-l6", tmp_path)
    assert measured.basis == "measured (profile cache)"
    assert measured.forward == 1.5e9 and measured.train == 4.5e9


def test_light_fits_run_two_at_a_time_on_two_cores():
    """A TF-IDF fine-tune asks for one thread (ptmeval.workflow.threads_for): on 2 cores the
    estimate halves their time, where a network's fine-tunes (2 threads) run one at a time."""
    cfg = load_config(
        {
            "models": [{"slug": "tfidf", "adapter": "tfidf-logreg"}],
            "tasks": [{"slug": "t", "source": {"kind": "packaged", "name": "bbc-news"}}],
        }
    )
    one, two = (
        estimate(cfg, cache=None, peak=1e11, cores=n).set_index("stage")["wall_s"] for n in (1, 2)
    )
    assert two["finetune"] == pytest.approx(one["finetune"] / 2)
    assert two["measure_runtime"] == pytest.approx(one["measure_runtime"])  # 2 threads
