"""How a job stops when its run is stopped: Snakemake killed, Ctrl-C, SIGTERM.

- **Snakemake killed** (SIGKILL: a `kill -9`, the OOM killer, a dropped session). Snakemake starts
  each rule script as its child and cannot stop it; the job would live on as an orphan, finish,
  and have its outputs thrown away by the next run (Snakemake marked them incomplete) while that
  run computes them again beside it. `watch_parent` starts a thread that notices the parent's
  death (the process is re-parented) and stops the job with its own child processes.
- **Ctrl-C or SIGTERM** (the terminal's interrupt reaches every job; SLURM's `scancel` and a
  preemption send SIGTERM, then SIGKILL after the cluster's KillWait): a job stops at once, as
  Python does by default.

Inside `cooperating()` — the fine-tune's training loop — a stop waits for the end of the current
step: the loop asks `stop_requested()` after each step, checkpoints it and calls `leave`, so the
next run resumes there instead of at the last validation point. All of this only in a rule's
job (`watch_parent` called, by `ptmeval.logs.log_to`): the library called from a notebook keeps
Python's own Ctrl-C.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

POLL_S = 1.0
# How long a cooperating loop may take to reach the end of its step and checkpoint it.
GRACE_S = 120.0
SIGNALS = {signal.SIGINT: "interrupted (Ctrl-C)", signal.SIGTERM: "terminated (SIGTERM)"}

_parent: int | None = None
_requested: list[str] = []  # why a stop was requested (first reason first)
_cooperating = threading.Event()
_lock = threading.Lock()


def watch_parent(poll_s: float = POLL_S, grace_s: float = GRACE_S) -> None:
    """Stop this process when its parent dies (once per process; a parent that is PID 1 — an
    init, or Snakemake as a container's first process — is not watched)."""
    global _parent
    with _lock:
        if _parent is not None:
            return
        _parent = os.getppid()
        if _parent <= 1:
            return
        thread = threading.Thread(
            target=_watch, args=(_parent, poll_s, grace_s), name="ptmeval-parent", daemon=True
        )
        thread.start()


def stop_requested() -> str | None:
    """Why this job should stop (its Snakemake is gone, a signal arrived), or None."""
    return _requested[0] if _requested else None


@contextmanager
def cooperating() -> Iterator[None]:
    """Within this block the caller asks `stop_requested()` at safe points and calls `leave`
    itself after saving what lets the next run resume: a dead parent's watcher waits for it
    (up to its grace period) and SIGINT/SIGTERM only record the request. On leaving the block,
    the previous signal handlers return, and a signal that came in the meantime is acted on."""
    if _parent is None:  # not a rule's job (a notebook, a test calling the library): Ctrl-C
        yield  # raises KeyboardInterrupt as usual, nothing ends the process
        return
    in_main = threading.current_thread() is threading.main_thread()
    previous: dict[int, Any] = {}
    if in_main:
        for signum in SIGNALS:
            previous[signum] = signal.signal(signum, _record)
    _cooperating.set()
    try:
        yield
    finally:
        _cooperating.clear()
        for number, handler in previous.items():
            signal.signal(number, handler)
    reason = stop_requested()
    if reason is not None:  # the loop ended on its own after the request: stop now
        leave(reason)


def leave(why: str) -> None:
    """End this job now, its child processes with it, without writing outputs."""
    log.warning("%s; stopping this job", why)
    for handler in logging.getLogger().handlers:
        handler.flush()
    _stop_descendants()
    os._exit(1)


def _record(signum: int, frame: FrameType | None) -> None:
    # (no logging in a signal handler: the interrupted code may hold the handler's lock)
    _requested.append(SIGNALS[signal.Signals(signum)])


def _watch(parent: int, poll_s: float, grace_s: float) -> None:
    while os.getppid() == parent:
        time.sleep(poll_s)
    why = f"Snakemake (pid {parent}), which started this job, is gone"
    _requested.append(why)
    if _cooperating.is_set():
        log.warning("%s: the job stops after its current step", why)
        deadline = time.monotonic() + grace_s
        while _cooperating.is_set() and time.monotonic() < deadline:
            time.sleep(poll_s)
    # (also a loop that ended on its own, its budget spent: the outputs it would write next
    # are thrown away by the next run, which finds them marked incomplete)
    leave(why)


def children_by_parent() -> dict[int, list[int]]:
    """Every process's children (pid -> child pids), read from /proc (Linux; elsewhere empty)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    return children


def _stop_descendants() -> None:
    """SIGKILL this process's descendants (DeepSpeed workers, a measurement's child)."""
    children = children_by_parent()
    todo, found = [os.getpid()], []
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    for pid in found:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
