"""Config validation, job enumeration and input functions shared by every rule."""

import sys
from pathlib import Path

from snakemake.utils import validate

from ptmeval.config import config_hash, load_config
from ptmeval.errors import ConfigError
from ptmeval.findings import retry_failed
from ptmeval._cache import awaiting_recompute, changes_nothing, quarantine_damaged
from ptmeval.plan import (
    AGGREGATE_TABLES,
    KEY_PATTERN,
    Plan,
    benchmark_pattern,
    checkpoint_pattern,
    identity,
    log_pattern,
    pattern,
)
from ptmeval.workflow import (
    PACKAGE_DIR,
    finetune_mem_mb,
    gpus_for,
    estimate_params,
    threads_for,
    code_version as library_code_version,
    neural_models,
    source_files,
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

CONFIG_HASH = config_hash(CFG.model_dump(mode="json"))


def code_version(stage):
    """A rule's code version: its script and the library modules it really imports."""
    return library_code_version(stage, Path(workflow.basedir) / "scripts")


# Every job's settings key and paths (results/<stage>/<identity>/<key>/…): ptmeval.plan.
PLAN = Plan(CFG)
NEURAL = neural_models(CFG)

# A model's failed jobs (failure records, see ptmeval.findings) are tried again by a real run:
# the records are removed and the tables among them asked for (RETRY, targets of `all`).
_RETRIED = retry_failed("results", remove=not _DRY, wanted=PLAN.all_outputs())
if _RETRIED:
    print(
        f"ptmeval: {len(_RETRIED)} outputs of failed jobs (e.g. '{_RETRIED[0]}'); "
        + ("a real run tries them again" if _DRY else "trying them again"),
        file=sys.stderr,
    )

REPORT = f"reports/{CFG.run_name}/index.html"
TEMPLATE = str(PACKAGE_DIR / "templates" / "report.html.j2")
AGGREGATES = AGGREGATE_TABLES  # the report's tables, one file each (ptmeval.plan)


wildcard_constraints:
    model=r"[a-z0-9][a-z0-9_.-]*",
    task=r"[a-z0-9][a-z0-9_.-]*",
    fraction=r"[0-9.e-]+",
    seed=r"-?[0-9]+",
    init=r"pretrained|scratch",
    key=KEY_PATTERN,


localrules:
    aggregate,
    render_report,


def inputs_of(stage):
    """A rule's inputs from other jobs (ptmeval.plan), by input name."""

    def inputs(wildcards):
        return PLAN.inputs(stage, identity(stage, wildcards))

    return inputs


def params_of(stage, name):
    """One of a rule's result-changing params (the same ones its settings key hashes)."""

    def param(wildcards):
        return PLAN.params(stage, identity(stage, wildcards))[name]

    return param


def settings_key(stage):
    """The `settings_key` param: the key in the job's paths, checked (Plan.checked_key)."""

    def check(wildcards):
        return PLAN.checked_key(stage, wildcards)

    return check


def get_model_source_files(wildcards):
    """Every file of a local source is an input, so that replacing one reruns the download."""
    return source_files(CFG, wildcards.model)


def get_task_files(wildcards):
    src = CFG.task(wildcards.task).source
    return [src.path] if src.kind in ("file", "imagefolder") else []


def get_finetune_mem_mb(wildcards, attempt):
    model = wildcards.model
    snapshot = PLAN.snapshot(model) if model in NEURAL else None
    return finetune_mem_mb(CFG, model, attempt, snapshot)


def get_gpus(wildcards):
    return gpus_for(CFG, wildcards.model)


def get_threads(wildcards):
    return threads_for(CFG, wildcards.model)


def get_feature_gpus(wildcards):
    return gpus_for(CFG, wildcards.model, "features")


def get_analysis_settings(wildcards):
    return {
        **CFG.analysis.model_dump(mode="json"),
        "hardware": [h.model_dump(mode="json") for h in CFG.hardware],
        "models": {m.slug: m.adapter for m in CFG.models},
        "bases": {m.slug: m.base for m in CFG.models},
        "weights": CFG.scorecard.weights,
        "constraint": CFG.scorecard.constraint,
    }


def get_aggregate_inputs(wildcards):
    return {
        "metrics": PLAN.outputs("evaluate", "metrics"),
        "tuning": PLAN.outputs("tune", "table"),
        "histories": PLAN.outputs("finetune", "history"),
        "profiles": PLAN.outputs("profile", "profile"),
        "manifests": PLAN.outputs("download", "manifest"),
        "tasks": PLAN.outputs("tasks", "summary"),
        "predictions": PLAN.outputs("evaluate", "predictions"),
        "runtimes": PLAN.outputs("runtime", "runtime"),
        "exports": PLAN.outputs("export", "export"),
        "deployments": PLAN.outputs("export", "variants"),
        "transfers": PLAN.outputs("transfer", "scores"),
        "frozen": PLAN.outputs("transfer", "frozen"),
        "benchmarks": PLAN.benchmarks(),
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
    for job in PLAN.jobs("finetune"):
        tables.update(PLAN.inputs("finetune", job).values())
    return {t for t in tables if t.endswith(".parquet")}


# Damaged tables moved aside (now or by an interrupted run) are targets of `all` until they
# are recomputed, so that they and everything downstream of them run again.
_PENDING = awaiting_recompute("results")
RECOMPUTE = sorted(set(_PENDING) & expected_tables()) if _PENDING else []
RETRY = sorted(set(_RETRIED) & expected_tables()) if _RETRIED else []
