"""Helpers behind rules/common.smk: job enumeration, per-rule settings, code versions.

Imported while the Snakefile is parsed: keep it free of torch/transformers/pandas imports.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ptmeval.adapters import get_spec
from ptmeval.config import Config, FinetuneSettings, fraction_slug
from ptmeval.jobs import FinetuneJob, ModelJob

PACKAGE_DIR = Path(__file__).resolve().parent

# The library files each stage's results depend on (besides its params and inputs).
STAGE_CODE: dict[str, tuple[str, ...]] = {
    "download_model": ("sources.py", "adapters"),
    "prepare_task": ("tasks", "_catalog.py", "_columns.py"),
    "subsample": ("subsample.py", "tasks/__init__.py"),
    "profile_model": ("profiling.py", "training.py", "adapters"),
    "extract_features": ("training.py", "adapters"),
    "finetune": ("training.py", "adapters", "metrics.py"),
    "evaluate": ("evaluation.py", "training.py", "adapters", "metrics.py"),
    "aggregate": ("aggregate.py",),
    "render_report": ("report.py", "templates"),
}

# Settings that only inference-time stages (profile, features) depend on.
INFERENCE_FIELDS = ("max_length", "image_size", "eval_batch_size")


def code_version(stage: str) -> str:
    """Hash of the library sources a stage depends on (Snakemake does not see inside imports)."""
    digest = hashlib.sha256()
    for entry in STAGE_CODE[stage]:
        path = PACKAGE_DIR / entry
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        for file in files:
            if file.is_file() and file.suffix in (".py", ".j2", ".html"):
                digest.update(str(file.relative_to(PACKAGE_DIR)).encode())
                digest.update(file.read_bytes())
    return digest.hexdigest()[:12]


def finetune_targets(cfg: Config) -> list[dict[str, str]]:
    """Wildcards of every fine-tune job: model × task (same modality) × fraction × seed × init."""
    jobs = []
    for model, task in cfg.pairs():
        for fraction in cfg.subsample.fractions:
            for seed in cfg.subsample.seeds:
                for init in model.init_list:
                    jobs.append(
                        {
                            "model": model.slug,
                            "task": task.slug,
                            "fraction": fraction_slug(fraction),
                            "seed": str(seed),
                            "init": init,
                        }
                    )
    return jobs


def neural_models(cfg: Config) -> list[str]:
    return [m.slug for m in cfg.models if get_spec(m.adapter).neural]


def model_job(cfg: Config, model: str, inference_only: bool = False) -> dict[str, Any]:
    """Params of a per-model job; `inference_only` keeps only the settings inference uses, so
    that a change of e.g. the learning rate does not rerun profiling or feature extraction."""
    entry = cfg.model(model)
    settings = cfg.finetune_settings(model)
    if inference_only:
        settings = FinetuneSettings(**{f: getattr(settings, f) for f in INFERENCE_FIELDS})
    job = ModelJob(
        model=model,
        adapter=entry.adapter,
        method=entry.method,
        options=entry.options,
        trust_remote_code=entry.trust_remote_code,
        finetune=settings,
    )
    return job.model_dump(mode="json")


def finetune_job(cfg: Config, wildcards: Any) -> dict[str, Any]:
    """Params of one fine-tune/evaluate job."""
    base = model_job(cfg, wildcards.model)
    job = FinetuneJob(
        **base,
        task=wildcards.task,
        fraction=float(wildcards.fraction),
        seed=int(wildcards.seed),
        init=wildcards.init,
    )
    return job.model_dump(mode="json")
