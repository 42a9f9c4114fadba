"""`evaluate`: test-set predictions and metrics of one fine-tuned model, from the class
probabilities its fine-tune job computed while the model was in memory (torch-free)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ptmeval.jobs import FinetuneJob
from ptmeval.metrics import METRICS, score_all

log = logging.getLogger(__name__)


def probs_table(
    job: FinetuneJob, data: pd.DataFrame, probs: np.ndarray, n_train: int
) -> pd.DataFrame:
    """The fine-tune's class probabilities on the test split, one row per test example (the
    fine-tune job writes it; `evaluate` scores it)."""
    test = data[data["split"] == "test"]
    if len(probs) != len(test):
        raise ValueError(f"{len(probs)} probability rows for {len(test)} test examples")
    return pd.DataFrame(
        {
            **{k: [v] * len(test) for k, v in job.keys().items()},
            "n_train": n_train,
            "row_id": test["row_id"].to_numpy(),
            "label": test["label"].to_numpy(),
            "probs": list(np.asarray(probs, dtype=np.float32)),
        }
    )


def evaluate(job: FinetuneJob, probs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(metrics in long form, per-example predictions) on the fixed test split, from the
    fine-tune's test probabilities (`probs_table`): no model is loaded here."""
    matrix = np.stack(probs["probs"].to_numpy()).astype(np.float64)
    target = probs["label"].to_numpy()
    subset_size = int(probs["n_train"].iloc[0]) if len(probs) else 0
    keys = {**job.keys(), "n_train": subset_size}
    scores = score_all(matrix, target)
    metrics = pd.DataFrame(
        [
            {
                **keys,
                "metric": name,
                "value": value,
                "higher_is_better": getattr(METRICS[name], "higher_is_better", True),
            }  # type: ignore[attr-defined]
            for name, value in scores.items()
        ]
    )
    pred = np.argmax(matrix, axis=1)
    predictions = pd.DataFrame(
        {
            **{k: [v] * len(probs) for k, v in keys.items()},
            "row_id": probs["row_id"].to_numpy(),
            "label": target,
            "pred": pred,
            "correct": pred == target,
            "prob_label": matrix[np.arange(len(target)), target],
            "probs": list(matrix.astype(np.float32)),
        }
    )
    log.info("%s on %s (%s, n=%d): %s", job.model, job.task, job.init, subset_size, scores)
    return metrics, predictions
