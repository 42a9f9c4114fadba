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
