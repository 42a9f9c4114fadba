"""The protocol check: a full fine-tune against its own frozen features, in the aggregate
tables, the report's results table and the recommendation."""

import numpy as np
import pandas as pd

from ptmeval.aggregate import protocol_check
from ptmeval.metrics import score_all
from ptmeval.report import render_report
from ptmeval.transfer import frozen_probe_scores
from ptmeval.verdicts import PROTOCOL_MARK, protocol_caveat
from tests.unit.test_report import tables as report_tables
from tests.unit.test_transfer import feature_table


def fine_tune(model, test, right, n_train, fraction, seeds=(0, 1)):
    """Metrics and per-example predictions of a full fine-tune that gets the first `right`
    share of the test rows right (seed s shifts the split point by s rows)."""
    labels = test["label"].to_numpy()
    k = int(labels.max()) + 1
    metrics, predictions = [], []
    for seed in seeds:
        cut = int(right * len(labels)) + seed
        pred = np.where(np.arange(len(labels)) < cut, labels, (labels + 1) % k)
        keys = {
            "model": model,
            "task": "t",
            "init": "pretrained",
            "method": "full",
            "fraction": fraction,
            "seed": seed,
            "n_train": n_train,
        }
        for name, value in score_all(np.eye(k)[pred], labels).items():
            metrics.append({**keys, "metric": name, "value": value})
        predictions.append(
            pd.DataFrame({**keys, "row_id": test["row_id"], "label": labels, "pred": pred})
        )
    return pd.DataFrame(metrics), pd.concat(predictions, ignore_index=True)


def check_tables(metric="accuracy"):
    """Separable frozen features (the probe reaches ~1.0) and two fine-tunes at the full pool:
    'bad' right on half the test rows, 'good' on all of them."""
    features = feature_table(n_per=40)
    test = features[features["split"] == "test"]
    pool = features.loc[features["split"] == "train", ["row_id"]]
    frozen = pd.concat(
        [frozen_probe_scores(m, "t", features, {(1.0, 0): pool}) for m in ("bad", "good")]
    )
    bad = fine_tune("bad", test, 0.5, len(pool), 1.0)
    good = fine_tune("good", test, 1.0, len(pool), 1.0, seeds=(0,))
    results = pd.concat([bad[0], good[0]], ignore_index=True)
    predictions = pd.concat([bad[1], good[1]], ignore_index=True)
    return protocol_check(results, predictions, frozen, metric, n_boot=500).set_index("model")


def test_a_fine_tune_below_its_frozen_probe_is_flagged_and_one_above_is_not():
    check = check_tables()
    bad, good = check.loc["bad"], check.loc["good"]
    assert bad["frozen_score"] > 0.95 and bad["score"] < 0.6
    assert bad["score_lo"] <= bad["score"] <= bad["score_hi"] < bad["frozen_score"]
    assert bool(bad["below_frozen"]) and bad["verdict"] == PROTOCOL_MARK
    assert bad["difference"] == bad["score"] - bad["frozen_score"] and bool(bad["largest"])
    assert good["score"] >= good["frozen_score"] and not bool(good["below_frozen"])
    assert good["verdict"] == "not below its frozen features"


def test_macro_f1_interval_brackets_the_score():
    check = check_tables("macro_f1")
    bad = check.loc["bad"]
    assert bad["score_lo"] <= bad["score"] <= bad["score_hi"] < bad["frozen_score"]
    assert bool(bad["below_frozen"]) and not bool(check.loc["good", "below_frozen"])


def test_no_verdict_without_predictions_or_for_other_methods():
    features = feature_table()
    test = features[features["split"] == "test"]
    pool = features.loc[features["split"] == "train", ["row_id"]]
    frozen = frozen_probe_scores("bad", "t", features, {(1.0, 0): pool})
    metrics, predictions = fine_tune("bad", test, 0.3, len(pool), 1.0)
    row = protocol_check(metrics, pd.DataFrame(), frozen, "accuracy", n_boot=100).iloc[0]
    assert np.isnan(row["score_hi"]) and not bool(row["below_frozen"])
    probe = metrics.assign(method="linear_probe")
    assert protocol_check(probe, predictions, frozen, "accuracy", n_boot=100).empty


def flagged_row(**extra):
    return pd.DataFrame(
        [
            {
                "model": "m1",
                "task": "t<b>",
                "init": "pretrained",
                "method": "full",
                "fraction": 1.0,
                "n_train": 20,
                "metric": "accuracy",
                "n_seeds": 2,
                "score": 0.505,
                "score_lo": 0.45,
                "score_hi": 0.56,
                "frozen_score": 0.95,
                "frozen_n_seeds": 2,
                "difference": -0.445,
                "below_frozen": True,
                "largest": True,
                "verdict": PROTOCOL_MARK,
                **extra,
            }
        ]
    )


def test_caveat_names_the_model_and_task_only_when_flagged_at_the_largest_size():
    text = protocol_caveat(flagged_row())
    assert text.startswith("The ranking below is uncertain") and "m1" in text and "t<b>" in text
    assert protocol_caveat(flagged_row(largest=False)) == ""
    assert protocol_caveat(flagged_row(below_frozen=False)) == ""
    assert protocol_caveat(flagged_row(), models=["other"]) == ""
    # the sentence names the adaptation method that was checked
    assert "m1's full fine-tune on" in text
    assert "m1's LoRA fine-tune on" in protocol_caveat(flagged_row(method="lora"))


def test_report_marks_the_score_and_says_the_ranking_is_uncertain(tmp_path):
    from ptmeval.scorecard import DIMENSIONS

    tables = report_tables()
    tables["protocol_check"] = flagged_row()
    tables["scorecard"] = pd.DataFrame(
        [{"model": "m1", "modality": "text", **dict.fromkeys([*DIMENSIONS, "overall"], 50.0)}]
    )
    tables["scorecard_parts"] = pd.DataFrame(
        [
            {
                "model": "m1",
                "dimension": DIMENSIONS[0],
                "submeasure": "score_at_largest",
                "kind": "benefit",
                "raw": 0.505,
                "scaled": 1.0,
                "weight": 1.0,
            }
        ]
    )
    html = render_report(tables, tmp_path / "index.html", title="x", config_hash="abc").read_text()
    results = html[html.index('id="results"') :]
    # beside the flagged score (accuracy at 20 examples), and only there
    assert f"0.505 ± 0.007 ⚠ {PROTOCOL_MARK}" in results
    assert results.count(PROTOCOL_MARK) == 1
    section = html[html.index('id="protocol-check"') : html.index('id="results"')]
    assert PROTOCOL_MARK in section and "0.950" in section and "-0.445" in section
    recommendation = html[html.index('id="recommendation"') :].split("</p>")[0]
    assert "uncertain" in recommendation and "m1" in recommendation
    assert "t&lt;b&gt;" in recommendation
