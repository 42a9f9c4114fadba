"""One model failing is a finding, not the end of the run.

A model-specific job (download, profile, runtime, features, transfer scores, selection,
fine-tune, evaluation, export check) that fails writes its outputs as **failure records**
instead of leaving them missing: every Parquet output becomes a one-row table naming the model,
the job, the stage where the failure began and its reason (a `FAILED_COLUMN` marks it), and
every folder output holds `FAILED.json`. A job whose input is such a record does not run; it
passes the record on ("after <stage> failed"). `aggregate` sets the records apart
(`failures` table) and works from the jobs that succeeded, so the report completes and names
what failed and why. The full traceback stays in the job's log.

Each failure also leaves an index entry under `results/.failed/`; the next real run removes the
records and asks for those outputs again (`retry_failed`), so a failure is retried once its
cause may be gone (a package installed, a file replaced) rather than cached for ever.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FAILED_COLUMN = "ptmeval_failed_stage"
MARKER = "FAILED.json"
INDEX = Path(".failed")  # under the results folder
FAILURE_COLUMNS = ["model", "job", "stage", FAILED_COLUMN, "reason"]


def _failure_of(path: Path) -> dict[str, Any] | None:
    """The failure record an input holds (a folder with FAILED.json, or a Parquet table with
    FAILED_COLUMN), or None."""
    if path.is_dir():
        marker = path / MARKER
        return dict(json.loads(marker.read_text())) if marker.is_file() else None
    if path.suffix == ".parquet" and path.is_file():
        import pyarrow.parquet as pq

        try:
            if FAILED_COLUMN not in pq.read_schema(path).names:
                return None
        except Exception:  # a damaged table is not a failure record; its reader says so
            return None
        row = pq.read_table(path).to_pylist()[0]
        return {"stage": row[FAILED_COLUMN], "reason": row["reason"]}
    return None


def upstream_failure(inputs: Iterable[str | Path]) -> dict[str, Any] | None:
    """The first failure record among a job's inputs."""
    for item in inputs:
        found = _failure_of(Path(item))
        if found is not None:
            return found
    return None


def job_name(outputs: dict[str, str]) -> str:
    """'model/task/…': the identity of the job that writes these outputs, which live at
    results/<stage>/<identity…>/<settings key>/<file> (ptmeval.plan; not imported here, so that
    a change to the plan does not change every stage's code version)."""
    first = Path(next(iter(outputs.values())))
    parts = first.parts
    return "/".join(parts[2:-2]) if len(parts) > 4 else first.stem


def write_failure(
    outputs: dict[str, str], model: str, stage: str, origin: str, reason: str
) -> None:
    """Write every output of a job as a failure record, and index it for the next run's retry."""
    import pandas as pd

    from ptmeval.io import write_table

    row = {
        "model": model,
        "job": job_name(outputs),
        "stage": stage,
        FAILED_COLUMN: origin,
        "reason": reason[:500],
    }
    for path in outputs.values():
        out = Path(path)
        if out.suffix == ".parquet":
            write_table(pd.DataFrame([row], columns=FAILURE_COLUMNS), out)
        else:
            out.mkdir(parents=True, exist_ok=True)
            (out / MARKER).write_text(json.dumps({"stage": origin, "reason": reason[:500]}))
        parts = out.parts
        if parts and parts[0] == "results":
            index = Path("results") / INDEX / Path(*parts[1:])
            index = index.with_name(index.name + ".json")
            index.parent.mkdir(parents=True, exist_ok=True)
            index.write_text(json.dumps(row))


def run_as_finding(snakemake: Any, stage: str, model: str, body: Callable[[], None]) -> None:
    """Run a model-specific job's `body`; if an input is a failure record or the body raises,
    write the outputs as failure records (the traceback goes to the job's log) instead."""
    outputs = {name: str(path) for name, path in snakemake.output.items()}
    inputs = [str(p) for p in snakemake.input]
    found = upstream_failure(inputs)
    if found is not None:
        log.warning("not run: %s failed for model %s (%s)", found["stage"], model, found["reason"])
        write_failure(outputs, model, stage, str(found["stage"]), str(found["reason"]))
        return
    try:
        body()
    except Exception as err:  # any failure of one model's job is recorded, not raised
        from ptmeval.errors import PtmevalError

        reason = str(err) if isinstance(err, PtmevalError) else f"{type(err).__name__}: {err}"
        log.error(
            "%s failed for model %s: %s (recorded; the run goes on)\n%s",
            stage,
            model,
            reason,
            "" if isinstance(err, PtmevalError) else traceback.format_exc(),
        )
        write_failure(outputs, model, stage, stage, reason.splitlines()[0] if reason else stage)


def retry_failed(
    results_dir: str | Path = "results", remove: bool = True, wanted: set[str] | None = None
) -> list[str]:
    """The outputs that failure records stand in for, to be computed again by this run (the
    caller asks for them as targets: Snakemake does not rerun a job only because an output is
    missing). With `remove`, the records themselves are removed first (a dry run only lists
    them). With `wanted` (the outputs of this run's jobs), the records of other runs' jobs are
    left alone: they are retried when their own run comes back. An index entry whose output
    exists and is no longer a failure record (the job succeeded since) is dropped."""
    import shutil

    root = Path(results_dir)
    index = root / INDEX
    pending: list[str] = []
    if not index.is_dir():
        return pending
    for entry in sorted(index.rglob("*.json")):
        target = root / entry.relative_to(index).with_suffix("")
        if target.exists() and _failure_of(target) is None:
            entry.unlink()  # recomputed since: no longer a failure record
            continue
        if wanted is not None and str(target) not in wanted:
            continue
        if remove and target.is_dir():
            shutil.rmtree(target)
        elif remove and target.exists():
            target.unlink()
        pending.append(str(target))
    return pending


def is_failure_table(frame: Any) -> bool:
    return FAILED_COLUMN in getattr(frame, "columns", ())
