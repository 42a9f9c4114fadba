import re

import pandas as pd

from ptmeval.aggregate import fine_tune_cost, learning_curves
from ptmeval.report import render_report


def tables():
    rows = []
    for model, init in (("m1", "pretrained"), ("m1", "scratch")):
        for n in (10, 20):
            for seed in (0, 1):
                for metric in ("accuracy", "macro_f1", "ece"):
                    rows.append(
                        {
                            "model": model,
                            "task": "t<b>",
                            "init": init,
                            "method": "full",
                            "fraction": n / 20,
                            "seed": seed,
                            "n_train": n,
                            "metric": metric,
                            "value": 0.5 + 0.01 * seed,
                        }
                    )
    results = pd.DataFrame(rows)
    history = pd.DataFrame(
        [
            {
                "model": "m1",
                "task": "t<b>",
                "init": "pretrained",
                "method": "full",
                "fraction": 1.0,
                "seed": 0,
                "n_train": 20,
                "epoch": 1,
                "wall_s": 1.5,
                "samples_seen": 20,
                "diverged": False,
            }
        ]
    )
    profile = pd.DataFrame(
        [
            {
                "model": "m1",
                "adapter": "hf-text",
                "family": "encoder",
                "architecture": "<script>x</script>",
                "method": "full",
                "params_total": 10,
                "params_trainable": 10,
                "bytes_on_disk": 1000,
                "weights_formats": "safetensors",
                "flops_forward_per_sample": 1e9,
                "flops_input": "8 tokens",
                "license": "mit",
            }
        ]
    )
    tasks = pd.DataFrame(
        [
            {
                "task": "t<b>",
                "split": s,
                "label": 0,
                "label_name": "a",
                "count": 5,
                "modality": "text",
            }
            for s in ("train", "validation", "test")
        ]
    )
    return {
        "results": results,
        "learning_curve": learning_curves(results),
        "history": history,
        "finetune_cost": fine_tune_cost(history),
        "profile": profile,
        "manifest": pd.DataFrame(),
        "tasks": tasks,
    }


def test_learning_curve_statistics():
    curve = learning_curves(tables()["results"])
    row = curve[
        (curve["init"] == "pretrained") & (curve["n_train"] == 10) & (curve["metric"] == "accuracy")
    ].iloc[0]
    assert row["mean"] == 0.505 and row["n_seeds"] == 2 and row["min"] == 0.5 and row["max"] == 0.51


def test_report_escapes_data_strings_and_embeds_figures(tmp_path):
    out = render_report(
        tables(),
        tmp_path / "r" / "index.html",
        title="<script>alert(1)</script>",
        config_hash="abc",
    )
    html = out.read_text()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "t&lt;b&gt;" in html
    assert html.count("<svg") == 1  # one learning-curve figure for the one task
    assert not re.search(r"(src|href)=[\"']?https?:", html)  # nothing fetched from a network


def test_report_marks_collapsed_runs_and_never_reached_curves(tmp_path):
    data = tables()
    data["difficulty"] = pd.DataFrame(
        [
            {
                "model": "m<i>",
                "task": "t<b>",
                "init": "scratch",
                "method": "full",
                "n_jobs": 4,
                "test_score_mean": 0.8,
                "chance": 0.8,
                "top_pred_share": 1.0,
                "n_collapsed": 4,
                "n_at_chance": 4,
                "at_chance_rate": 1.0,
                "diverged_rate": 1.0,
            }
        ]
    )
    data["data_needed"] = pd.DataFrame(
        [
            {
                "model": "m<i>",
                "task": "t<b>",
                "init": "scratch",
                "kind": "relative",
                "level": 0.9,
                "target_score": 0.72,
                "n_needed": float("nan"),
                "n_needed_lo": float("nan"),
                "n_needed_hi": float("nan"),
                "extrapolated": False,
                "reachable": False,
                "never_reached": True,
                "never_reached_reason": "every run collapsed",
                "reason": "no decay",
            }
        ]
    )
    html = render_report(data, tmp_path / "index.html", title="r", config_hash="abc").read_text()
    assert "0.800 ⚠ collapsed 4/4" in html
    assert "m&lt;i&gt; (scratch, full) on t&lt;b&gt;: 4 of 4 runs collapsed" in html
    assert "<i>" not in html
    assert "<td>never reached</td>" in html and "[0, 0]" not in html


def test_hyperparameter_selection_is_shown_and_fixed_values_are_labelled(tmp_path):
    t = tables()
    t["tuning"] = pd.DataFrame(
        [
            {
                "model": "m1",
                "task": "t<b>",
                "init": "pretrained",
                "method": "full",
                "n_train": 20,
                "param": "lr",
                "value": value,
                "val_score": score,
                "val_loss": 1.0,
                "best_step": 10,
                "stop_reason": "early_stopping",
                "chosen": value == 3e-4,
                "tuned": True,
                "spread": 0.4,
            }
            for value, score in ((1e-4, 0.5), (3e-4, 0.9))
        ]
    )
    t["difficulty"] = pd.DataFrame(
        [
            {"model": "m1", "task": "t<b>", "init": i, "method": "full", "n_jobs": 4}
            | {"hparam": "lr", "hparam_value": v, "hparam_tuned": tuned, "hparam_spread": 0.4}
            | {"hparam_at_edge": edge}
            for i, v, tuned, edge in (
                ("pretrained", 3e-4, True, True),
                ("scratch", 1e-3, False, False),
            )
        ]
    )
    page = render_report(t, tmp_path / "r.html", title="r", config_hash="abc").read_text()
    assert "Hyperparameter selection" in page and "best validation score" in page
    assert "lr 0.0003 ⚠ grid edge" in page and "lr 0.001 (not tuned)" in page


def test_the_learning_curve_figure_plots_the_analysis_metric(tmp_path):
    f1 = render_report(
        tables(), tmp_path / "f1.html", title="r", config_hash="a", metric="macro_f1"
    )
    acc = render_report(tables(), tmp_path / "acc.html", title="r", config_hash="a")
    assert "test macro_f1" in f1.read_text() and "Test macro_f1" in f1.read_text()
    assert "test macro_f1" not in acc.read_text() and "test accuracy" in acc.read_text()


def test_equal_seeds_whose_mean_rounds_above_them_still_plot():
    """Three seeds of a deterministic probe on the whole pool score the same; their mean can be
    one rounding step above that score (0.1 + 0.1 + 0.1 = 0.30000000000000004), which made the
    error bar negative and the report fail (the default's cold run, 2026-12-07)."""
    from ptmeval.figures import learning_curve_figure

    scores = [0.1, 0.1, 0.1]
    mean = sum(scores) / 3
    assert mean > max(scores)  # the case itself
    curve = pd.DataFrame(
        {
            "task": "t",
            "metric": "accuracy",
            "model": "m",
            "init": "pretrained",
            "n_train": [20, 40],
            "mean": [0.05, mean],
            "min": [0.04, min(scores)],
            "max": [0.06, max(scores)],
        }
    )
    assert "<svg" in learning_curve_figure(curve, pd.DataFrame(), "t")
