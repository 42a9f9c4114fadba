"""`torchvision-image`: torchvision classification architectures.

Pretrained weights come from a local state dict (`.pth` loaded with `weights_only=True`, or
`.safetensors`) named by the model's source, or from torchvision's own weight registry
(`options.weights`, e.g. 'ResNet18_Weights.IMAGENET1K_V1'; needs network). With neither, only
`init: scratch` is possible (`weights=None`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ptmeval.adapters._base import LoadedModel, ModelAdapter, last_linear, replace_module
from ptmeval.errors import ConfigError, ModelSourceError

WEIGHTS = "model.safetensors"


OPTIONS = ("architecture", "weights")


def check_options(options: dict[str, Any]) -> None:
    """At config time: `architecture` given and known to torchvision, `weights` (optional) a
    name in torchvision's weight registry for that architecture, no other key."""
    from ptmeval._names import unknown_name_message

    for key in options:
        if key not in OPTIONS:
            raise ConfigError(unknown_name_message("torchvision-image option", key, OPTIONS))
    arch = Adapter(options).architecture
    weights = options.get("weights")
    if weights:
        import torchvision

        registry = torchvision.models.get_model_weights(arch)
        known = [f"{registry.__name__}.{name}" for name in registry.__members__]  # DEFAULT too
        if weights not in known:
            raise ConfigError(
                f"for architecture '{arch}': " + unknown_name_message("weights", weights, known)
            )


class Adapter(ModelAdapter):
    name = "torchvision-image"
    modality = "image"

    @property
    def architecture(self) -> str:
        arch = self.options.get("architecture")
        if not arch:
            raise ConfigError("torchvision-image needs options.architecture (e.g. 'resnet18')")
        import torchvision

        known = torchvision.models.list_models(module=torchvision.models)
        if arch not in known:
            from ptmeval._names import unknown_name_message

            raise ConfigError(unknown_name_message("torchvision architecture", arch, known))
        return str(arch)

    def prepare_snapshot(self, resolved: Path | None, source: Any, out_dir: Path) -> None:
        import torchvision

        out_dir.mkdir(parents=True, exist_ok=True)
        state: dict[str, torch.Tensor] | None = None
        if resolved is not None:
            path = resolved
            if path.is_dir():
                found = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.pth"))
                if not found:
                    raise ModelSourceError(f"'{path}': no .safetensors or .pth state dict")
                path = found[0]
            if path.suffix == ".safetensors":
                state = load_file(path)
            else:
                state = torch.load(path, map_location="cpu", weights_only=True)
        elif self.options.get("weights"):
            weights = torchvision.models.get_weight(self.options["weights"])
            state = weights.get_state_dict(progress=False)
        meta: dict[str, Any] = {"architecture": self.architecture, "pretrained": state is not None}
        if state is not None:
            _, fc = last_linear(torchvision.models.get_model(self.architecture, weights=None))
            meta["num_classes"] = int(state[_head_key(state, fc)].shape[0])
            probe = torchvision.models.get_model(
                self.architecture, weights=None, num_classes=meta["num_classes"]
            )
            try:  # fail at download time, not in every fine-tune job
                probe.load_state_dict(state, strict=True)
            except RuntimeError as err:
                detail = " ".join(str(err).split())[:300]
                raise ModelSourceError(
                    f"the state dict does not fit architecture '{self.architecture}': {detail}"
                ) from None
            save_file({k: v.contiguous() for k, v in state.items()}, out_dir / WEIGHTS)
        (out_dir / "architecture.json").write_text(json.dumps(meta))

    def load(
        self,
        snapshot: Path,
        num_labels: int,
        init: str,
        settings: Any,
        trust_remote_code: bool = False,
    ) -> LoadedModel:
        import torchvision

        meta = json.loads((snapshot / "architecture.json").read_text())
        if init == "pretrained":
            if not meta["pretrained"]:
                raise ModelSourceError(
                    f"{meta['architecture']}: no pretrained weights in the snapshot "
                    "(give a source state dict or options.weights, or use init: scratch)"
                )
            model = torchvision.models.get_model(
                meta["architecture"], weights=None, num_classes=meta["num_classes"]
            )
            model.load_state_dict(load_file(snapshot / WEIGHTS), strict=True)
        else:
            model = torchvision.models.get_model(meta["architecture"], weights=None)
        name, old = last_linear(model)
        source_head = old if init == "pretrained" else None
        head = nn.Linear(old.in_features, num_labels)
        replace_module(model, name, head)
        size = int(settings.image_size)
        captured: dict[str, torch.Tensor] = {}
        head.register_forward_hook(lambda mod, inp, out: captured.__setitem__("x", inp[0]))

        def logits(m: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            return m(batch["pixel_values"])

        def features(m: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            m(batch["pixel_values"])
            return captured.pop("x")

        from ptmeval.adapters._images import image_collate, image_example_batch

        info = {
            "family": "cnn",
            "architecture": meta["architecture"],
            "feature_pooling": "model's own",
            "standard_api": "torchvision.models.get_model",
            "source_head": f"pretrained classifier ({old.out_features} classes)"
            if source_head is not None
            else "none (random init)",
        }
        return LoadedModel(
            model,
            head,
            image_collate(size),
            logits,
            features,
            image_example_batch(size),
            info,
            source_head=source_head,
        )


def _head_key(state: dict[str, torch.Tensor], fc: nn.Linear) -> str:
    """The state-dict key of the classifier weight (the last 2-D weight with fc's in_features)."""
    keys = [k for k, v in state.items() if k.endswith("weight") and v.ndim == 2]
    matching = [k for k in keys if state[k].shape[1] == fc.in_features]
    if not matching:
        raise ModelSourceError("state dict has no classifier weight matching the architecture")
    return matching[-1]
