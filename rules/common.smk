"""Config validation, job enumeration and input functions shared by every rule."""

import sys

from snakemake.utils import validate

from ptmeval.config import config_hash, load_config
from ptmeval.errors import ConfigError
from ptmeval.workflow import (
    PACKAGE_DIR,
    code_version,
    finetune_job,
    finetune_targets,
    model_job,
    neural_models,
)

# Validated before anything runs: the typed models (one-line messages naming the culprit, and
# the checks that need the file system: packages installed, files and columns present), then
# the JSON schema generated from the same models.
try:
    CFG = load_config(config)
except ConfigError as err:
    sys.exit(f"ptmeval: {err}")
try:
    validate(config, workflow.source_path("../config/schema.json"), set_default=False)
except Exception as err:
    sys.exit(f"ptmeval: invalid config: {str(err).splitlines()[0]}")

CONFIG_HASH = config_hash(CFG.model_dump(mode="json"))
FT_JOBS = finetune_targets(CFG)
NEURAL = neural_models(CFG)
REPORT = f"reports/{CFG.run_name}/index.html"
TEMPLATE = str(PACKAGE_DIR / "templates" / "report.html.j2")
JOB_PATH = "{model}/{task}/{fraction}/{seed}/{init}"
AGGREGATES = [
    "results",
    "learning_curve",
    "history",
    "finetune_cost",
    "profile",
    "manifest",
    "tasks",
]


wildcard_constraints:
    model=r"[a-z0-9][a-z0-9_.-]*",
    task=r"[a-z0-9][a-z0-9_.-]*",
    fraction=r"[0-9.e-]+",
    seed=r"-?[0-9]+",
    init=r"pretrained|scratch",


localrules:
    aggregate,
    render_report,


def is_neural(wildcards):
    return wildcards.model in NEURAL


def is_probe(wildcards):
    return CFG.model(wildcards.model).method == "linear_probe" and is_neural(wildcards)


def get_model_entry(wildcards):
    return CFG.model(wildcards.model).model_dump(mode="json")


def get_model_source_files(wildcards):
    """Local source paths are inputs, so that replacing the weights reruns the download."""
    src = CFG.model(wildcards.model).source
    return [src.path] if src is not None and src.kind == "path" else []


def get_task_entry(wildcards):
    return CFG.task(wildcards.task).model_dump(mode="json")


def get_task_files(wildcards):
    src = CFG.task(wildcards.task).source
    return [src.path] if src.kind in ("file", "imagefolder") else []


def get_fraction(wildcards):
    return float(wildcards.fraction)


def get_seed(wildcards):
    return int(wildcards.seed)


def get_inference_job(wildcards):
    return model_job(CFG, wildcards.model, inference_only=True)


def get_finetune_job(wildcards):
    return finetune_job(CFG, wildcards)


def get_finetune_inputs(wildcards):
    """Task data and subset always; the snapshot (full) or the cached features (probe)."""
    inputs = {
        "data": f"results/tasks/{wildcards.task}/data.parquet",
        "subset": f"results/subsample/{wildcards.task}/{wildcards.fraction}/{wildcards.seed}/train.parquet",
    }
    if is_probe(wildcards):
        inputs["features"] = (
            f"results/features/{wildcards.model}/{wildcards.task}/{wildcards.init}.parquet"
        )
    elif is_neural(wildcards):
        inputs["snapshot"] = f"results/download/{wildcards.model}/snapshot"
    return inputs


def get_evaluate_inputs(wildcards):
    inputs = get_finetune_inputs(wildcards)
    inputs["model"] = f"results/finetune/{JOB_PATH}/model".format(**wildcards)
    return inputs


def get_all_job_files(kind):
    """Every per-job table of one kind: metrics, predictions or history."""
    stage = "finetune" if kind == "history" else "evaluate"
    return [
        f"results/{stage}/{JOB_PATH}/{kind}.parquet".format(**job) for job in FT_JOBS
    ]


def get_aggregate_inputs(wildcards):
    return {
        "metrics": get_all_job_files("metrics"),
        "histories": get_all_job_files("history"),
        "profiles": [f"results/profile/{m}.parquet" for m in NEURAL],
        "manifests": [f"results/download/{m}/manifest.parquet" for m in NEURAL],
        "tasks": [f"results/tasks/{t.slug}/summary.parquet" for t in CFG.tasks],
    }
