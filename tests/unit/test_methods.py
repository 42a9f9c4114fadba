"""The adaptation-method comparison (`ptmeval.methods`) and the scratch curve other methods
borrow (`ptmeval.aggregate.borrow_scratch`), on small hand-made tables."""

import math

import numpy as np
import pandas as pd
import pytest

from ptmeval.comparison import system_label
from ptmeval.methods import COLUMNS, borrow_scratch, method_comparison, summaries

BASES = {"m.full": "m", "m.lora": "m", "m.linear_probe": "m", "other": "other"}
METHOD = {"m.full": "full", "m.lora": "lora", "m.linear_probe": "linear_probe", "other": "full"}
SCORES = {  # mean test score at n_train 10 and 20
    "m.full": (0.60, 0.90),
    "m.lora": (0.55, 0.88),
    "m.linear_probe": (0.70, 0.75),
    "other": (0.5, 0.6),
}


def tables() -> dict[str, pd.DataFrame]:
    curve = pd.DataFrame(
        [
            {
                "model": m,
                "task": "t",
                "init": "pretrained",
                "method": METHOD[m],
                "fraction": n / 20,
                "n_train": n,
                "metric": "accuracy",
                "mean": s,
                "std": 0.01,
                "min": s - 0.01,
                "max": s + 0.01,
                "n_seeds": 2,
            }
            for m, pair in SCORES.items()
            for n, s in zip((10, 20), pair, strict=True)
        ]
    )
    ranks = pd.DataFrame(
        [
            {
                "task": "t",
                "system": system_label(m, "pretrained", METHOD[m]),
                "model": m,
                "init": "pretrained",
                "method": METHOD[m],
                "accuracy": SCORES[m][1],
                "accuracy_lo": SCORES[m][1] - 0.05,
                "accuracy_hi": SCORES[m][1] + 0.05,
            }
            for m in SCORES
        ]
    )
    label = {m: system_label(m, "pretrained", METHOD[m]) for m in SCORES}
    pairwise = pd.DataFrame(
        [  # stored with the more accurate system first, diff >= 0
            {
                "task": "t",
                "system_a": label["m.full"],
                "system_b": label["m.lora"],
                "diff": 0.02,
                "diff_lo": -0.01,
                "diff_hi": 0.05,
                "mcnemar_p_holm": 0.4,
                "significant": False,
            },
            {
                "task": "t",
                "system_a": label["m.full"],
                "system_b": label["m.linear_probe"],
                "diff": 0.15,
                "diff_lo": 0.10,
                "diff_hi": 0.20,
                "mcnemar_p_holm": 0.001,
                "significant": True,
            },
        ]
    )
    history = pd.DataFrame(
        [
            {
                "model": m,
                "task": "t",
                "init": "pretrained",
                "method": METHOD[m],
                "fraction": f,
                "seed": s,
                "epoch": 1.0,
                "trainable_params": params,
                "task_bytes": size,
            }
            for m, params, size in (
                ("m.full", 1000, 4000),
                ("m.lora", 50, 200),
                ("m.linear_probe", 10, 80),
            )
            for f in (0.5, 1.0)
            for s in (0, 1)
        ]
    )
    stored = {
        m: (int(g["trainable_params"].max()), int(g["task_bytes"].max()))
        for m, g in history.groupby("model")
    }
    cost = pd.DataFrame(
        [
            {
                "model": m,
                "task": "t",
                "init": "pretrained",
                "method": METHOD[m],
                "n_train": n,
                "wall_s": w,
                "trainable_params": stored[m][0],
                "task_bytes": stored[m][1],
            }
            for m, w in (("m.full", 10.0), ("m.lora", 6.0), ("m.linear_probe", 0.5))
            for n in (10, 20)
        ]
    )
    runtime = pd.DataFrame(
        [
            {
                "model": m,
                "mode": "train_step",
                "batch_size": b,
                "device_kind": "cpu",
                "latency_p50_ms": ms * b,
                "peak_rss_mb": mb,
            }
            for m, ms, mb in (("m.full", 10.0, 900.0), ("m.lora", 7.0, 700.0))
            for b in (8, 16)
        ]
    )
    return {
        "learning_curve": curve,
        "ranks": ranks,
        "pairwise": pairwise,
        "history": history,
        "finetune_cost": cost,
        "runtime": runtime,
    }


def test_every_method_of_a_base_with_several_at_every_size():
    out = method_comparison(tables(), BASES, "accuracy")
    assert list(out.columns) == COLUMNS
    assert set(out["base"]) == {"m"}  # a model with one method gets no comparison
    assert len(out) == 3 * 2
    row = out.set_index(["model", "n_train"])
    assert row.loc[("m.lora", 10), "score"] == pytest.approx(0.55)
    assert row.loc[("m.lora", 20), "task_mb"] == pytest.approx(200 / 1e6)
    assert row.loc[("m.linear_probe", 20), "trainable_params"] == 10
    assert row.loc[("m.lora", 20), "finetune_s"] == pytest.approx(6.0)
    # the training step at the largest measured batch; a probe has none
    assert row.loc[("m.full", 20), "train_batch"] == 16
    assert row.loc[("m.full", 20), "train_step_ms"] == pytest.approx(160.0)
    assert math.isnan(row.loc[("m.linear_probe", 20), "train_step_ms"])


def test_the_paired_difference_from_the_best_method_at_the_largest_size():
    out = method_comparison(tables(), BASES, "accuracy").set_index(["model", "n_train"])
    top = out.xs(20, level="n_train")
    assert set(top["best_method"]) == {"full"}
    assert top.loc["m.full", "diff_vs_best"] == 0.0
    # lora - full = -0.02, interval of (lora - full) = -(interval of full - lora)
    assert top.loc["m.lora", "diff_vs_best"] == pytest.approx(-0.02)
    assert (top.loc["m.lora", "diff_lo"], top.loc["m.lora", "diff_hi"]) == pytest.approx(
        (-0.05, 0.01)
    )
    assert top.loc["m.lora", "tied_with_best"]
    assert not top.loc["m.linear_probe", "tied_with_best"]
    assert top.loc["m.linear_probe", "p_vs_best"] == pytest.approx(0.001)
    assert top.loc["m.lora", "score_lo"] == pytest.approx(0.83)
    # smaller sizes are not tested (the paired tests run at each system's largest size)
    assert out.xs(10, level="n_train")["diff_vs_best"].isna().all()


def test_a_pair_stored_the_other_way_round_keeps_the_sign():
    t = tables()
    pw = t["pairwise"]
    # lora more accurate than full: the row stores lora first
    pw.loc[0, ["system_a", "system_b"]] = pw.loc[0, ["system_b", "system_a"]].to_numpy()
    t["ranks"].loc[t["ranks"]["model"] == "m.lora", "accuracy"] = 0.92
    top = method_comparison(t, BASES, "accuracy").query("n_train == 20").set_index("model")
    assert set(top["best_method"]) == {"lora"}
    assert top.loc["m.full", "diff_vs_best"] == pytest.approx(-0.02)
    assert (top.loc["m.full", "diff_lo"], top.loc["m.full", "diff_hi"]) == pytest.approx(
        (-0.05, 0.01)
    )


def test_the_summary_names_the_best_method_and_the_others_costs():
    (line,) = summaries(method_comparison(tables(), BASES, "accuracy"))
    assert line.startswith("m on t (n = 20): full is the most accurate (0.900 [0.850, 0.950])")
    assert "lora 0.880: -0.020 [-0.050, +0.010], tied with it" in line
    assert "0.00 MB per extra task (5% of full's)" in line
    assert "0.6× its fine-tune time" in line
    assert "linear_probe 0.750: -0.150 [-0.200, -0.100], behind it" in line


def test_nothing_to_compare_without_several_methods():
    out = method_comparison(tables(), {m: m for m in BASES}, "accuracy")
    assert out.empty and list(out.columns) == COLUMNS
    assert summaries(out) == []


def test_methods_without_scratch_borrow_their_base_s_scratch_rows():
    rows = [
        {"model": m, "method": METHOD[m], "init": i, "n_train": 10, "value": v}
        for m, i, v in (
            ("m.full", "pretrained", 0.6),
            ("m.full", "scratch", 0.3),
            ("m.lora", "pretrained", 0.5),
            ("other", "pretrained", 0.4),
        )
    ]
    frame = pd.DataFrame(rows)
    out = borrow_scratch(frame, BASES)
    borrowed = out[(out["model"] == "m.lora") & (out["init"] == "scratch")]
    assert borrowed[["method", "value"]].to_dict("records") == [{"method": "lora", "value": 0.3}]
    assert len(out) == len(frame) + 1  # nothing for 'other' (no sibling with scratch)
    assert borrow_scratch(frame, {}).equals(frame)
    assert np.isclose(out[out["model"] == "m.full"]["value"].sum(), 0.9)


def test_what_methods_share_is_repeated_under_each_of_them():
    from ptmeval.methods import for_every_method, shared_inference

    runtime = pd.DataFrame(
        [
            {"model": "m.full", "mode": "inference", "batch_size": 1, "latency_p50_ms": 5.0},
            {"model": "m.full", "mode": "train_step", "batch_size": 8, "latency_p50_ms": 90.0},
            {"model": "m.lora", "mode": "train_step", "batch_size": 8, "latency_p50_ms": 60.0},
            {"model": "other", "mode": "inference", "batch_size": 1, "latency_p50_ms": 7.0},
        ]
    )
    out = shared_inference(runtime, BASES)
    inference = out[out["mode"] == "inference"].set_index("model")["latency_p50_ms"]
    assert inference.to_dict() == {
        "m.full": 5.0,
        "m.lora": 5.0,
        "m.linear_probe": 5.0,
        "other": 7.0,
    }
    steps = out[out["mode"] == "train_step"].set_index("model")["latency_p50_ms"]
    assert steps.to_dict() == {"m.full": 90.0, "m.lora": 60.0}  # each method's own
    frozen = pd.DataFrame([{"model": "m.full", "task": "t", "value": 0.8}])
    assert sorted(for_every_method(frozen, BASES)["model"]) == [
        "m.full",
        "m.linear_probe",
        "m.lora",
    ]


def test_an_equal_score_reads_as_zero_not_minus_zero():
    t = tables()
    t["pairwise"].loc[0, "diff"] = 0.0
    top = method_comparison(t, BASES, "accuracy").query("n_train == 20").set_index("model")
    assert str(top.loc["m.lora", "diff_vs_best"]) == "0.0"
