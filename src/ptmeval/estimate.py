"""`ptmeval estimate`: expected wall time and peak memory per stage, before running.

For every job the DAG will contain, the estimate adds a start-up cost (process, imports, model
load) to the compute: examples × FLOPs per example ÷ an achieved FLOP rate. FLOPs per example
come from the profile stage when it is cached (`results/profile/<model>/<key>/profile.parquet`,
"measured") or, cold, from the architecture itself ("analytical": the transformer formulas of
`ptmeval.profiling.analytical_flops` on the model's config.json, or a count of a randomly
initialised CNN). The achieved rate is this machine's float32 matmul rate, measured in a second,
times an efficiency factor per kind of work (calibrated on a 2-core CPU machine; see
benchmarks/README.md). Training FLOPs are 3× forward when not measured.
Jobs of the heavy rules ask for 2 threads and run one at a time on 2 cores; the others (and the
light fits: TF-IDF, linear probes) ask for one and run two at a time; with more cores the
estimate divides each stage's time by the number of jobs that can run at once.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ptmeval.adapters import get_spec
from ptmeval.config import (
    Config,
    HubSource,
    PackagePartsSource,
    PackageSource,
    PathSource,
    package_root,
)
from ptmeval.errors import ModelSourceError
from ptmeval.subsample import subset_size
from ptmeval.training.loop import Budget
from ptmeval.workflow import HEAVY_THREADS

# seconds; measured on the 2-core CPU machine this project is developed on
START_LIGHT = 1.6  # Snakemake script job with pandas only
START_TORCH = 4.5  # + torch and transformers imports
LOAD_RATE = 400e6  # bytes/s to load weights from a snapshot
EFF_TRAIN = 0.30  # achieved training FLOP/s ÷ matmul peak
EFF_INFER = 0.35  # achieved inference FLOP/s ÷ matmul peak
CLASSICAL_FIT = 1.0  # TF-IDF + logistic regression fit / predict (s)
# one TF-IDF runtime measurement (a fresh process: imports, scikit-learn, the fitted state, the
# timed predictions; 3.5 s measured per batch size) and the job's peak RSS, parent and child
# together (340 MB measured on the e2e settings)
RUNTIME_CLASSICAL = 3.5
RUNTIME_CLASSICAL_MB = 500.0
EVALUATE = 0.3  # metrics and predictions from the cached test probabilities (s)
EVALUATE_MB = 200.0  # its peak RSS (139 MB measured on the e2e run): pandas, pyarrow, no torch
GGUF_RATE = 25e6  # bytes/s to dequantise a GGUF checkpoint into safetensors

log = logging.getLogger(__name__)

# Peak memory (RSS, MB) of a job that loads a model = base + per_mb × the weights' MB (fp32).
# The base holds Python, torch, transformers, pandas (~620 MB after imports) plus the stage's
# working memory; per_mb counts the copies of the weights the stage holds (optimizer state,
# an exported graph, an ONNX file, the int8 copy). Fitted to the largest Snakemake-measured
# RSS per stage of the default's cold run (EfficientNet-Lite0 14 MB, MiniLM-L6 91 MB,
# SmolLM2-135M 538 MB of weights; 2 threads, the default's batch sizes and input sizes),
# rounded up so that every measured peak is at or below its estimate; larger batches or
# inputs need more (benchmarks/README.md).
MEMORY_MB: dict[str, tuple[float, float]] = {
    "download_model": (650.0, 0.7),
    "profile_model": (880.0, 3.3),
    "measure_runtime_train": (1350.0, 2.3),  # inference and training steps
    "measure_runtime_infer": (1000.0, 1.7),  # inference only (a linear probe's backbone)
    "extract_features": (900.0, 1.7),
    "finetune": (1300.0, 4.6),
    # + a deployment variant's own process (torch, the model and its converted copy) while the
    # export check's process, torch loaded, waits for it: 1989 MB measured on the e2e run
    # (MiniLM-L6, 32 tokens) against 1393 estimated without it
    "export_check": (2030.0, 4.9),
}


def finetune_seconds(n: int, settings: Any, val_examples: int, cost: Any, peak: float) -> float:
    """Compute of one full fine-tune of `n` examples at its whole step budget, validation
    included (an upper bound: early stopping ends many sooner)."""
    budget = Budget.plan(n, settings)
    samples = budget.steps * n / budget.steps_per_epoch
    evals = math.ceil(budget.steps / budget.eval_every)
    return float(
        samples * cost.train / (EFF_TRAIN * peak)
        + evals * val_examples * cost.forward / (EFF_INFER * peak)
    )


def deployment_seconds(cfg: Config, test_size: int, cost: Any, peak: float) -> float:
    """The deployment variants of one export check (ptmeval.deployment), each in a fresh
    process: start-up, the fp32 weights loaded, the test split scored, each batch size timed for
    `budget_s` (at least 3 repeats plus a warm-up: a large batch's own compute can exceed the
    budget; the largest is timed by the scoring itself when the test split has 4 such batches),
    and the ONNX int8 quantization. Variants not built here (fp16 without a GPU, bf16 on a CPU
    without native bf16) are left out; every other one is costed at fp32's compute."""
    from ptmeval.compute import cpu_has_bf16
    from ptmeval.deployment import wanted_variants

    settings = cfg.deployment
    variants = wanted_variants(settings.variants, gpu=False)
    if not cpu_has_bf16():  # not built: emulated bf16 is no deployment option
        variants = [v for v in variants if v != "bf16"]
    forward = cost.forward / (EFF_INFER * peak)  # seconds per example
    big = max(settings.batch_sizes)
    timed = [b for b in settings.batch_sizes if b < big or test_size < 4 * big]
    timing = sum(max(settings.budget_s, 4 * b * forward) for b in timed)
    per_variant = START_TORCH + cost.weight_bytes / LOAD_RATE + test_size * forward + timing
    quantize = cost.params / 5e6 if "onnx-int8" in variants else 0.0
    return float(len(variants) * per_variant + quantize)


def grid_size(entry: Any, settings: Any) -> int:
    """Values a model's hyperparameter selection tries (1: fixed, nothing is trained)."""
    if get_spec(entry.adapter).neural and entry.method in ("full", "lora"):
        return 1 if settings.lr is not None else len(settings.lr_grid)
    if settings.probe_c is not None or "c" in entry.options:
        return 1
    return len(settings.c_grid)


def memory_mb(stage: str, weight_bytes: float) -> float:
    """Expected peak RSS (MB) of one job of `stage` for a model with these weight bytes."""
    base, per_mb = MEMORY_MB[stage]
    return base + per_mb * weight_bytes / 1e6


@dataclass
class ModelCost:
    forward: float  # FLOPs per example
    train: float  # FLOPs per example of a training step
    params: int
    weight_bytes: float
    basis: str  # "measured (profile cache)" or "analytical"


def matmul_peak_flops(
    threads: int = HEAVY_THREADS, size: int = 1024, seconds: float = 0.5, dtype: str = "float32"
) -> float:
    """This machine's matmul rate (FLOP/s) in `dtype` (a torch dtype name), measured for about
    `seconds` (at least one product after a warm-up one)."""
    import torch

    torch.set_num_threads(threads)
    kind = getattr(torch, dtype)
    a, b = torch.randn(size, size, dtype=kind), torch.randn(size, size, dtype=kind)
    torch.mm(a, b)
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.mm(a, b)
        runs += 1
    return 2 * size**3 * runs / (time.perf_counter() - start)


def _source_dir(entry: Any) -> Path | None:
    src = entry.source
    if isinstance(src, PathSource):
        return Path(src.path)
    if isinstance(src, PackageSource):
        return package_root(src.package) / src.file
    if isinstance(src, PackagePartsSource):  # only the small JSON configs, not the weights
        from ptmeval._parts import extract

        unpack = Path(tempfile.mkdtemp(prefix="ptmeval-estimate-"))
        atexit.register(shutil.rmtree, unpack, ignore_errors=True)
        return extract(src, unpack, entry.slug, suffixes=(".json",))
    if isinstance(src, HubSource):
        from huggingface_hub import hf_hub_download, snapshot_download

        try:  # a snapshot already in the Hugging Face cache
            return Path(snapshot_download(src.id, revision=src.revision, local_files_only=True))
        except Exception:
            pass
        try:  # else only its config (a few KB), or the GGUF file the config is read from
            name = getattr(src, "gguf_file", None) or "config.json"
            return Path(hf_hub_download(src.id, name, revision=src.revision)).parent
        except Exception:
            return None
    return None


def _text_cost(entry: Any, settings: Any) -> ModelCost:
    """Analytical FLOPs of a transformer from its config (no weights loaded)."""
    from transformers import AutoConfig

    from ptmeval.adapters.hf_text import is_decoder
    from ptmeval.profiling import analytical_flops

    directory = _source_dir(entry)
    if directory is None:
        raise ModelSourceError(
            f"model '{entry.slug}': no config.json to estimate from (not in the local Hugging Face "
            "cache, and the Hub could not be reached)"
        )
    gguf = getattr(entry.source, "gguf_file", None)
    directory = directory if directory.is_dir() else directory.parent
    try:
        config = (
            AutoConfig.from_pretrained(directory, gguf_file=gguf)
            if gguf
            else AutoConfig.from_pretrained(directory)
        )
    except (OSError, ValueError) as err:  # the download job will name the problem
        raise ModelSourceError(
            f"model '{entry.slug}': no readable config in '{directory}' "
            f"({str(err).splitlines()[0][:200]})"
        ) from None

    class _Shim:  # the attributes analytical_flops reads
        model = type("M", (), {"config": config})()
        info = {"family": "decoder" if is_decoder(config) else "encoder"}

    forward, _ = analytical_flops(_Shim(), settings)
    params = transformer_params(config)
    return ModelCost(forward, 3 * forward, params, 4 * params, "analytical")


def transformer_params(config: Any) -> int:
    """Parameters of a transformer encoder or decoder from its config: attention (grouped
    key/value heads counted), feed-forward (gated for a decoder), embeddings (an untied LM head
    counted twice, an encoder's position embeddings and pooler); biases and norms left out."""
    from ptmeval.adapters.hf_text import is_decoder
    from ptmeval.profiling import attention_shape

    h, layers = config.hidden_size, config.num_hidden_layers
    inter = getattr(config, "intermediate_size", None) or 4 * h
    heads, kv, head_dim = attention_shape(config)
    attention = 2 * h * heads * head_dim + 2 * h * kv * head_dim
    embeddings = config.vocab_size * h
    if is_decoder(config):
        per_layer = attention + 3 * h * inter
        if not getattr(config, "tie_word_embeddings", True):
            embeddings *= 2
    else:
        per_layer = attention + 2 * h * inter
        embeddings += (getattr(config, "max_position_embeddings", 0) or 0) * h + h * h
    return layers * per_layer + embeddings


def _image_cost(entry: Any, settings: Any) -> ModelCost:
    """Count a randomly initialised instance of the CNN (cheap for image classifiers)."""
    from ptmeval.adapters._base import LoadedModel
    from ptmeval.profiling import forward_flops

    if entry.adapter == "efficientnet-lite":
        from efficientnet_lite_pytorch import EfficientNet

        model = EfficientNet.from_name(entry.options.get("variant", "efficientnet-lite0"))
    else:
        import torchvision

        model = torchvision.models.get_model(entry.options["architecture"], weights=None)
    import torch

    size = settings.image_size
    loaded = LoadedModel(
        model,
        model,
        lambda items: {},
        lambda m, b: m(b["x"]),
        lambda m, b: m(b["x"]),
        lambda n: {"x": torch.randn(n, 3, size, size)},
        {},
    )
    forward, _ = forward_flops(loaded)
    params = sum(p.numel() for p in model.parameters())
    return ModelCost(forward, 3 * forward, params, 4 * params, "analytical")


def model_cost(cfg: Config, slug: str, cache: Path | None) -> ModelCost | None:
    entry = cfg.model(slug)
    if not get_spec(entry.adapter).neural:
        return None
    cached = None
    if cache is not None:
        from ptmeval.plan import Plan

        cached = Path(Plan(cfg, root=cache).path("profile", "profile", {"model": slug}))
    prof = pd.read_parquet(cached).iloc[0] if cached is not None and cached.exists() else None
    if prof is not None and "flops_forward_per_sample" in prof:  # not a failure record
        return ModelCost(
            float(prof["flops_forward_per_sample"]),
            float(prof.get("flops_train_step_per_sample", 3 * prof["flops_forward_per_sample"])),
            int(prof["params_total"]),
            float(prof.get("weights_fp32_bytes", 4 * prof["params_total"])),
            "measured (profile cache)",
        )
    settings = cfg.finetune_settings(slug)
    if entry.modality == "text":
        return _text_cost(entry, settings)
    return _image_cost(entry, settings)


def method_cost(cost: ModelCost, method: str) -> ModelCost:
    """A model's cost as `method` trains it: LoRA's backward pass still propagates through the
    frozen weights (1× forward) but computes no gradient for them: about 2× forward per
    example instead of 3×."""
    if method != "lora":
        return cost
    return dataclasses.replace(cost, train=min(cost.train, 2 * cost.forward))


Add = Callable[..., None]


# Stages whose jobs ask for HEAVY_THREADS: as many run at once as the cores allow in pairs; the
# others' (one thread each) one per core. A light fit (TF-IDF, a linear probe) is a fine-tune
# of one thread.
HEAVY_STAGES = {
    "finetune",
    "extract_features",
    "profile_model",
    "measure_runtime",
    "export_check",
    "download_model",
}


class _Tally:
    """Jobs, summed wall time (of jobs of HEAVY_THREADS and of one thread), peak memory and bases
    per stage."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}

    def add(
        self,
        stage: str,
        seconds: float,
        peak_mb: float = 0.0,
        basis: str = "",
        light: bool | None = None,
    ) -> None:
        """One job; `light`: it asks for one thread (default: as its stage's jobs do)."""
        row = self.rows.setdefault(
            stage,
            {
                "stage": stage,
                "jobs": 0,
                "heavy_s": 0.0,
                "light_s": 0.0,
                "peak_mb": 0.0,
                "basis": set(),
            },
        )
        row["jobs"] += 1
        light = stage not in HEAVY_STAGES if light is None else light
        row["light_s" if light else "heavy_s"] += seconds
        row["peak_mb"] = max(row["peak_mb"], peak_mb)
        if basis:
            row["basis"].add(basis)


def _per_model_jobs(
    cfg: Config, plan: Any, costs: dict[str, ModelCost | None], peak: float, add: Add
) -> None:
    """Download, profile, runtime, feature and transfer jobs (as the plan has them)."""
    from ptmeval.workflow import runtime_settings

    for ids in plan.jobs("download"):  # one per base model: its methods share it
        m = cfg.model(ids["model"])
        cost = costs.get(m.slug)
        if cost is None:
            continue
        seconds = START_TORCH + cost.weight_bytes / LOAD_RATE
        if getattr(m.source, "gguf_file", None):
            seconds += cost.weight_bytes / GGUF_RATE
        add("download_model", seconds, memory_mb("download_model", cost.weight_bytes), cost.basis)
    for ids in plan.jobs("profile"):
        cost = costs.get(ids["model"])
        if cost is None:
            continue
        load = cost.weight_bytes / LOAD_RATE
        add(
            "profile_model",
            START_TORCH + 3 * load + 10 * cost.forward / (EFF_INFER * peak),
            memory_mb("profile_model", cost.weight_bytes),
            cost.basis,
        )
    for ids in plan.jobs("runtime"):
        m = cfg.model(ids["model"])
        measured = runtime_settings(cfg, m.slug)
        if not get_spec(m.adapter).neural:  # inference only, on CPU, per batch size
            seconds = START_LIGHT + len(measured["inference_batch_sizes"]) * RUNTIME_CLASSICAL
            add("measure_runtime", seconds, RUNTIME_CLASSICAL_MB)
            continue
        cost = costs.get(m.slug)
        if cost is None:
            continue
        load = cost.weight_bytes / LOAD_RATE
        p = cfg.profile
        rt = 0.0
        sizes = [("infer", b) for b in measured["inference_batch_sizes"]]
        sizes += [("train", b) for b in measured["train_batch_sizes"]]
        train = method_cost(cost, m.method).train
        for kind, b in sizes:
            flops = b * (train if kind == "train" else cost.forward)
            rate = peak * (EFF_TRAIN if kind == "train" else EFF_INFER)
            step = flops / rate
            repeats = max(p.min_repeats, min(p.max_repeats, p.budget_s / max(step, 1e-9)))
            rt += START_TORCH + load + (p.warmup + repeats) * step
        kind = "train" if measured["train_batch_sizes"] else "infer"
        add(
            "measure_runtime",
            START_TORCH + rt,
            memory_mb(f"measure_runtime_{kind}", cost.weight_bytes),
            cost.basis,
        )
    for ids in plan.jobs("features"):  # one per base model × task × init
        m, t = cfg.model(ids["model"]), cfg.task(ids["task"])
        cost = costs.get(m.slug)
        if cost is None:
            continue
        rows_task = t.max_train + t.val_examples + t.test_size
        add(
            "extract_features",
            START_TORCH
            + cost.weight_bytes / LOAD_RATE
            + rows_task * cost.forward / (EFF_INFER * peak),
            memory_mb("extract_features", cost.weight_bytes),
            cost.basis,
        )
    for _ in plan.jobs("transfer"):
        add("transfer_scores", START_LIGHT + 2.0, 600.0)


def _task_jobs(cfg: Config, add: Add) -> None:
    """Task preparation and subsampling jobs."""
    for _task in cfg.tasks:
        add("prepare_task", START_LIGHT + 3.0, 500.0)
        for _ in cfg.subsample.fractions:
            for _ in cfg.subsample.seeds:
                add("subsample", START_LIGHT, 200.0)


def _training_jobs(
    cfg: Config, costs: dict[str, ModelCost | None], skipped: list[str], peak: float, add: Add
) -> None:
    """Hyperparameter selection, fine-tune and evaluate jobs of every model x task."""
    for m, t in cfg.pairs():
        if m.slug in skipped:
            continue
        cost = costs[m.slug]
        if cost is not None:
            cost = method_cost(cost, m.method)
        settings = cfg.finetune_settings(m.slug)
        inits = m.init_list
        grid = grid_size(m, settings)

        largest = subset_size(t.max_train, max(cfg.subsample.fractions))
        for _ in inits:
            if grid == 1:
                add("select_hparams", START_LIGHT, 300.0)
            elif cost is None:
                add("select_hparams", START_LIGHT + grid * CLASSICAL_FIT, 400.0)
            elif m.method == "linear_probe":
                add("select_hparams", START_LIGHT + grid * 1.0, 500.0, cost.basis)
            else:
                load = cost.weight_bytes / LOAD_RATE
                mem = memory_mb("finetune", cost.weight_bytes)
                seconds = START_TORCH + grid * (
                    load + finetune_seconds(largest, settings, t.val_examples, cost, peak)
                )
                add("select_hparams", seconds, mem, cost.basis)
        for fraction in cfg.subsample.fractions:
            n = subset_size(t.max_train, fraction)
            for _ in cfg.subsample.seeds:
                for _ in inits:
                    # evaluate scores the test probabilities the fine-tune job computed
                    add("evaluate", START_LIGHT + EVALUATE, EVALUATE_MB)
                    if cost is None:
                        add("finetune", START_LIGHT + 2 * CLASSICAL_FIT, 400.0, light=True)
                    elif m.method == "linear_probe":
                        add("finetune", START_LIGHT + 1.5, 500.0, cost.basis, light=True)
                    else:
                        load = cost.weight_bytes / LOAD_RATE
                        mem = memory_mb("finetune", cost.weight_bytes)
                        add(
                            "finetune",
                            START_TORCH
                            + load
                            + finetune_seconds(n, settings, t.val_examples, cost, peak)
                            + t.test_size * cost.forward / (EFF_INFER * peak),
                            mem,
                            cost.basis,
                        )


def _export_jobs(cfg: Config, costs: dict[str, ModelCost | None], peak: float, add: Add) -> None:
    """Export and deployment checks, one per export target."""
    from ptmeval.workflow import export_targets

    for e in export_targets(cfg):
        cost = costs.get(e["model"])
        if cost is None:
            continue
        t = cfg.task(e["task"])
        seconds = (
            START_TORCH
            + 8.0
            + cost.params / 2e6
            + 3 * t.test_size * cost.forward / (EFF_INFER * peak)
            + deployment_seconds(cfg, t.test_size, cost, peak)
        )
        add("export_check", seconds, memory_mb("export_check", cost.weight_bytes), cost.basis)


def estimate(
    cfg: Config,
    cache: Path | None = Path("results"),
    peak: float | None = None,
    cores: int | None = None,
) -> pd.DataFrame:
    """One row per stage: jobs, expected wall time (s), expected peak memory (MB), basis."""
    from ptmeval.plan import Plan

    peak = peak or matmul_peak_flops()
    cores = cores or os.cpu_count() or 1
    parallel = max(1, cores // HEAVY_THREADS)
    costs: dict[str, ModelCost | None] = {}
    skipped: list[str] = []  # models whose architecture cannot be read before their download
    for m in cfg.models:
        try:
            costs[m.slug] = model_cost(cfg, m.slug, cache)
        except ModelSourceError as err:
            log.warning("%s; its jobs are left out of the estimate", err)
            skipped.append(m.slug)
    tally = _Tally()
    plan = Plan(cfg, root=cache or "results")  # the jobs of each stage, as the workflow runs them
    _per_model_jobs(cfg, plan, costs, peak, tally.add)
    _task_jobs(cfg, tally.add)
    _training_jobs(cfg, costs, skipped, peak, tally.add)
    _export_jobs(cfg, costs, peak, tally.add)
    tally.add("aggregate", START_LIGHT + 8.0, 800.0)
    tally.add("render_report", START_LIGHT + 4.0, 400.0)
    out = pd.DataFrame(tally.rows.values())
    out["basis"] = out["basis"].map(lambda b: ", ".join(sorted(b)) or "fixed")
    if skipped:
        out["basis"] += f"; without {', '.join(skipped)} (architecture not readable yet)"
    out.insert(2, "wall_s", out.pop("heavy_s") / parallel + out.pop("light_s") / max(1, cores))
    out["peak_gflops"] = peak / 1e9
    return out


def format_estimate(table: pd.DataFrame) -> str:
    """The estimate as a plain-text table with a total line."""
    lines = [f"{'stage':<18} {'jobs':>5} {'wall time':>10} {'peak memory':>12}  basis"]
    for _, r in table.iterrows():
        lines.append(
            f"{r['stage']:<18} {int(r['jobs']):>5} {_duration(r['wall_s']):>10} "
            f"{r['peak_mb'] / 1024:>9.2f} GB  {r['basis']}"
        )
    total = float(table["wall_s"].sum())
    lines.append(
        f"{'total':<18} {int(table['jobs'].sum()):>5} {_duration(total):>10} "
        f"{table['peak_mb'].max() / 1024:>9.2f} GB  (matmul peak "
        f"{table['peak_gflops'].iloc[0]:.0f} GFLOP/s measured now)"
    )
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(math.ceil(seconds)), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def as_json(table: pd.DataFrame) -> str:
    return json.dumps(table.to_dict("records"), indent=2)
