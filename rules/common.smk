"""Config validation, job enumeration and input functions shared by every rule."""

import sys
from pathlib import Path
from argparse import Namespace

from snakemake.utils import validate

from ptmeval.config import config_hash, fraction_slug, load_config
from ptmeval.errors import ConfigError
from ptmeval.findings import retry_failed
from ptmeval._cache import awaiting_recompute, changes_nothing, quarantine_damaged
from ptmeval.workflow import (
    PACKAGE_DIR,
    finetune_mem_mb,
    gpus_for,
    benchmark_files,
    estimate_params,
    code_version as library_code_version,
    export_job_wildcards,
    is_export_job,
    export_targets,
    finetune_job,
    finetune_targets,
    model_job,
    neural_models,
    runtime_inputs,
    runtime_settings,
    source_files,
    source_fingerprint,
    transfer_targets,
    tune_job_wildcards,
    tune_targets,
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

# A damaged cache file (e.g. truncated by a full disk) is moved aside, named, and recomputed
# with what depends on it; a dry run, a lint or a job's re-parse only names it.
_DRY = changes_nothing(sys.argv[1:], workflow.is_main_process)
for _damaged, _moved in quarantine_damaged("results", move=not _DRY):
    print(
        f"ptmeval: '{_damaged}' is damaged (truncated?); "
        + (
            "it will be moved aside and recomputed by a real run"
            if _DRY
            else f"moved to '{_moved}' to be recomputed"
        ),
        file=sys.stderr,
    )

# A model's failed jobs (failure records, see ptmeval.findings) are tried again by a real run:
# the records are removed and the tables among them asked for (RETRY, targets of `all`).
_RETRIED = retry_failed("results", remove=not _DRY)
if _RETRIED:
    print(
        f"ptmeval: {len(_RETRIED)} outputs of failed jobs (e.g. '{_RETRIED[0]}'); "
        + ("a real run tries them again" if _DRY else "trying them again"),
        file=sys.stderr,
    )

CONFIG_HASH = config_hash(CFG.model_dump(mode="json"))


def code_version(stage):
    """A rule's code version: its script and the library modules it really imports."""
    return library_code_version(stage, Path(workflow.basedir) / "scripts")


FT_JOBS = finetune_targets(CFG)
NEURAL = neural_models(CFG)
REPORT = f"reports/{CFG.run_name}/index.html"
TEMPLATE = str(PACKAGE_DIR / "templates" / "report.html.j2")
JOB_PATH = "{model}/{task}/{fraction}/{seed}/{init}"
EXPORTS = export_targets(CFG)
TRANSFERS = transfer_targets(CFG)
AGGREGATES = [
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
    """What the download depends on: not the per-model fine-tune settings or inits."""
    return CFG.model(wildcards.model).model_dump(
        mode="json", exclude={"finetune", "inits"}
    )


def get_model_source_files(wildcards):
    """Every file of a local source is an input, so that replacing one reruns the download."""
    return source_files(CFG, wildcards.model)


def get_source_fingerprint(wildcards):
    return source_fingerprint(CFG, wildcards.model)


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


def get_finetune_mem_mb(wildcards, attempt):
    return finetune_mem_mb(CFG, wildcards.model, attempt)


def get_gpus(wildcards):
    return gpus_for(CFG, wildcards.model)


def get_feature_gpus(wildcards):
    return gpus_for(CFG, wildcards.model, "features")


def get_features_job(wildcards):
    return model_job(CFG, wildcards.model, inference_only=True, placed=True)


def get_finetune_job(wildcards):
    return finetune_job(CFG, wildcards)


def get_tune_job(wildcards):
    return finetune_job(CFG, Namespace(**tune_job_wildcards(CFG, wildcards)))


def get_tune_inputs(wildcards):
    """A fine-tune's inputs at the largest size with the first seed, without the choice."""
    inputs = get_finetune_inputs(Namespace(**tune_job_wildcards(CFG, wildcards)))
    inputs.pop("hparams")
    return inputs


def get_finetune_inputs(wildcards):
    """Task data, subset and the chosen hyperparameter always; the snapshot (full) or the
    cached features (probe)."""
    inputs = {
        "data": f"results/tasks/{wildcards.task}/data.parquet",
        "subset": f"results/subsample/{wildcards.task}/{wildcards.fraction}/{wildcards.seed}/train.parquet",
        "hparams": f"results/tune/{wildcards.model}/{wildcards.task}/{wildcards.init}.parquet",
    }
    if is_probe(wildcards):
        inputs["features"] = (
            f"results/features/{wildcards.model}/{wildcards.task}/{wildcards.init}.parquet"
        )
    elif is_neural(wildcards):
        inputs["snapshot"] = f"results/download/{wildcards.model}/snapshot"
    return inputs


def keeps_weights(wildcards):
    return is_export_job(CFG, wildcards)


def get_runtime_inputs(wildcards):
    """A neural model's snapshot; a classical model's fitted state and its task's data."""
    return runtime_inputs(CFG, wildcards.model)


def get_runtime_settings(wildcards):
    return runtime_settings(CFG, wildcards.model)


def get_export_job(wildcards):
    chosen = export_job_wildcards(CFG, wildcards.model, wildcards.task)
    return finetune_job(CFG, Namespace(**chosen))


def get_export_inputs(wildcards):
    chosen = export_job_wildcards(CFG, wildcards.model, wildcards.task)
    return {
        "data": f"results/tasks/{wildcards.task}/data.parquet",
        "snapshot": f"results/download/{wildcards.model}/snapshot",
        "model": f"results/finetune/{JOB_PATH}/model".format(**chosen),
    }


def get_analysis_settings(wildcards):
    return {
        **CFG.analysis.model_dump(mode="json"),
        "hardware": [h.model_dump(mode="json") for h in CFG.hardware],
        "models": {m.slug: m.adapter for m in CFG.models},
        "weights": CFG.scorecard.weights,
        "constraint": CFG.scorecard.constraint,
    }


def get_all_job_files(kind):
    """Every per-job table of one kind: metrics, predictions or history."""
    stage = "finetune" if kind == "history" else "evaluate"
    return [
        f"results/{stage}/{JOB_PATH}/{kind}.parquet".format(**job) for job in FT_JOBS
    ]


def get_aggregate_inputs(wildcards):
    return {
        "metrics": get_all_job_files("metrics"),
        "tuning": [
            "results/tune/{model}/{task}/{init}.parquet".format(**t)
            for t in tune_targets(CFG)
        ],
        "histories": get_all_job_files("history"),
        "profiles": [f"results/profile/{m}.parquet" for m in NEURAL],
        "manifests": [f"results/download/{m}/manifest.parquet" for m in NEURAL],
        "tasks": [f"results/tasks/{t.slug}/summary.parquet" for t in CFG.tasks],
        "predictions": get_all_job_files("predictions"),
        "runtimes": [f"results/runtime/{m.slug}.parquet" for m in CFG.models],
        "exports": [
            f"results/export/{e['model']}/{e['task']}.parquet" for e in EXPORTS
        ],
        "deployments": [
            f"results/export/{e['model']}/{e['task']}.variants.parquet" for e in EXPORTS
        ],
        "transfers": [
            f"results/transfer/{t['model']}/{t['task']}.parquet" for t in TRANSFERS
        ],
        "benchmarks": benchmark_files(CFG),
        "estimate": f"results/estimate/{CFG.run_name}.parquet",
    }


def get_estimate_params(wildcards):
    return estimate_params(CFG)


def expected_tables():
    """Every Parquet table the current config produces: the inputs of `aggregate` and of every
    fine-tune (task data, subsets, features), and the aggregates."""
    tables = {f"results/aggregate/{CFG.run_name}/{name}.parquet" for name in AGGREGATES}
    for files in get_aggregate_inputs(None).values():
        tables.update([files] if isinstance(files, str) else files)
    for job in FT_JOBS:
        tables.update(get_finetune_inputs(Namespace(**job)).values())
    return {t for t in tables if t.endswith(".parquet")}


# Damaged tables moved aside (now or by an interrupted run) are targets of `all` until they
# are recomputed, so that they and everything downstream of them run again.
_PENDING = awaiting_recompute("results")
RECOMPUTE = sorted(set(_PENDING) & expected_tables()) if _PENDING else []
RETRY = sorted(set(_RETRIED) & expected_tables()) if _RETRIED else []


def get_transfer_subsets(wildcards):
    """Every training subset (fraction × seed) of the task: the frozen-feature probe that a full
    fine-tune is checked against is fitted on each."""
    return [
        f"results/subsample/{wildcards.task}/{fraction_slug(fraction)}/{seed}/train.parquet"
        for fraction in CFG.subsample.fractions
        for seed in CFG.subsample.seeds
    ]


def get_frozen_probe_tables(wildcards):
    """The frozen-feature probe scores of every model × task with transfer scores."""
    return {
        "frozen": [
            f"results/transfer/{t['model']}/{t['task']}/frozen_probe.parquet"
            for t in TRANSFERS
        ]
    }
