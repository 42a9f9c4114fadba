"""DeepSpeed fine-tuning (`finetune.engine: deepspeed`, method 'full'): ZeRO-2/3 data parallelism.

What is run. `finetune_deepspeed` (in the rule's process) writes a spec (the job, the training
and validation frames as Parquet, the snapshot and output paths) to a temporary folder and
launches `finetune.gpus_per_job` worker processes running `python -m ptmeval.training.ds_engine --spec
<spec.json>`: with the `deepspeed` launcher on GPUs (`finetune.use_gpus`), with `torchrun` on the
CPU (DeepSpeed's CPU accelerator, `DS_ACCELERATOR=cpu`, gloo; each process gets
max(1, threads // processes) threads). The workers' output goes to the job's log; a failure
raises a PtmevalError with the workers' last stderr lines. Rank 0 writes the history and
`model.safetensors` (the full model, the plain path's state-dict keys, so `evaluate` reloads it
unchanged).

How ranks split the data. Every rank seeds as the plain path and draws the same shuffled order
per epoch (a torch.Generator seeded with the job's seed). The order is cut into the plain path's
global batches of `batch_size` examples (the last of an epoch may be shorter); each global batch
is split into world_size × gradient_accumulation micro-batches of (nearly) equal size
(nominally batch_size // (world_size × gradient_accumulation), validated to be >= 1), and rank r
takes every world_size-th micro-batch. Each micro-batch's summed cross-entropy is weighted by
world_size × gradient_accumulation / len(global batch): after DeepSpeed's division by the
accumulation steps and its averaging over ranks, every optimizer step follows the gradient of
the mean loss over the same global batch as the plain path. A rank whose share of a short last
batch is empty runs one example with weight 0, so that all ranks take part in every collective.

Where it differs from the plain path.
- The optimizer is torch's AdamW (the plain path's decay/no-decay groups and learning rate) as
  DeepSpeed's client optimizer, so DeepSpeed's fused/CPU Adam ops are never compiled; gradients
  are clipped by DeepSpeed (`gradient_clipping: 1.0`, the global norm, as the plain path does).
- The schedule is the plain path's linear warm-up/decay as a `LambdaLR`, handed to
  `deepspeed.initialize` as a callable: DeepSpeed builds it on the client optimizer and steps it
  after every optimizer step (not after every micro-batch).
- Training is in float32 (no fp16/bf16), like the plain path.
- Dropout masks come from each rank's own generator (seeded alike), so with more than one
  process the run is not step-for-step identical to the plain path; with one process it is.
- The protocol is the plain path's, through the same loop (ptmeval.training.loop): the step
  budget, validation points, early stopping and the best validation point's weights; rank 0
  decides (validation, early stopping) and broadcasts its decisions, so that every rank stops
  at the same step. Rank 0 keeps a CPU copy of the best weights and writes those.
- Validation runs on rank 0 with `predict_probs`. Under ZeRO-3 every rank runs
  the forward passes (the parameters are gathered collectively), under `torch.no_grad` rather
  than `predict_probs`' inference mode, which spoils the gathered parameters; rank 0 keeps the
  result.
- No mid-run checkpoints: a killed DeepSpeed fine-tune restarts from its first step.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from ptmeval.errors import PtmevalError
from ptmeval.jobs import FinetuneJob

log = logging.getLogger("ptmeval.training.ds_engine")  # also when run as __main__

SPEC_FILE = "spec.json"
HISTORY_FILE = "history.parquet"
STDERR_TAIL = 25


# ---------------------------------------------------------------- the launching side


def launcher_command(
    spec_path: Path,
    nproc: int,
    use_gpus: bool,
    port: int,
    visible_devices: str | None = None,
) -> list[str]:
    """The command that starts `nproc` workers on `spec_path`.

    On GPUs the `deepspeed` launcher (one process per GPU, GPUs 0..nproc-1, or the first nproc
    of `visible_devices` when the scheduler set CUDA_VISIBLE_DEVICES: the launcher ignores that
    variable once --num_gpus is given); on the CPU `torchrun`. Both are the executables beside
    the running Python (the venv's)."""
    if nproc < 1:
        raise PtmevalError(f"gpus_per_job must be >= 1 (got {nproc})")
    bin_dir = Path(sys.executable).parent
    worker = ["ptmeval.training.ds_engine", "--spec", str(spec_path)]
    if not use_gpus:
        return [
            str(bin_dir / "torchrun"),
            "--nproc_per_node",
            str(nproc),
            "--master_port",
            str(port),
            "-m",
            *worker,
        ]
    ids = [d.strip() for d in (visible_devices or "").split(",") if d.strip()]
    if ids and all(d.isdigit() for d in ids):
        if len(ids) < nproc:
            raise PtmevalError(
                f"gpus_per_job is {nproc} but CUDA_VISIBLE_DEVICES lists {len(ids)} GPU(s) "
                f"({visible_devices})"
            )
        devices = ["--include", "localhost:" + ",".join(ids[:nproc])]
    else:
        devices = ["--num_gpus", str(nproc)]
    return [
        str(bin_dir / "deepspeed"),
        *devices,
        "--master_port",
        str(port),
        "--module",
        *worker,
    ]


def free_port() -> int:
    """A TCP port that is free on this host now (for the workers' rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pump(stream: IO[str], prefix: str, tail: collections.deque[str] | None) -> None:
    for raw in stream:
        line = raw.rstrip()
        if not line:
            continue
        log.info("%s%s", prefix, line)
        if tail is not None:
            tail.append(line)


def _check_can_run(job: FinetuneJob) -> None:
    """Raise a PtmevalError when DeepSpeed cannot run the job here: not installed, an empty micro
    batch, or GPUs asked for that are not there."""
    import importlib.util

    settings = job.finetune
    nproc = settings.gpus_per_job
    if importlib.util.find_spec("deepspeed") is None:
        raise PtmevalError(
            f"models '{job.model}': finetune.engine is 'deepspeed' but DeepSpeed is not "
            "installed (make setup installs it)"
        )
    micro = settings.batch_size // (nproc * settings.gradient_accumulation)
    if micro < 1:
        raise PtmevalError(
            f"models '{job.model}': batch_size {settings.batch_size} < gpus_per_job × "
            f"gradient_accumulation ({nproc} × {settings.gradient_accumulation})"
        )
    import torch

    use_gpus = settings.use_gpus
    if use_gpus and not torch.cuda.is_available():
        raise PtmevalError(
            f"models '{job.model}': finetune.use_gpus is set but CUDA is not available here"
        )
    if use_gpus and torch.cuda.device_count() < nproc:
        raise PtmevalError(
            f"models '{job.model}': gpus_per_job is {nproc} but {torch.cuda.device_count()} "
            "GPU(s) are visible"
        )


def _write_spec(
    folder: Path,
    job: FinetuneJob,
    data: pd.DataFrame,
    col: str,
    train: pd.DataFrame,
    val: pd.DataFrame,
    snapshot: Path,
    out_dir: Path,
    per_proc: int,
) -> dict[str, Any]:
    """Write the training and validation frames (their `col` and label) and the workers' spec
    into `folder`; return the spec."""
    from ptmeval.training.basics import num_labels

    train[[col, "label"]].reset_index(drop=True).to_parquet(folder / "train.parquet")
    val[[col, "label"]].reset_index(drop=True).to_parquet(folder / "val.parquet")
    spec: dict[str, Any] = {
        "job": job.model_dump(mode="json"),
        "train": str(folder / "train.parquet"),
        "val": str(folder / "val.parquet"),
        "column": col,
        "labels": num_labels(data),
        "snapshot": str(Path(snapshot).resolve()),
        "out_dir": str(out_dir.resolve()),
        "history": str(folder / HISTORY_FILE),
        "errors": str(folder),
        "threads": per_proc,
        "use_gpus": job.finetune.use_gpus,
    }
    (folder / SPEC_FILE).write_text(json.dumps(spec, indent=2))
    return spec


def _run_workers(
    cmd: list[str], env: dict[str, str], nproc: int
) -> tuple[int, float, collections.deque[str]]:
    """Run the workers' command, their output into the log; return the exit status, the wall
    time and the last lines of their stderr (the workers are terminated when interrupted)."""
    log.info("launching %d DeepSpeed worker(s): %s", nproc, " ".join(cmd))
    start = time.perf_counter()
    tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL)
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1
    )
    assert proc.stdout is not None and proc.stderr is not None
    pumps = [
        threading.Thread(target=_pump, args=(proc.stdout, "[workers] ", None), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, "[workers] ", tail), daemon=True),
    ]
    for pump in pumps:
        pump.start()
    try:
        code = proc.wait()
    finally:
        if proc.poll() is None:  # interrupted: do not leave the workers behind
            proc.terminate()
            proc.wait(timeout=30)
    for pump in pumps:
        pump.join(timeout=10)
    return code, time.perf_counter() - start, tail


def _workers_history(
    job: FinetuneJob, folder: Path, code: int, tail: collections.deque[str]
) -> pd.DataFrame:
    """The history rank 0 wrote into `folder`, or a PtmevalError with the workers' errors and
    the last lines of their stderr when they failed."""
    history_path = folder / HISTORY_FILE
    if code != 0 or not history_path.exists():
        errors = [
            p.read_text().strip() for p in sorted(folder.glob("error-rank*.txt")) if p.exists()
        ]
        detail = "\n".join([*errors, "--- last lines of the workers' stderr:", *tail])
        raise PtmevalError(
            f"DeepSpeed fine-tune of '{job.model}' on '{job.task}' failed "
            f"(exit status {code}):\n{detail}"
        )
    return pd.read_parquet(history_path)


def finetune_deepspeed(
    job: FinetuneJob,
    data: pd.DataFrame,
    train: pd.DataFrame,
    val: pd.DataFrame,
    snapshot: Path,
    out_dir: Path,
    threads: int,
) -> pd.DataFrame:
    """Fine-tune with DeepSpeed in `gpus_per_job` worker processes; rank 0 writes
    `out_dir/model.safetensors`. Returns the history (the plain path's columns)."""
    from ptmeval.training.basics import input_column

    _check_can_run(job)
    nproc = job.finetune.gpus_per_job
    use_gpus = job.finetune.use_gpus
    col = input_column(data)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ptmeval-ds-") as tmp:
        folder = Path(tmp)
        per_proc = max(1, threads // nproc)
        _write_spec(folder, job, data, col, train, val, snapshot, out_dir, per_proc)
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env["OMP_NUM_THREADS"] = str(per_proc)
        if not use_gpus:
            env["DS_ACCELERATOR"] = "cpu"
        cmd = launcher_command(
            folder / SPEC_FILE,
            nproc,
            use_gpus,
            free_port(),
            env.get("CUDA_VISIBLE_DEVICES") if use_gpus else None,
        )
        code, wall, tail = _run_workers(cmd, env, nproc)
        history = _workers_history(job, folder, code, tail)
    log.info(
        "DeepSpeed fine-tune done in %.1f s (training %.1f s; the rest is start-up)",
        wall,
        float(history["wall_s"].iloc[-1]),
    )
    return history


# ---------------------------------------------------------------- the workers


def _device_views(loaded: Any, device: Any) -> tuple[Any, Any]:
    """(training view, evaluation view) of a LoadedModel on `device`: batches are moved to the
    device; the evaluation view returns logits on the CPU (as `predict_probs` expects)."""
    if device.type == "cpu":
        return loaded, loaded

    def collate(items: Any) -> dict[str, Any]:
        return {k: v.to(device) for k, v in loaded.collate(items).items()}

    def logits_cpu(model: Any, batch: dict[str, Any]) -> Any:
        return loaded.logits_fn(model, batch).cpu()

    train_view = dataclasses.replace(loaded, collate=collate)
    return train_view, dataclasses.replace(train_view, logits_fn=logits_cpu)


def _predict_probs_zero3(loaded: Any, items: list[Any], batch_size: int) -> np.ndarray:
    """`ptmeval.training.predict_probs` under `torch.no_grad` instead of `inference_mode`:
    parameters that ZeRO-3 gathers inside inference mode become inference tensors, and the next
    training step then fails ("Inference tensors cannot be saved for backward")."""
    import torch

    loaded.model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(items), batch_size):
            batch = loaded.collate(items[start : start + batch_size])
            out.append(torch.softmax(loaded.logits(batch).float(), dim=-1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


def _ds_config(settings: Any, micro: int, world: int, use_gpus: bool) -> dict[str, Any]:
    zero: dict[str, Any] = {"stage": settings.zero_stage}
    if settings.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": use_gpus}
    if settings.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": use_gpus}
    return {
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": settings.gradient_accumulation,
        "train_batch_size": micro * settings.gradient_accumulation * world,
        "gradient_clipping": 1.0,
        "zero_optimization": zero,
        # ZeRO-Offload with torch's AdamW (not DeepSpeedCPUAdam, whose op would be compiled)
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


class DeepSpeedStrategy:
    """The loop's optimizer step and validation on a DeepSpeed engine (one per rank): rank r
    takes every `world`-th micro-batch of the global batch; losses are weighted so that each
    step follows the gradient of the mean loss over the global batch."""

    def __init__(
        self,
        engine: Any,
        views: tuple[Any, Any],
        spec: dict[str, Any],
        rank: int,
        world: int,
        items: list[Any],
        targets: Any,
        val_items: list[Any],
        device: Any,
    ) -> None:
        self.engine, (self.train_view, self.eval_view) = engine, views
        self.settings = FinetuneJob.model_validate(spec["job"]).finetune
        self.rank, self.world = rank, world
        self.items, self.targets, self.val_items, self.device = items, targets, val_items, device
        self.parts = world * self.settings.gradient_accumulation
        self.stage3 = self.settings.zero_stage == 3

    def train_step(self, indices: list[int]) -> float:
        import torch
        from deepspeed import comm as dist

        self.engine.train()
        pieces = np.array_split(np.asarray(indices), self.parts)
        step_total = 0.0
        for piece in pieces[self.rank :: self.world]:
            weight = self.parts / len(indices) if len(piece) else 0.0
            idx = piece.tolist() if len(piece) else indices[:1]  # weight 0: keeps in step
            batch = self.train_view.collate([self.items[i] for i in idx])
            logits = self.train_view.logits_fn(self.engine, batch)
            summed = torch.nn.functional.cross_entropy(
                logits.float(), self.targets[idx].to(self.device), reduction="sum"
            )
            total = summed.detach() * (1.0 if weight else 0.0)
            dist.all_reduce(total)  # the same value on every rank: they stop together
            if not torch.isfinite(total):
                return float("nan")
            step_total += float(total)
            self.engine.backward(summed * weight)
            self.engine.step()  # DeepSpeed steps the optimizer at accumulation boundaries
        return step_total / len(indices)

    def validate(self) -> np.ndarray | None:
        from ptmeval.training.basics import predict_probs

        size = self.settings.eval_batch_size
        if self.stage3:  # every rank takes part in gathering the parameters
            probs = _predict_probs_zero3(self.eval_view, self.val_items, size)
            return probs if self.rank == 0 else None
        return predict_probs(self.eval_view, self.val_items, size) if self.rank == 0 else None

    def agree(self, flag: bool) -> bool:
        import torch
        from deepspeed import comm as dist

        value = torch.tensor([1 if flag else 0], device=self.device)
        dist.broadcast(value, 0)
        return bool(value.item())

    def snapshot(self) -> dict[str, Any] | None:
        """Rank 0's CPU copy of the full weights (gathered under ZeRO-3 by every rank)."""
        import deepspeed

        model = self.engine.module
        if self.stage3:
            state: dict[str, Any] | None = None
            with deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None):
                if self.rank == 0:
                    state = {
                        k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()
                    }
            return state
        if self.rank == 0:
            return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        return None


def _micro_batch(settings: Any, world: int) -> int:
    """The micro batch: the global batch split across ranks and accumulation steps (a
    PtmevalError when it would be empty)."""
    ga = settings.gradient_accumulation
    micro = settings.batch_size // (world * ga)
    if micro < 1:
        raise PtmevalError(
            f"batch_size {settings.batch_size} < world size × gradient_accumulation "
            f"({world} × {ga}): the micro batch would be empty"
        )
    return micro


def _worker_device(use_gpus: bool) -> Any:
    """This rank's device: its local GPU (made current) with `use_gpus`, else the CPU."""
    import torch
    from deepspeed.accelerator import get_accelerator

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_gpus:
        get_accelerator().set_device(local_rank)
        return torch.device(get_accelerator().device_name(local_rank))
    return torch.device("cpu")


def _save_best(
    spec: dict[str, Any],
    job: FinetuneJob,
    strategy: DeepSpeedStrategy,
    best: dict[str, Any] | None,
    progress: Any,
    rank: int,
) -> None:
    """Rank 0 writes the best validation point's weights (or the last ones, when none
    improved) with the plain path's keys, the LoRA adapter, and the history."""
    from safetensors.torch import save_model

    from ptmeval.training.basics import WEIGHTS_FILE, load_for_task

    # DeepSpeed's parameters are views into flat buffers (which safetensors refuses to save):
    # rank 0 copies the best validation point's weights into a fresh instance of the
    # architecture (as `evaluate` builds it) and saves that, so the file has the plain path's
    # keys (tied weights stored once).
    if strategy.agree(best is None):  # no validation point improved: the last weights (rank 0
        best = strategy.snapshot()  # decides, so that every rank joins a ZeRO-3 gather)
    if rank == 0:
        out = Path(spec["out_dir"])
        fresh = load_for_task(job, Path(spec["snapshot"]), int(spec["labels"]), "scratch")
        history = pd.DataFrame(progress.rows)
        if job.method == "lora":  # as the plain path: the adapter, then the merged weights
            from ptmeval.training.lora import apply_lora, merge, save_adapter

            apply_lora(fresh, job).model.load_state_dict(best)
            history["task_bytes"] = save_adapter(fresh, out)
            fresh = merge(fresh)
        else:
            fresh.model.load_state_dict(best)
        save_model(fresh.model, str(out / WEIGHTS_FILE))
        history.to_parquet(spec["history"])


def _train(spec: dict[str, Any], rank: int, world: int) -> None:
    """One rank's fine-tune: the model on a DeepSpeed engine, trained under the loop's
    protocol; rank 0 writes the weights and the history."""
    import deepspeed
    import torch
    from deepspeed import comm as dist

    from ptmeval.training.basics import (
        adamw_with_schedule,
        load_for_task,
        seed_everything,
        set_threads,
        val_scores,
    )
    from ptmeval.training.loop import Budget, Progress, protocol_callbacks, run_loop

    job = FinetuneJob.model_validate(spec["job"])
    settings = job.finetune
    set_threads(int(spec["threads"]))
    micro = _micro_batch(settings, world)
    device = _worker_device(spec["use_gpus"])

    seed_everything(job.seed)
    loaded = load_for_task(job, Path(spec["snapshot"]), int(spec["labels"]), job.init)
    if job.method == "lora":  # the adapters and the head train; ZeRO holds the frozen base too
        from ptmeval.training.lora import apply_lora

        apply_lora(loaded, job)
    model = loaded.model
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    train = pd.read_parquet(spec["train"])
    val = pd.read_parquet(spec["val"])
    col = spec["column"]
    items = train[col].tolist()
    targets = torch.tensor(train["label"].to_numpy(), dtype=torch.long)
    val_target = val["label"].to_numpy()
    budget = Budget.plan(len(items), settings)
    optimizer, schedule = adamw_with_schedule(
        model, settings, budget.steps, fused=False
    )  # as the plain path

    engine, _, _, _ = deepspeed.initialize(
        model=model,
        optimizer=optimizer,
        lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, schedule),
        config=_ds_config(settings, micro, world, bool(spec["use_gpus"])),
    )
    views = _device_views(loaded, device)
    strategy = DeepSpeedStrategy(
        engine, views, spec, rank, world, items, targets, val[col].tolist(), device
    )
    generator = torch.Generator().manual_seed(job.seed)
    callbacks, early = protocol_callbacks(job, len(items), trainable, budget)
    progress = run_loop(
        strategy,
        len(items),
        settings.batch_size,
        budget,
        Progress(),
        callbacks,
        early,
        shuffle=lambda n: torch.randperm(n, generator=generator).tolist(),
        score=lambda probs: val_scores(probs, val_target),
    )
    _save_best(spec, job, strategy, early.best_weights, progress, rank)
    dist.barrier()


def main(argv: list[str] | None = None) -> None:
    """Worker entry point: `python -m ptmeval.training.ds_engine --spec <spec.json>` (one per rank)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--spec", required=True, type=Path)
    parser.add_argument("--local_rank", type=int, default=None)  # passed by `deepspeed`
    args = parser.parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format=f"%(asctime)s rank {rank} %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    spec = json.loads(args.spec.read_text())
    # DeepSpeed calls collectives that torch has renamed: one warning per call, not useful here
    warnings.filterwarnings(
        "ignore", message=r"`torch\.distributed\.\w+` is deprecated", category=FutureWarning
    )
    try:
        import deepspeed
        from deepspeed.utils import logger as ds_logger

        ds_logger.setLevel(logging.WARNING)
        deepspeed.init_distributed()  # gloo on the CPU accelerator, nccl on CUDA
        from deepspeed import comm as dist

        rank, world = dist.get_rank(), dist.get_world_size()
        log.info("rank %d of %d started", rank, world)
        _train(spec, rank, world)
    except BaseException as err:
        (Path(spec["errors"]) / f"error-rank{rank}.txt").write_text(
            f"rank {rank}: {type(err).__name__}: {err}"
        )
        raise
    finally:
        import torch.distributed

        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
