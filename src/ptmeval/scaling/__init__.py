"""Scaling analysis: learning curves, data needed, transfer gain and fine-tuning difficulty.

Input is the tidy results table (columns ``model, task, init, method, fraction, seed, n_train,
metric, value``) and, for `finetune_process`, the per-epoch fine-tune history. Every public
function returns a tidy DataFrame (one row per curve, per level, per size or per job).

One module per question:

* `ptmeval.scaling.powerlaw`: the saturating power law ``err(n) = a + b * n**(-c)`` and its
  robust fit (the model, its bounds, the fitting method);
* `ptmeval.scaling.curves`: one fitted learning curve per model x task x init x method, its
  bootstrap over seeds, what "trustworthy" means, the band for plotting and the examples needed
  to reach a score;
* `ptmeval.scaling.gain`: what pretraining buys, as a score difference and as scratch examples;
* `ptmeval.scaling.process`: the fine-tuning process per job (chance, collapsed and diverged
  runs) and the training-difficulty table;
* `ptmeval.scaling.common`: the table keys, the thresholds and the helpers they share.
"""

from __future__ import annotations

from ptmeval.scaling.common import (
    CHANCE_TOL,
    COLLAPSE_SHARE,
    EXTRAP_TOL,
    JOB_KEYS,
    KEYS,
    MIN_SIZES,
    PAIR_KEYS,
    SCORE_METRICS,
)
from ptmeval.scaling.curves import FIT_COLUMNS, curve_band, data_needed, learning_curve_fits
from ptmeval.scaling.gain import effective_data_transferred, transfer_gain
from ptmeval.scaling.powerlaw import PowerLawFit, fit_power_law
from ptmeval.scaling.process import (
    PROCESS_COLUMNS,
    chance_scores,
    finetune_process,
    prediction_collapse,
    training_difficulty,
)

__all__ = [
    "CHANCE_TOL",
    "COLLAPSE_SHARE",
    "EXTRAP_TOL",
    "FIT_COLUMNS",
    "JOB_KEYS",
    "KEYS",
    "MIN_SIZES",
    "PAIR_KEYS",
    "PROCESS_COLUMNS",
    "SCORE_METRICS",
    "PowerLawFit",
    "chance_scores",
    "curve_band",
    "data_needed",
    "effective_data_transferred",
    "finetune_process",
    "fit_power_law",
    "learning_curve_fits",
    "prediction_collapse",
    "training_difficulty",
    "transfer_gain",
]
