"""Hyperparameter selection on the validation split, the same for every model.

Per model × task × init: the learning rate (full fine-tuning) or the regularisation strength C
(linear probe, classical baselines) is chosen from a grid by fine-tuning at the largest training
size with the first seed and comparing the best validation score of each value (the primary
metric; ties go to the lower validation loss, then to the smaller value). The choice is then used
for every size and seed. A grid of one value (or a fixed `lr` / `probe_c`) is not tuned and is
labelled so. The table also gives the spread over the grid: how sensitive the model is to it.
"""

from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from ptmeval.adapters import get_spec
from ptmeval.jobs import FinetuneJob

log = logging.getLogger(__name__)


def grid_of(job: FinetuneJob) -> tuple[str, list[float], bool]:
    """(hyperparameter name, values to try, whether they are a selection) of a job."""
    s = job.finetune
    if get_spec(job.adapter).neural and job.method in ("full", "lora"):
        return ("lr", [s.lr], False) if s.lr is not None else ("lr", list(s.lr_grid), True)
    fixed = s.probe_c if s.probe_c is not None else job.options.get("c")
    if fixed is not None:
        return "c", [float(fixed)], False
    return "c", list(s.c_grid), True


def with_value(job: FinetuneJob, param: str, value: float) -> FinetuneJob:
    """The job with its hyperparameter set to `value`."""
    key = "lr" if param == "lr" else "probe_c"
    return job.model_copy(update={"finetune": job.finetune.model_copy(update={key: value})})


def chosen_value(table: pd.DataFrame) -> tuple[str, float]:
    """(name, value) of the chosen row of a selection table."""
    row = table[table["chosen"]].iloc[0]
    return str(row["param"]), float(row["value"])


def select_hyperparameter(
    job: FinetuneJob,
    data: pd.DataFrame,
    subset: pd.DataFrame,
    snapshot: Path | None = None,
    features: pd.DataFrame | None = None,
    threads: int = 1,
) -> pd.DataFrame:
    """Fine-tune once per grid value on `subset`; one row per value, the best one `chosen`."""
    from ptmeval.training import finetune

    param, values, tuned = grid_of(job)
    key = f"val_{job.metric}"
    rows: list[dict[str, Any]] = []
    for value in values:
        row: dict[str, Any] = {
            **job.keys(),
            "n_train": len(subset),
            "param": param,
            "value": value,
            "tuned": tuned,
            "metric": job.metric,
        }
        if not tuned:  # nothing to compare: no training here
            rows.append({**row, "val_score": math.nan, "val_loss": math.nan, "wall_s": 0.0})
            continue
        log.info("%s=%g: fine-tuning on %d examples", param, value, len(subset))
        with tempfile.TemporaryDirectory(prefix="ptmeval-tune-") as tmp:
            history, _ = finetune(
                with_value(job, param, value),
                data,
                subset,
                Path(tmp),
                snapshot=snapshot,
                features=features,
                threads=threads,
                keep_weights=False,
                predict_test=False,
            )
        best = history.sort_values([key, "val_loss"], ascending=[False, True]).iloc[0]
        rows.append(
            {
                **row,
                "val_score": float(best[key]),
                "val_loss": float(best["val_loss"]),
                "best_step": int(best["step"]),
                "steps": int(history["step"].max()),
                "stop_reason": str(history["stop_reason"].iloc[-1]),
                "diverged": bool(history["diverged"].any()),
                "wall_s": float(history["wall_s"].max() + history["val_wall_s"].max()),
            }
        )
        log.info("%s=%g: best validation %s %.4f", param, value, job.metric, rows[-1]["val_score"])
    table = pd.DataFrame(rows)
    score = table["val_score"].fillna(-math.inf)
    loss = table["val_loss"].fillna(math.inf)
    order = sorted(range(len(table)), key=lambda i: (-score[i], loss[i], table["value"][i]))
    table["chosen"] = False
    table.loc[order[0], "chosen"] = True
    table["spread"] = (
        float(table["val_score"].max() - table["val_score"].min()) if tuned else math.nan
    )
    log.info("chosen %s = %g", param, table.loc[order[0], "value"])
    return table


def apply_choice(job: FinetuneJob, table: pd.DataFrame) -> FinetuneJob:
    """The job with the hyperparameter chosen in its selection table."""
    param, value = chosen_value(table)
    log.info("%s = %g (chosen on validation)", param, value)
    return with_value(job, param, value)
