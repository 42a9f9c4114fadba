"""Model adapter registry.

The registry itself is light (no torch import) so that the Snakefile can validate a config
while it is parsed. Each entry names the module that implements it; that module is imported
only when a job needs the model.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ptmeval._names import unknown_name_message
from ptmeval.errors import ConfigError

if TYPE_CHECKING:
    from ptmeval.adapters._base import ModelAdapter


@dataclass(frozen=True)
class AdapterSpec:
    """What the pipeline needs to know about an adapter before loading anything."""

    name: str
    modality: str  # "text" or "image"
    module: str  # implementing module, imported lazily
    methods: tuple[str, ...]  # adaptation methods it supports
    inits: tuple[str, ...]  # initialisations it supports
    needs_source: bool  # whether the model entry must name a source
    neural: bool = True  # False for classical baselines (no torch model)
    # options checked with the config (name -> allowed values); None: the adapter checks its own
    options: Mapping[str, tuple[str, ...]] | None = None


ADAPTERS: dict[str, AdapterSpec] = {}


def register(spec: AdapterSpec) -> AdapterSpec:
    """Add an adapter to the registry under `spec.name`."""
    ADAPTERS[spec.name] = spec
    return spec


register(
    AdapterSpec(
        name="hf-text",
        modality="text",
        module="ptmeval.adapters.hf_text",
        methods=("full", "linear_probe", "lora"),
        inits=("pretrained", "scratch"),
        needs_source=True,
        # feature pooling over the real tokens, for probes and transferability scores
        options={"pooling": ("mean", "last")},
    )
)
register(
    AdapterSpec(
        name="torchvision-image",
        modality="image",
        module="ptmeval.adapters.torchvision_image",
        methods=("full", "linear_probe"),
        inits=("pretrained", "scratch"),
        needs_source=False,
    )
)
register(
    AdapterSpec(
        name="efficientnet-lite",
        modality="image",
        module="ptmeval.adapters.efficientnet_lite",
        methods=("full", "linear_probe"),
        inits=("pretrained", "scratch"),
        needs_source=True,
        options={"variant": tuple(f"efficientnet-lite{i}" for i in range(5))},
    )
)
register(
    AdapterSpec(
        name="tfidf-logreg",
        modality="text",
        module="ptmeval.adapters.tfidf",
        methods=("full",),
        inits=("scratch",),
        needs_source=False,
        neural=False,
    )
)


def get_spec(name: str) -> AdapterSpec:
    """Return the registered spec, or raise a ConfigError with a "did you mean" hint."""
    try:
        return ADAPTERS[name]
    except KeyError:
        raise ConfigError(unknown_name_message("adapter", name, ADAPTERS)) from None


def check_options(name: str, options: Mapping[str, Any]) -> None:
    """Raise a ConfigError naming the first option that adapter `name` does not declare, or
    whose value it does not allow; an adapter that declares none checks its own, with its
    module's `check_options` (imported only then: `torchvision-image` needs torchvision to
    know its architectures)."""
    spec = get_spec(name)
    declared = spec.options
    if declared is None:
        module = importlib.import_module(spec.module)
        own = getattr(module, "check_options", None)
        if own is not None:
            own(options)
        return
    for key, value in options.items():
        if key not in declared:
            raise ConfigError(unknown_name_message(f"{name} option", key, declared))
        if value not in declared[key]:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(declared[key])}")


def get_adapter(name: str, options: dict | None = None) -> ModelAdapter:
    """Import and instantiate the adapter registered as `name`."""
    spec = get_spec(name)
    module = importlib.import_module(spec.module)
    adapter: ModelAdapter = module.Adapter(options or {})
    return adapter
