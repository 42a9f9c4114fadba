"""Where neural work runs and in which precision.

`device` (auto | cpu | cuda) and `precision` (auto | fp32 | bf16 | fp16) are settings; they are
resolved on the machine that runs the job (a cluster's compute node, not its login node), and
the resolved pair is recorded in the tables the job writes (the history's `device` and
`precision` columns).

- ``device: auto`` is CUDA when torch sees a GPU, else the CPU.
- ``precision: auto`` is bf16 where the hardware computes it natively — a CUDA GPU with bf16
  (Ampere and later), a CPU with AVX512-BF16 or AMX — and fp32 otherwise: on a CPU without them
  a bf16 matmul is emulated and hundreds of times slower than fp32 (measured: 0.28 vs 110
  GFLOP/s on an AVX2-only EPYC, benchmarks/finetune_throughput.py).
- Reduced precision is mixed precision: `torch.autocast` around forward passes and losses, the
  weights and the optimizer state stay fp32; fp16 adds a gradient scaler.

The scheduler's GPU request is decided where the workflow is planned (`gpu_requested`), without
importing torch: ``cuda`` always asks for one; ``auto`` asks when the planning machine has an
NVIDIA GPU (on a cluster, set ``device: cuda`` to get GPU nodes).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

from ptmeval.errors import ConfigError

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def gpu_requested(device: str) -> bool:
    """Whether a job on `device` should ask the scheduler for a GPU (no torch import)."""
    if device == "cuda":
        return True
    if device == "cpu":
        return False
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    gpus = Path("/proc/driver/nvidia/gpus")
    return gpus.is_dir() and any(gpus.iterdir())


def cpu_has_bf16() -> bool:
    """The CPU computes bf16 natively (AVX512-BF16 or AMX tiles)."""
    import torch

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


@dataclasses.dataclass(frozen=True)
class Placement:
    """A resolved device and precision."""

    device: str  # "cpu" | "cuda"
    precision: str  # "fp32" | "bf16" | "fp16"

    @property
    def dtype(self) -> Any:
        import torch

        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision, torch.float32)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Mixed precision for a forward pass (and its loss); nothing in fp32."""
        import torch

        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device, dtype=self.dtype)

    def grad_scaler(self) -> Any:
        """A gradient scaler for fp16 training; None otherwise."""
        import torch

        if self.precision != "fp16":
            return None
        return torch.amp.GradScaler(self.device)

    def to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        if self.device == "cpu":
            return batch
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def columns(self) -> dict[str, str]:
        """The columns that record it in a table."""
        return {"device": self.device, "precision": self.precision}


CPU_FP32 = Placement("cpu", "fp32")


def resolve(device: str = "auto", precision: str = "auto") -> Placement:
    """The placement for this machine; a requested device or precision it lacks is an error
    that names the setting (a silent fallback would change results without saying so)."""
    import torch

    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, not {device!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    cuda = torch.cuda.is_available()
    if device == "cuda" and not cuda:
        raise ConfigError(
            "finetune.device is 'cuda' but torch sees no CUDA GPU on this machine "
            "(use 'auto' to fall back to the CPU)"
        )
    dev = "cuda" if device == "cuda" or (device == "auto" and cuda) else "cpu"
    if precision == "auto":
        native = torch.cuda.is_bf16_supported() if dev == "cuda" else cpu_has_bf16()
        precision = "bf16" if native else "fp32"
    elif precision == "bf16" and dev == "cpu" and not cpu_has_bf16():
        log.warning(
            "precision bf16 on a CPU without AVX512-BF16 or AMX: emulated, very slow "
            "('auto' would pick fp32 here)"
        )
    return Placement(dev, precision)


def place(loaded: Any, placement: Placement) -> Any:
    """Move a LoadedModel's module to the placement's device and make its `logits` and
    `features` views run there in its precision (inputs moved, outputs left on the device)."""
    loaded.model.to(placement.device)
    if loaded.source_head is not None:
        loaded.source_head.to(placement.device)
    loaded.placement = placement
    return loaded
