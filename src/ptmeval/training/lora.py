"""LoRA through Hugging Face PEFT (`method: lora`, hf-text models): the pretrained weights stay
frozen, rank-r updates of the target modules and the whole task head are trained. The training
itself is the plain path's (ptmeval.training.full): same protocol, checkpoints and resume.

What a task costs to store is the adapter (LoRA matrices and the head), written with PEFT's own
`save_pretrained`; what later stages read (export check, deployment variants) is the merged
model, written like a full fine-tune's weights, so they need no PEFT.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ptmeval.config import LoraSettings
from ptmeval.errors import ConfigError
from ptmeval.jobs import ModelJob

log = logging.getLogger(__name__)

ADAPTER_DIR = "adapter"  # in the fine-tune's model folder: adapter_model.safetensors, config


def lora_config(job: ModelJob, model: Any) -> Any:
    """PEFT's LoraConfig for the job (sequence classification: PEFT trains the head fully)."""
    from peft import LoraConfig, TaskType

    settings = job.lora or LoraSettings()
    targets: Sequence[str] | None = settings.target_modules
    if targets is None:
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

        model_type = str(getattr(getattr(model, "config", None), "model_type", ""))
        targets = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(model_type)
        if targets is None:
            raise ConfigError(
                f"models '{job.model}'.lora.target_modules: PEFT has no default for model type "
                f"'{model_type}'; name the modules to adapt (e.g. the attention projections)"
            )
    return LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(targets),
    )


def apply_lora(loaded: Any, job: ModelJob) -> Any:
    """Wrap `loaded.model` with LoRA adapters (in place); only adapters and head train."""
    from peft import get_peft_model

    config = lora_config(job, loaded.model)
    try:
        model = get_peft_model(loaded.model, config)
    except ValueError as err:  # e.g. target modules not found in the model
        raise ConfigError(f"models '{job.model}'.lora: {err}") from None
    loaded.model = model
    trainable, total = model.get_nb_trainable_parameters()
    log.info(
        "LoRA r=%d alpha=%g on %s: %d of %d parameters trainable (%.2f%%)",
        config.r,
        config.lora_alpha,
        ",".join(sorted(config.target_modules)),
        trainable,
        total,
        100.0 * trainable / total,
    )
    return loaded


def trainable_parameters(loaded: Any, job: ModelJob) -> int:
    """Parameters LoRA would train on `loaded.model` (it is wrapped in place: call last)."""
    return int(apply_lora(loaded, job).model.get_nb_trainable_parameters()[0])


def save_adapter(loaded: Any, out: Path) -> int:
    """Write the adapter (PEFT format) under `out`/adapter; its size in bytes: what one more
    task costs to store on top of the shared base model."""
    folder = out / ADAPTER_DIR
    loaded.model.save_pretrained(str(folder))
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def merge(loaded: Any) -> Any:
    """The adapters merged into the base weights: a plain transformers model again."""
    loaded.model = loaded.model.merge_and_unload()
    return loaded
