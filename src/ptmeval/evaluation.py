"""`evaluate`: test-set predictions and metrics of one fine-tuned model."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ptmeval.adapters import get_adapter, get_spec
from ptmeval.jobs import FinetuneJob
from ptmeval.metrics import METRICS, score_all
from ptmeval.training import (
    WEIGHTS_FILE,
    input_column,
    load_for_task,
    num_labels,
    predict_probs,
    probe_probs,
    set_threads,
)

log = logging.getLogger(__name__)


def test_probs(
    job: FinetuneJob,
    data: pd.DataFrame,
    model_dir: Path,
    snapshot: Path | None = None,
    features: pd.DataFrame | None = None,
    threads: int = 1,
) -> tuple[pd.DataFrame, np.ndarray]:
    """(test rows, class probabilities) of the fine-tuned model in `model_dir`."""
    test = data[data["split"] == "test"].reset_index(drop=True)
    labels = num_labels(data)
    if not get_spec(job.adapter).neural:
        adapter = get_adapter(job.adapter, job.options)
        return test, adapter.predict_proba(model_dir, test["text"].tolist(), labels)
    if job.method == "linear_probe":
        assert features is not None
        rows = features.set_index("row_id").loc[test["row_id"]].reset_index()
        return test, probe_probs(model_dir, rows)
    from safetensors.torch import load_model

    assert snapshot is not None
    set_threads(threads)
    loaded = load_for_task(job, snapshot, labels, "scratch")  # architecture only
    load_model(loaded.model, str(Path(model_dir) / WEIGHTS_FILE))
    return test, predict_probs(
        loaded, test[input_column(data)].tolist(), job.finetune.eval_batch_size
    )


def evaluate(
    job: FinetuneJob,
    data: pd.DataFrame,
    subset_size: int,
    model_dir: Path,
    snapshot: Path | None = None,
    features: pd.DataFrame | None = None,
    threads: int = 1,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(metrics in long form, per-example predictions) on the fixed test split."""
    test, probs = test_probs(job, data, model_dir, snapshot, features, threads)
    target = test["label"].to_numpy()
    keys = {**job.keys(), "n_train": subset_size}
    scores = score_all(probs, target)
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
    pred = np.argmax(probs, axis=1)
    predictions = pd.DataFrame(
        {
            **{k: [v] * len(test) for k, v in keys.items()},
            "row_id": test["row_id"].to_numpy(),
            "label": target,
            "pred": pred,
            "correct": pred == target,
            "prob_label": probs[np.arange(len(target)), target],
            "probs": list(probs.astype(np.float32)),
        }
    )
    log.info("%s on %s (%s, n=%d): %s", job.model, job.task, job.init, subset_size, scores)
    return metrics, predictions
