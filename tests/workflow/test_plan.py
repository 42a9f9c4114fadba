"""The plan's settings keys (ptmeval.plan): a job's key changes exactly when a setting reaches it
or a job whose output it reads, so that two configs with the same slugs keep their results side
by side and a change reruns only what it touches (the real-Snakemake side of this is in
tests/e2e/test_findings.py)."""

import re

import pytest

from ptmeval.config import load_config
from ptmeval.findings import job_name
from ptmeval.plan import FILES, IDENTITY, KEY_PATTERN, RULE, Plan, pattern
from tests.conftest import REPO
from tests.workflow.test_settings_reach import (
    CLASSICAL,
    EXPECTED,
    IMAGE_PROBES,
    TEXT_PROBES,
    before_and_after,
)
from tests.workflow.test_settings_reach import default as default_config

PROBES = TEXT_PROBES | IMAGE_PROBES | CLASSICAL


def keys(data) -> dict[tuple[str, str, tuple[str, ...]], str]:
    """Every job's key: (rule, model, identity) -> key."""
    plan = Plan(load_config(data, REPO))
    return {
        (RULE[stage], ids.get("model", ""), tuple(ids.values())): plan.key(stage, ids)
        for stage in IDENTITY
        for ids in plan.jobs(stage)
    }


BASES = {m.slug: m.base for m in load_config(default_config(), REPO).models}
SHARED = {"extract_features", "download_model"}  # one job per base model, for its methods


def readers(rule: str, model: str) -> set[tuple[str, str]]:
    """The (rule, model) jobs that read an output of `rule` of `model` (the data flow, written
    out); a shared job's model is a base model, read by its methods' jobs."""
    if rule == "finetune":
        return {("evaluate", model), ("export_check", model)} | (
            {("measure_runtime", model)} if model in CLASSICAL else set()
        )
    if rule == "select_hparams":
        return {("finetune", model)}
    if rule == "extract_features":
        methods = [m for m, base in BASES.items() if base == model]
        return {("transfer_scores", m) for m in methods} | {
            (r, m) for m in methods if m in PROBES for r in ("select_hparams", "finetune")
        }
    return set()


def test_keys_are_short_hashes_stable_across_plans():
    first, second = keys(default_config()), keys(default_config())
    assert first == second
    assert all(re.fullmatch(KEY_PATTERN, key) for key in first.values())
    # no two jobs share an output path
    plan = Plan(load_config(default_config(), REPO))
    outputs = [
        plan.path(stage, name, ids)
        for stage in IDENTITY
        for ids in plan.jobs(stage)
        for name in FILES[stage]
    ]
    assert len(outputs) == len(set(outputs)) == len(plan.all_outputs())


@pytest.mark.parametrize("setting", sorted(EXPECTED))
def test_a_setting_changes_the_keys_of_the_jobs_it_reaches_and_of_their_readers(setting):
    _, models, rules = EXPECTED[setting]
    before, after = before_and_after(setting, keys)
    assert before.keys() == after.keys()
    changed = {
        (rule, model)
        for (rule, model, ids), key in before.items()
        if after[rule, model, ids] != key
    }
    have = {(rule, model) for rule, model, _ in before}
    expected = {
        (rule, BASES[model] if rule in SHARED else model) for rule in rules for model in models
    } & have
    while True:  # and every job that reads one of theirs
        more = {job for rule, m in expected for job in readers(rule, m)} & have
        if more <= expected:
            break
        expected |= more
    assert changed == expected, (sorted(changed - expected), sorted(expected - changed))


def test_a_task_setting_changes_that_task_s_jobs_only():
    before = keys(default_config())
    data = default_config()
    task = data["tasks"][0]
    task["test_size"] = task.get("test_size", 100) + 1
    after = keys(data)
    changed = {job for job, key in before.items() if after[job] != key}
    slug = task["slug"]
    # every job on that task, and the runtime of a classical model fitted on it
    on_task = {job for job in before if slug in job[2]}
    assert on_task and on_task <= changed
    assert {job[0] for job in changed - on_task} <= {"measure_runtime"}
    assert not any(job[0] in ("download_model", "profile_model") for job in changed)


def test_more_seeds_keep_the_keys_of_the_jobs_already_planned():
    before = keys(default_config())
    data = default_config()
    data["subsample"]["seeds"] = [*data["subsample"]["seeds"], 99]
    after = keys(data)
    assert before.keys() < after.keys()
    changed = {job[0] for job, key in before.items() if after[job] != key}
    assert changed == {"transfer_scores"}  # its frozen probes are fitted on every subset


def test_paths_follow_the_rule_patterns():
    plan = Plan(load_config(default_config(), REPO))
    ids = plan.jobs("finetune")[0]
    path = plan.path("finetune", "history", ids)
    assert path == pattern("finetune", "history").format(**ids, key=plan.key("finetune", ids))
    # a failure record names the job by its identity, without the key
    assert job_name({"history": path}) == "/".join(ids.values())
    snapshot = plan.path("download", "snapshot", {"model": ids["model"]})
    assert job_name({"snapshot": snapshot}) == ids["model"]


def test_methods_share_the_download_and_features_and_nothing_else():
    data = default_config()
    assert data["models"][0]["slug"] == "minilm-l6"
    # MiniLM-L6 adapted three ways, pretrained and from scratch (the default adapts it two ways)
    data["models"][0].update(
        methods=["full", "lora", "linear_probe"],
        lora={"r": 8, "alpha": 16},
        inits=["pretrained", "scratch"],
    )
    plan = Plan(load_config(data, REPO))
    minilm = data["models"][0]
    del minilm["methods"], minilm["lora"]
    minilm["method"] = "full"
    single = Plan(load_config(data, REPO))
    methods = ["minilm-l6.full", "minilm-l6.lora", "minilm-l6.linear_probe"]

    def models(stage, p=plan):
        return [j["model"] for j in p.jobs(stage)]

    assert models("download").count("minilm-l6") == 1
    assert not set(methods) & set(models("download") + models("features"))
    # the same feature jobs as with one method: one per task (pretrained)
    assert plan.jobs("features") == single.jobs("features")
    # one set of transferability scores per base model (the frozen weights'), under its first
    # method; every other per-model stage runs per method, but the runtime: inference measured
    # once (the first method's), a training step for full and lora, nothing left for the probe
    text_tasks = models("features").count("minilm-l6")  # one feature job per text task
    assert text_tasks > 0
    minilm_transfer = [m for m in models("transfer") if m.startswith("minilm")]
    assert minilm_transfer == ["minilm-l6.full"] * text_tasks
    for stage in ("profile", "export"):
        assert [m for m in models(stage) if m.startswith("minilm")] == methods
    assert [m for m in models("runtime") if m.startswith("minilm")] == methods[:2]
    lora = plan.params("runtime", {"model": "minilm-l6.lora"})["settings"]
    assert lora["inference_batch_sizes"] == [] and lora["train_batch_sizes"]
    # every method's jobs read the one download; the probe reads the shared features
    snapshot = plan.path("download", "snapshot", {"model": "minilm-l6"})
    for model in methods:
        assert plan.inputs("profile", {"model": model})["snapshot"] == snapshot
    probe = next(j for j in plan.jobs("finetune") if j["model"] == "minilm-l6.linear_probe")
    features = {"model": "minilm-l6", "task": probe["task"], "init": "pretrained"}
    assert plan.inputs("finetune", probe)["features"] == plan.path("features", "features", features)
    # the download and the features do not depend on the method: the same keys as a config
    # that lists the model with one method
    for stage, ids in (("download", {"model": "minilm-l6"}), ("features", features)):
        assert plan.key(stage, ids) == single.key(stage, ids)
    # no scratch run for lora or the probe (their transfer gain uses full's scratch curve)
    inits = {(j["model"], j["init"]) for j in plan.jobs("finetune")}
    assert ("minilm-l6.full", "scratch") in inits
    assert ("minilm-l6.lora", "scratch") not in inits
