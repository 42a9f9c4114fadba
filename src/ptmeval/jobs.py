"""Typed settings that rule scripts receive through `params` (built in rules/common.smk)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from ptmeval.config import FinetuneSettings, LoraSettings


class ModelJob(BaseModel):
    """What a job needs to know about one model."""

    model_config = ConfigDict(extra="forbid")

    model: str
    adapter: str
    method: Literal["full", "linear_probe", "lora"] = "full"
    options: dict[str, Any] = {}
    trust_remote_code: bool = False
    finetune: FinetuneSettings = FinetuneSettings()
    lora: LoraSettings | None = None  # method lora: its settings (defaults when not given)


class FinetuneJob(ModelJob):
    """One fine-tune (or evaluation) job: a model × task × fraction × seed × init."""

    task: str
    fraction: float
    seed: int
    init: Literal["pretrained", "scratch"]
    metric: Literal["accuracy", "macro_f1"] = "accuracy"  # validation: selection, early stop

    def keys(self) -> dict[str, Any]:
        """The columns that identify this job's rows in every per-job table."""
        return {
            "model": self.model,
            "task": self.task,
            "fraction": self.fraction,
            "seed": self.seed,
            "init": self.init,
            "method": self.method,
        }
