"""The workflow's plan: where every job of a config writes, and under which settings key.

Every per-job output lives at ``results/<stage>/<identity…>/<key>/<file>``: the identity is
what the job is about (model, task, fraction, seed, init), the key a short hash of everything
else its result depends on: the job's own settings (the params its rule passes) and the keys of
the jobs whose outputs it reads. Two configs that use the same slugs with different settings
therefore write to different folders, and a job is shared between runs exactly when its settings
and its inputs' settings are the same, so switching configs back and forth recomputes nothing.
A setting reaches a key only through the params of the jobs that use it (see
`ptmeval.workflow.relevant_fields`), so a change reruns only those jobs and what reads them.
The key leaves out the code version: a changed stage reruns in place (Snakemake's code trigger).

Logs and benchmark files follow the same scheme: ``logs/<rule>/<identity…>/<key>.log``,
``results/benchmarks/<rule>/<identity…>/<key>.tsv``. Rules, input functions, the aggregate's
inputs, the estimate's profile cache and the memory a fine-tune asks for all take their paths
from here. Imported while the Snakefile is parsed: no heavy imports.
"""

from __future__ import annotations

import hashlib
import json
from argparse import Namespace
from pathlib import Path
from typing import Any

from ptmeval.config import Config, fraction_slug
from ptmeval.workflow import (
    export_job_wildcards,
    export_targets,
    feature_targets,
    finetune_job,
    finetune_targets,
    is_export_job,
    model_job,
    neural_models,
    runtime_job_wildcards,
    runtime_models,
    runtime_settings,
    source_fingerprint,
    transfer_targets,
    tune_job_wildcards,
    tune_targets,
)

KEY_LENGTH = 8
KEY_PATTERN = rf"[0-9a-f]{{{KEY_LENGTH}}}"

# What a job is about, in path order.
IDENTITY: dict[str, tuple[str, ...]] = {
    "download": ("model",),
    "tasks": ("task",),
    "subsample": ("task", "fraction", "seed"),
    "profile": ("model",),
    "features": ("model", "task", "init"),
    "tune": ("model", "task", "init"),
    "finetune": ("model", "task", "fraction", "seed", "init"),
    "evaluate": ("model", "task", "fraction", "seed", "init"),
    "transfer": ("model", "task"),
    "export": ("model", "task"),
    "runtime": ("model",),
}
# The rule that computes each stage (names of its log and benchmark folders).
RULE = {
    "download": "download_model",
    "tasks": "prepare_task",
    "subsample": "subsample",
    "profile": "profile_model",
    "features": "extract_features",
    "tune": "select_hparams",
    "finetune": "finetune",
    "evaluate": "evaluate",
    "transfer": "transfer_scores",
    "export": "export_check",
    "runtime": "measure_runtime",
}
# Each stage's outputs: the rule's output name -> the file (or folder) in the job's folder.
FILES: dict[str, dict[str, str]] = {
    "download": {"snapshot": "snapshot", "manifest": "manifest.parquet"},
    "tasks": {"data": "data.parquet", "summary": "summary.parquet"},
    "subsample": {"subset": "train.parquet"},
    "profile": {"profile": "profile.parquet"},
    "features": {"features": "features.parquet"},
    "tune": {"table": "choice.parquet"},
    "finetune": {"history": "history.parquet", "probs": "test_probs.parquet", "model": "model"},
    "evaluate": {"metrics": "metrics.parquet", "predictions": "predictions.parquet"},
    "transfer": {"scores": "scores.parquet", "frozen": "frozen_probe.parquet"},
    "export": {"export": "export.parquet", "variants": "variants.parquet"},
    "runtime": {"runtime": "runtime.parquet"},
}

# The run's aggregate tables (results/aggregate/<run_name>/<name>.parquet), as ptmeval.aggregate
# returns them (it checks that it produced exactly these).
AGGREGATE_TABLES = (
    "results",
    "learning_curve",
    "history",
    "finetune_cost",
    "profile",
    "manifest",
    "tasks",
    "runtime",
    "accessibility",
    "export",
    "deployment",
    "compatibility",
    "structure",
    "fits",
    "curve_band",
    "data_needed",
    "transfer_gain",
    "effective_data",
    "process",
    "difficulty",
    "pairwise",
    "ranks",
    "transfer",
    "transfer_prediction",
    "task_similarity",
    "prediction_points",
    "prediction_cost",
    "reuse",
    "scorecard",
    "scorecard_parts",
    "decision",
    "failures",
    "machines",
    "stage_times",
    "pareto",
    "similarity_vs_gain",
    "protocol_check",
    "tuning",
    "methods",
)

Ref = tuple[str, dict[str, str], str]  # (stage, identity, output name)
Upstream = dict[str, Ref | list[Ref]]


def _folder(stage: str) -> str:
    return "/".join("{" + name + "}" for name in IDENTITY[stage]) + "/{key}"


def pattern(stage: str, name: str) -> str:
    """The Snakemake output pattern of one of a stage's outputs."""
    return f"results/{stage}/{_folder(stage)}/{FILES[stage][name]}"


def log_pattern(stage: str) -> str:
    return f"logs/{RULE[stage]}/{_folder(stage)}.log"


def benchmark_pattern(stage: str) -> str:
    return f"results/benchmarks/{RULE[stage]}/{_folder(stage)}.tsv"


def checkpoint_pattern() -> str:
    return f"results/checkpoints/{_folder('finetune')}"


def identity(stage: str, wildcards: Any) -> dict[str, str]:
    """A job's identity from its wildcards (a Snakemake Wildcards object or a mapping)."""
    get = wildcards.get if isinstance(wildcards, dict) else lambda k: getattr(wildcards, k)
    return {name: str(get(name)) for name in IDENTITY[stage]}


def _digest(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_LENGTH]


class Plan:
    """The jobs of one config: their params, inputs, settings keys and paths."""

    def __init__(self, cfg: Config, root: str | Path = "results"):
        self.cfg = cfg
        self.root = str(root)
        self._keys: dict[tuple[str, tuple[str, ...]], str] = {}

    # -- what a job depends on --------------------------------------------------------------

    def params(self, stage: str, ids: dict[str, str]) -> dict[str, Any]:
        """The result-changing params the stage's rule passes its script (code version aside)."""
        cfg, model = self.cfg, ids.get("model", "")
        if stage == "download":
            # what the weights are, not how they are adapted: one download per base model
            exclude = {"finetune", "inits", "method", "methods", "lora"}
            entry = cfg.model(model).model_dump(mode="json", exclude=exclude)
            entry["slug"] = model
            return {"entry": entry, "fingerprint": source_fingerprint(cfg, model)}
        if stage == "tasks":
            task = cfg.task(ids["task"]).model_dump(mode="json")
            return {"task": task, "split_seed": cfg.split_seed}
        if stage == "subsample":
            return {"fraction": float(ids["fraction"]), "seed": int(ids["seed"])}
        if stage == "profile":
            return {"job": model_job(cfg, model, inference_only=True)}
        if stage == "features":
            # frozen features do not depend on the method: shared by a base model's methods
            job = model_job(cfg, model, inference_only=True, placed=True)
            job.update(method="linear_probe", lora=None)
            return {"job": job, "init": ids["init"]}
        if stage == "tune":
            return {
                "job": finetune_job(cfg, Namespace(**tune_job_wildcards(cfg, Namespace(**ids))))
            }
        if stage == "finetune":
            wildcards = Namespace(**ids)
            return {
                "job": finetune_job(cfg, wildcards),
                "keep_weights": is_export_job(cfg, wildcards),
            }
        if stage == "evaluate":
            return {"job": finetune_job(cfg, Namespace(**ids))}
        if stage == "transfer":
            return {}
        if stage == "export":
            chosen = export_job_wildcards(cfg, model, ids["task"])
            return {
                "job": finetune_job(cfg, Namespace(**chosen)),
                "deployment": cfg.deployment.model_dump(mode="json"),
            }
        if stage == "runtime":
            return {
                "job": model_job(cfg, model, inference_only=True),
                "settings": runtime_settings(cfg, model),
            }
        raise KeyError(f"unknown stage '{stage}'")

    def upstream(self, stage: str, ids: dict[str, str]) -> Upstream:
        """The outputs of other jobs that a job reads, by its rule's input names."""
        cfg, model, task = self.cfg, ids.get("model", ""), ids.get("task", "")
        if stage in ("download", "tasks"):
            return {}  # their inputs are the user's files, tracked by time stamp
        data: Ref = ("tasks", {"task": task}, "data")
        if stage == "subsample":
            return {"data": data}
        base = cfg.model(model).base  # a base model's methods share its download and features
        snapshot: Ref = ("download", {"model": base}, "snapshot")
        if stage == "profile":
            return {"snapshot": snapshot, "manifest": ("download", {"model": base}, "manifest")}
        if stage == "features":
            return {"snapshot": snapshot, "data": data}
        if stage == "finetune":
            subset = {k: ids[k] for k in IDENTITY["subsample"]}
            refs: Upstream = {
                "data": data,
                "subset": ("subsample", subset, "subset"),
                "hparams": ("tune", {k: ids[k] for k in IDENTITY["tune"]}, "table"),
            }
            if model in neural_models(cfg):
                if cfg.model(model).method == "linear_probe":
                    refs["features"] = (
                        "features",
                        {"model": base, "task": task, "init": ids["init"]},
                        "features",
                    )
                else:
                    refs["snapshot"] = snapshot
            return refs
        if stage == "tune":
            refs = self.upstream("finetune", tune_job_wildcards(cfg, Namespace(**ids)))
            refs.pop("hparams")
            return refs
        if stage == "evaluate":
            return {"probs": ("finetune", ids, "probs")}
        if stage == "transfer":
            features: Ref = (
                "features",
                {"model": base, "task": task, "init": "pretrained"},
                "features",
            )
            subsets: list[Ref] = [
                (
                    "subsample",
                    {"task": task, "fraction": fraction_slug(f), "seed": str(s)},
                    "subset",
                )
                for f in cfg.subsample.fractions
                for s in cfg.subsample.seeds
            ]
            return {"features": features, "subsets": subsets}
        if stage == "export":
            chosen = export_job_wildcards(cfg, model, task)
            return {"data": data, "snapshot": snapshot, "model": ("finetune", chosen, "model")}
        if stage == "runtime":
            fitted = runtime_job_wildcards(cfg, model)
            if fitted is None:
                return {"model": snapshot}
            return {
                "model": ("finetune", fitted, "model"),
                "data": ("tasks", {"task": fitted["task"]}, "data"),
            }
        raise KeyError(f"unknown stage '{stage}'")

    # -- keys and paths ---------------------------------------------------------------------

    def key(self, stage: str, ids: dict[str, str]) -> str:
        """The job's settings key: its params and its inputs' keys, hashed."""
        ids = {name: str(ids[name]) for name in IDENTITY[stage]}
        memo = (stage, tuple(ids.values()))
        if memo not in self._keys:
            inputs = {
                name: [self.key(s, i) for s, i, _ in refs]
                if isinstance(refs, list)
                else self.key(refs[0], refs[1])
                for name, refs in self.upstream(stage, ids).items()
            }
            payload = {
                "stage": stage,
                "ids": ids,
                "params": self.params(stage, ids),
                "inputs": inputs,
            }
            self._keys[memo] = _digest(payload)
        return self._keys[memo]

    def checked_key(self, stage: str, wildcards: Any) -> str:
        """The key of the job these wildcards name, which must be the key in its path: a path
        asked for by hand with another config's key is refused with one line naming both."""
        ids = identity(stage, wildcards)
        expected = self.key(stage, ids)
        if wildcards.key != expected:
            raise ValueError(
                f"ptmeval: no '{stage}' job {ids} with settings key {wildcards.key} under this "
                f"config (its key here is {expected}): a path with another key belongs to "
                "another config's settings; `snakemake -n` lists the paths of this config's jobs"
            )
        return expected

    def folder(self, stage: str, ids: dict[str, str]) -> str:
        parts = [ids[name] for name in IDENTITY[stage]]
        return "/".join([*parts, self.key(stage, ids)])

    def path(self, stage: str, name: str, ids: dict[str, str]) -> str:
        return f"{self.root}/{stage}/{self.folder(stage, ids)}/{FILES[stage][name]}"

    def snapshot(self, model: str) -> str:
        """The downloaded snapshot a model's jobs read (its base model's: methods share it)."""
        return self.path("download", "snapshot", {"model": self.cfg.model(model).base})

    def benchmark(self, stage: str, ids: dict[str, str]) -> str:
        return f"{self.root}/benchmarks/{RULE[stage]}/{self.folder(stage, ids)}.tsv"

    def inputs(self, stage: str, ids: dict[str, str]) -> dict[str, str | list[str]]:
        """A job's inputs from other jobs, as paths by input name."""
        out: dict[str, str | list[str]] = {}
        for name, refs in self.upstream(stage, ids).items():
            if isinstance(refs, list):
                out[name] = [self.path(s, n, i) for s, i, n in refs]
            else:
                out[name] = self.path(refs[0], refs[2], refs[1])
        return out

    # -- the jobs of each stage -------------------------------------------------------------

    def jobs(self, stage: str) -> list[dict[str, str]]:
        """The identities of every job of a stage that the config runs."""
        cfg = self.cfg
        if stage == "download":
            bases = {cfg.model(m).base: None for m in neural_models(cfg)}
            return [{"model": m} for m in bases]
        if stage == "profile":
            return [{"model": m} for m in neural_models(cfg)]
        if stage == "runtime":
            return [{"model": m} for m in runtime_models(cfg)]
        if stage == "tasks":
            return [{"task": t.slug} for t in cfg.tasks]
        if stage == "subsample":
            seen = {(j["task"], j["fraction"], j["seed"]): None for j in finetune_targets(cfg)}
            return [{"task": t, "fraction": f, "seed": s} for t, f, s in seen]
        if stage in ("finetune", "evaluate"):
            return finetune_targets(cfg)
        if stage == "tune":
            return tune_targets(cfg)
        if stage == "features":
            return feature_targets(cfg)
        if stage == "transfer":
            return transfer_targets(cfg)
        if stage == "export":
            return export_targets(cfg)
        raise KeyError(f"unknown stage '{stage}'")

    def outputs(self, stage: str, name: str) -> list[str]:
        """One output of every job of a stage."""
        return [self.path(stage, name, ids) for ids in self.jobs(stage)]

    def all_outputs(self) -> set[str]:
        """Every output (file or folder) of every job of the config."""
        return {
            self.path(stage, name, ids)
            for stage in IDENTITY
            for ids in self.jobs(stage)
            for name in FILES[stage]
        }

    def benchmarks(self) -> list[str]:
        """The benchmark file of every heavy job (their wall times feed the report)."""
        heavy = (
            "download",
            "profile",
            "runtime",
            "tune",
            "finetune",
            "evaluate",
            "export",
            "features",
        )
        return [self.benchmark(stage, ids) for stage in heavy for ids in self.jobs(stage)]
