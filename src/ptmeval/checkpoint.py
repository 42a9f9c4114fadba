"""Training checkpoints: everything a killed fine-tune needs to resume and end exactly where an
uninterrupted run would (model, optimizer, scheduler, every RNG state, the epoch's data order
and position, the history so far).

Tensors go to safetensors and everything else to JSON — nothing is unpickled on load. A
checkpoint is written to a temporary folder and renamed into place, so a kill during a write
leaves the previous checkpoint intact. It carries the hash of the job's settings; a checkpoint
from different settings is ignored (and replaced).
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

STATE = "state.json"
TENSORS = "tensors.safetensors"


def _optimizer_tensors(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split an optimizer state_dict into flat tensors and a JSON-able remainder."""
    import torch

    tensors: dict[str, torch.Tensor] = {}
    rest: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for index, slots in state["state"].items():
        rest["state"][str(index)] = {}
        for key, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{key}"] = value.detach().contiguous().clone()
                rest["state"][str(index)][key] = "__tensor__"
            else:
                rest["state"][str(index)][key] = value
    return tensors, rest


def _optimizer_state(tensors: dict[str, Any], rest: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for index, slots in rest["state"].items():
        state[int(index)] = {
            key: tensors[f"optim.{index}.{key}"] if value == "__tensor__" else value
            for key, value in slots.items()
        }
    return {"state": state, "param_groups": rest["param_groups"]}


def save_checkpoint(
    folder: Path,
    params_hash: str,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    generator: Any,
    progress: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> None:
    """Write the training state atomically to `folder` (replacing an older checkpoint);
    `extra` tensors (e.g. the best validation point's weights) travel with it."""
    import torch
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    tensors = {f"model.{k}": v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    optim_tensors, optim_rest = _optimizer_tensors(optimizer.state_dict())
    tensors.update(optim_tensors)
    for key, value in (extra or {}).items():
        tensors[f"extra.{key}"] = value.detach().contiguous().clone()
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.generator"] = generator.get_state()
    np_state: Any = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(
        np.asarray(np_state[1], dtype=np.uint32).astype(np.int64)
    )
    save_file(_dedupe(tensors), tmp / TENSORS)
    state = {
        "params_hash": params_hash,
        "optimizer": optim_rest,
        "scheduler": scheduler.state_dict(),
        "numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": _py_state(random.getstate()),
        "progress": progress,
    }
    (tmp / STATE).write_text(json.dumps(state))
    old = folder.with_name(folder.name + ".old")
    if old.exists() and folder.exists():
        shutil.rmtree(old)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    if old.exists():
        shutil.rmtree(old)


def _dedupe(tensors: dict[str, Any]) -> dict[str, Any]:
    """safetensors refuses tensors that share memory: give each its own storage."""
    seen: set[int] = set()
    out = {}
    for key, value in tensors.items():
        ptr = value.data_ptr()
        out[key] = value.clone() if ptr in seen and value.numel() else value
        seen.add(ptr)
    return out


def _py_state(state: tuple[Any, ...]) -> list[Any]:
    return [state[0], list(state[1]), state[2]]


def load_checkpoint(
    folder: Path,
    params_hash: str,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    generator: Any,
) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
    """Restore the state saved by `save_checkpoint`; returns (progress, extra tensors or None),
    or None when there is no usable checkpoint for these settings."""
    import torch
    from safetensors.torch import load_file

    folder = Path(folder)
    if not folder.exists():  # a kill between the two renames leaves the previous one as .old
        old = folder.with_name(folder.name + ".old")
        if old.exists():
            os.replace(old, folder)
    if not (folder / STATE).exists() or not (folder / TENSORS).exists():
        return None
    try:
        state = json.loads((folder / STATE).read_text())
        tensors = load_file(folder / TENSORS)
    except (OSError, ValueError) as err:
        log.warning("checkpoint %s unreadable (%s): starting over", folder, err)
        return None
    if state.get("params_hash") != params_hash:
        log.warning("checkpoint %s is from other settings: starting over", folder)
        return None
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    optimizer.load_state_dict(_optimizer_state(tensors, state["optimizer"]))
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(tensors["rng.torch"])
    generator.set_state(tensors["rng.generator"])
    kind, pos, has_gauss, cached = state["numpy"]
    np.random.set_state(
        (kind, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, cached)
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    progress: dict[str, Any] = state["progress"]
    extra = {k[6:]: v for k, v in tensors.items() if k.startswith("extra.")}
    return progress, extra or None


def remove_checkpoint(folder: Path) -> None:
    for path in (Path(folder), Path(str(folder) + ".tmp"), Path(str(folder) + ".old")):
        if path.exists():
            shutil.rmtree(path)
