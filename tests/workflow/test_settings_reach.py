"""Each `finetune` setting reaches only the jobs it affects: a table of every setting, with the
(rule, model) pairs whose params change when it changes (a params change is what reruns a job),
computed from the same functions the rules call."""

from argparse import Namespace

import pytest
import yaml

from ptmeval.config import FinetuneSettings, load_config
from ptmeval.workflow import (
    export_job_wildcards,
    finetune_job,
    model_job,
    runtime_settings,
    tune_job_wildcards,
)
from tests.conftest import REPO

TEXT_FULL = {"minilm-l6.full"}  # the default adapts MiniLM-L6 two ways
TEXT_PROBES = {"minilm-l6.linear_probe", "smollm2-135m", "mpnet-base"}
CLASSICAL = {"tfidf-logreg"}
IMAGE_FULL = {"efficientnet-lite0.full"}  # and EfficientNet-Lite0 two ways
IMAGE_PROBES = {"efficientnet-lite0.linear_probe", "efficientnet-lite1", "efficientnet-lite2"}
NEURAL = TEXT_FULL | TEXT_PROBES | IMAGE_FULL | IMAGE_PROBES
TRAINING_RULES = {"finetune", "select_hparams", "export_check"}
ALL_RULES = TRAINING_RULES | {"extract_features", "profile_model", "measure_runtime"}

# setting -> (a changed value, the models whose jobs it reaches, the rules of those models)
TRAINING_LOOP = (TEXT_FULL | IMAGE_FULL, TRAINING_RULES)
EXPECTED = {
    "epochs": (5, *TRAINING_LOOP),
    "min_steps": (10, *TRAINING_LOOP),
    "eval_points": (4, *TRAINING_LOOP),
    "patience": (1, *TRAINING_LOOP),
    "batch_size": (8, *TRAINING_LOOP),
    "lr": (2e-4, *TRAINING_LOOP),
    "lr_grid": ([1e-4, 1e-3], *TRAINING_LOOP),
    "weight_decay": (0.0, *TRAINING_LOOP),
    "warmup_ratio": (0.0, *TRAINING_LOOP),
    "checkpoint_every_steps": (7, *TRAINING_LOOP),
    "gradient_accumulation": (2, *TRAINING_LOOP),
    "max_length": (32, TEXT_FULL | TEXT_PROBES, ALL_RULES),
    "image_size": (96, IMAGE_FULL | IMAGE_PROBES, ALL_RULES),
    "eval_batch_size": (32, NEURAL, ALL_RULES),
    "device": ("cpu", NEURAL, TRAINING_RULES | {"extract_features"}),
    "precision": ("fp32", NEURAL, TRAINING_RULES | {"extract_features"}),
    "probe_c": (0.5, TEXT_PROBES | IMAGE_PROBES | CLASSICAL, TRAINING_RULES),
    "c_grid": ([0.1, 1.0], TEXT_PROBES | IMAGE_PROBES | CLASSICAL, TRAINING_RULES),
    "probe_max_iter": (500, TEXT_PROBES | IMAGE_PROBES, TRAINING_RULES),
}
# DeepSpeed's settings need a DeepSpeed config to be valid; they reach the full fine-tunes like
# the training loop's (relevant_fields keeps every non-probe setting of a full fine-tune).
NOT_ENUMERATED = {
    "engine",
    "zero_stage",
    "offload_optimizer",
    "offload_params",
    "gpus_per_job",
    "use_gpus",
}


def default():
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def params(data) -> dict[tuple[str, str], object]:
    """The params of one job of every rule that reads the finetune settings, per model."""
    cfg = load_config(data, REPO)
    out: dict[tuple[str, str], object] = {}
    for model in cfg.models:
        slug = model.slug
        task = next(t.slug for t in cfg.tasks if t.modality == model.modality)
        job = export_job_wildcards(cfg, slug, task)
        out["finetune", slug] = finetune_job(cfg, Namespace(**job))
        tune = tune_job_wildcards(cfg, Namespace(model=slug, task=task, init=job["init"]))
        out["select_hparams", slug] = finetune_job(cfg, Namespace(**tune))
        out["export_check", slug] = finetune_job(cfg, Namespace(**job))
        out["extract_features", slug] = model_job(cfg, slug, inference_only=True, placed=True)
        out["profile_model", slug] = model_job(cfg, slug, inference_only=True)
        out["measure_runtime", slug] = (
            model_job(cfg, slug, inference_only=True),
            runtime_settings(cfg, slug),
        )
    return out


def test_every_setting_is_in_the_table():
    assert set(EXPECTED) | NOT_ENUMERATED == set(FinetuneSettings.model_fields)


def before_and_after(setting: str, compute):
    """`compute` of the default config, and of it with `setting` changed as EXPECTED says."""
    data = default()
    data["finetune"][setting] = EXPECTED[setting][0]
    return compute(default()), compute(data)


@pytest.mark.parametrize("setting", sorted(EXPECTED))
def test_a_setting_reaches_only_the_jobs_it_affects(setting):
    _, models, rules = EXPECTED[setting]
    before, after = before_and_after(setting, params)
    changed = {key for key in before if before[key] != after[key]}
    expected = {(rule, model) for rule in rules for model in models}
    assert changed == expected, (sorted(changed - expected), sorted(expected - changed))
