"""The one interface every model adapter implements.

An adapter turns a local snapshot into a `LoadedModel`: a torch module with a classification
head of the task's size, a `collate` that turns raw examples (texts, image bytes) into a batch,
and the two views the pipeline needs: `logits` (fine-tuning, evaluation) and `features`
(the frozen backbone's representation, for linear probes and transferability scores).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the base stays torch-free so that classical adapters import fast
    import torch
    from torch import nn


@dataclass
class LoadedModel:
    """A model ready for training or inference on one task."""

    model: nn.Module
    head: nn.Module  # the task-specific classifier (trainable in every method)
    collate: Callable[[Sequence[Any]], dict[str, torch.Tensor]]
    logits_fn: Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor]
    features_fn: Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor]
    example_batch: Callable[[int], dict[str, torch.Tensor]]  # a full-size synthetic batch
    info: dict[str, Any] = field(default_factory=dict)
    # the pretrained classifier the features feed (e.g. ImageNet's), for LEEP/NCE; None if absent
    source_head: Any = None
    # where `logits` and `features` run (ptmeval.compute.place); None: as loaded, CPU fp32
    placement: Any = None

    def logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.placement is None:
            return self.logits_fn(self.model, batch)
        with self.placement.autocast():
            return self.logits_fn(self.model, self.placement.to_device(batch))

    def features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.placement is None:
            return self.features_fn(self.model, batch)
        with self.placement.autocast():
            return self.features_fn(self.model, self.placement.to_device(batch))


class ModelAdapter:
    """Base class: subclasses set `name` and `modality` and implement `load` (neural models) or
    `fit`/`save`/`predict_proba` (classical baselines such as `tfidf-logreg`)."""

    name = "base"
    modality = "text"

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = dict(options)
        self.trust_remote_code = False  # set from the model's config entry

    def prepare_snapshot(self, resolved: Path | None, source: Any, out_dir: Path) -> None:
        """Write a self-contained local snapshot to `out_dir` (default: copy the files)."""
        out_dir.mkdir(parents=True, exist_ok=True)
        if resolved is None:
            return
        if resolved.is_dir():
            shutil.copytree(resolved, out_dir, dirs_exist_ok=True, ignore=_ignore_junk)
        else:
            shutil.copy2(resolved, out_dir / resolved.name)

    def load(
        self,
        snapshot: Path,
        num_labels: int,
        init: str,
        settings: Any,
        trust_remote_code: bool = False,
    ) -> LoadedModel:
        raise NotImplementedError

    def fit(self, texts: Sequence[str], labels: Any, seed: int) -> dict[str, Any]:
        raise NotImplementedError(f"{self.name} is a neural adapter: use load()")

    def save(self, state: dict[str, Any], out_dir: Path) -> None:
        raise NotImplementedError(f"{self.name} is a neural adapter: use load()")

    def predict_proba(self, out_dir: Path, texts: Sequence[str], num_labels: int) -> Any:
        raise NotImplementedError(f"{self.name} is a neural adapter: use load()")

    def load_fitted(self, out_dir: Path) -> Any:
        """The state `save` wrote, loaded once; its `predict(texts, num_labels)` gives the
        numbers `predict_proba` does."""
        raise NotImplementedError(f"{self.name} is a neural adapter: use load()")


def _ignore_junk(directory: str, names: list[str]) -> list[str]:
    return [n for n in names if n in {"__pycache__", ".git"} or n.endswith(".pyc")]


def last_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    """Name and module of the last `nn.Linear` in registration order (the classifier)."""
    from torch import nn

    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise ValueError(f"{type(model).__name__} has no nn.Linear classifier")
    return found[-1]


def replace_module(model: nn.Module, dotted: str, new: nn.Module) -> None:
    """Replace the sub-module at `dotted` (e.g. 'classifier.1') with `new`."""
    parent_name, _, child = dotted.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)
