"""The scorecard's scores on a small hand-checked table set, the written rule of which
sub-measures apply, and the recommendation's decision rule (ties, costs, protocol flags)."""

import numpy as np
import pandas as pd
import pytest

from ptmeval import decision
from ptmeval.aggregate import comparisons, decision_table, learning_curves
from ptmeval.report import render_report, spread
from ptmeval.scorecard import recommendation, score_cell, scorecard

FACTS = {
    "a": {"modality": "text", "neural": True},
    "b": {"modality": "text", "neural": False},  # a classical baseline
}


def curve_rows(model, init, scores):
    return [
        {"model": model, "task": "t", "init": init, "method": "full", "metric": "accuracy"}
        | {"n_train": n, "mean": s, "std": 0.01, "n_seeds": 2}
        for n, s in scores.items()
    ]


def hand_checked_tables():
    curve = pd.DataFrame(
        curve_rows("a", "pretrained", {10: 0.6, 40: 0.8})
        + curve_rows("a", "scratch", {10: 0.3, 40: 0.4})
        + curve_rows("b", "scratch", {10: 0.5, 40: 0.7})
    )
    cost = pd.DataFrame(
        [
            {"model": "a", "init": "pretrained", "wall_s": 100.0, "trainable_params": 1e6},
            {"model": "a", "init": "scratch", "wall_s": 80.0, "trainable_params": 1e6},
            {"model": "b", "init": "scratch", "wall_s": 2.0, "trainable_params": 1e3},
        ]
    ).assign(task="t", method="full", n_train=40)
    runtime = pd.DataFrame(
        [
            {"model": "a", "latency_p50_ms": 10.0, "peak_rss_mb": 500.0},
            {"model": "b", "latency_p50_ms": 1.0, "peak_rss_mb": 100.0},
        ]
    ).assign(status="ok", device_kind="cpu", mode="inference", batch_size=1)
    return {
        "learning_curve": curve,
        "results": curve[["model", "task", "init"]],
        "export": pd.DataFrame(
            [
                {
                    "model": "a",
                    "standard_api": "transformers AutoModelForSequenceClassification",
                    "torch_export": "ok",
                    "onnxruntime": "ok",
                    "accuracy_change": 0.0,
                }
            ]
        ),
        "profile": pd.DataFrame(
            [{"model": "a", "safetensors": True, "flops_forward_per_sample": 1e9}]
        ),
        "finetune_cost": cost,
        "runtime": runtime,
        "compatibility": pd.DataFrame(
            [
                {
                    "model": "a",
                    "eager_pytorch": "ok",
                    "torch_export": "ok",
                    "onnx_onnxruntime": "ok (max |Δlogit| 1e-6, Δaccuracy +0.000)",
                    "deepspeed_finetune": "not run (finetune engine: plain PyTorch)",
                },
                {
                    "model": "b",
                    "eager_pytorch": "not a torch model (scikit-learn)",
                    "torch_export": "not applicable",
                    "onnx_onnxruntime": "not applicable",
                    "deepspeed_finetune": "not run (finetune engine: plain PyTorch)",
                },
            ]
        ),
        "reuse": pd.DataFrame(
            [{"model": "a", "mean_normalised": 1.0}, {"model": "b", "mean_normalised": 0.875}]
        ),
        "transfer_gain": pd.DataFrame([{"model": "a", "task": "t", "n_train": 40, "gain": 0.4}]),
        # a's deployment variants: fp32 and onnx-int8 pass the gate, int8-dynamic fails it
        "deployment": pd.DataFrame(
            [
                {"variant": "fp32", "passes": True, "peak_rss_mb": 480.0},
                {"variant": "onnx-int8", "passes": True, "peak_rss_mb": 120.0},
                {"variant": "int8-dynamic", "passes": False, "peak_rss_mb": 90.0},
            ]
        ).assign(model="a", task="t", status="ok"),
    }


def test_scores_of_a_hand_checked_table_set():
    card, parts = scorecard(hand_checked_tables(), models=FACTS)
    card = card.set_index("model")
    # a: integrability (1 + 1 + 1 + 1 + 2/100) / 5; accessibility (1/10 + 100/500 + 1 + 1 + 1)
    #    / 5 (the only model with deployment variants: its leanest passing one counts 1)
    # b: only the fine-tune time applies to integrability (it is the cheapest: 1);
    #    accessibility (1 + 1 + 0.5/0.6) / 3, FLOPs not applicable; reusability 0.875
    expected = {
        "a": {
            "integrability": 80.4,
            "accessibility": 66.0,
            "scalability": 100.0,
            "interoperability": 100.0,
            "reusability": 100.0,
        },
        "b": {
            "integrability": 100.0,
            "accessibility": 100 * (2 + 0.5 / 0.6) / 3,
            "scalability": 100 * (0.7 / 0.8 + 1) / 2,
            "interoperability": np.nan,
            "reusability": 87.5,
        },
    }
    for model, dims in expected.items():
        for dim, value in dims.items():
            assert card.at[model, dim] == pytest.approx(value, nan_ok=True), (model, dim)
    assert card.at["a", "overall"] == pytest.approx((80.4 + 66.0 + 300) / 5)
    b_dims = [v for v in expected["b"].values() if not np.isnan(v)]
    assert card.at["b", "overall"] == pytest.approx(sum(b_dims) / 4)
    assert card.at["b", "integrability_applicable"] == 1
    assert card.at["b", "interoperability_applicable"] == 0
    assert card["complete"].all()
    status = parts.set_index(["model", "submeasure"])["status"]
    assert status["b", "safetensors"] == "not applicable: no pretrained weights to store"
    assert status["b", "transfer_gain"].startswith("not applicable: no pretraining")
    assert status["b", "flops"].startswith("not applicable")
    assert status["a", "latency_b1"] == "measured"
    assert parts.set_index(["model", "submeasure"]).at[("a", "deploy_memory"), "raw"] == 120.0
    assert status["b", "deploy_memory"].startswith("not applicable: not a torch model")
    assert set(parts["source"].dropna()) >= {"runtime", "export", "learning_curve"}


def test_a_missing_measurement_makes_the_dimension_incomplete_never_a_free_score():
    tables = hand_checked_tables()
    tables["runtime"] = tables["runtime"][tables["runtime"]["model"] == "a"]
    card, parts = scorecard(tables, models=FACTS)
    b = card.set_index("model").loc["b"]
    # latency and memory apply to the baseline but were not measured: accessibility is computed
    # from data efficiency alone and says so; the overall is marked incomplete
    assert b["accessibility_measured"] == 1 and b["accessibility_applicable"] == 3
    assert b["accessibility"] == pytest.approx(100 * 0.5 / 0.6)
    assert score_cell(b, "accessibility") == "83 (1 of 3 measured)"
    assert score_cell(b, "interoperability") == "n/a"
    assert not b["complete"] and score_cell(b, "overall").endswith("(incomplete)")
    status = parts.set_index(["model", "submeasure"])["status"]
    assert status["b", "latency_b1"].startswith("not measured")


def test_scratch_only_models_are_not_asked_about_weights_or_transfer():
    tables = hand_checked_tables()
    tables["learning_curve"] = tables["learning_curve"].query("init == 'scratch'")
    tables["results"] = tables["learning_curve"][["model", "task", "init"]]
    _, parts = scorecard(tables, models=FACTS)
    status = parts.set_index(["model", "submeasure"])["status"]
    assert status["a", "safetensors"].startswith("not applicable")
    assert status["a", "transfer_gain"].startswith("not applicable")
    assert status["a", "standard_api"] == "measured"  # a torch model still loads through an API


def predictions(correct_by_system, n_test=120):
    rows = []
    for (model, init), correct in correct_by_system.items():
        for seed in (0, 1):
            rows += [
                {"model": model, "task": "t", "init": init, "method": "full", "seed": seed}
                | {"n_train": 50, "row_id": i, "correct": bool(correct[i])}
                for i in range(n_test)
            ]
    return pd.DataFrame(rows)


def decision_tables(protocol=None):
    rng = np.random.default_rng(0)
    base = rng.random(120) < 0.8
    near = base.copy()
    near[np.flatnonzero(base)[:3]] = False  # 3 examples fewer: tied with the best
    far = rng.random(120) < 0.3  # separated
    preds = predictions({("a", "pretrained"): base, ("b", "scratch"): near, ("c", "scratch"): far})
    pairwise, ranks = comparisons(preds, n_boot=500, alpha=0.05)
    tables = hand_checked_tables()
    tables["runtime"] = pd.concat(
        [
            tables["runtime"],
            tables["runtime"].iloc[:1].assign(model="c", latency_p50_ms=0.5, peak_rss_mb=50.0),
        ]
    )
    card, parts = scorecard(tables, models=FACTS)
    tables |= {"pairwise": pairwise, "ranks": ranks, "scorecard_parts": parts}
    tables["protocol_check"] = protocol if protocol is not None else pd.DataFrame()
    return tables, card, parts


def test_a_tie_is_named_with_its_p_value_and_broken_by_the_stated_cost():
    tables, card, parts = decision_tables()
    table = decision_table(tables, "latency").set_index("system")
    a, b, c = "a (pretrained, full)", "b (scratch, full)", "c (scratch, full)"
    assert table.at[a, "best"] and table.at[a, "tied"] and table.at[b, "tied"]
    assert not table.at[c, "tied"]  # c is cheapest of all but separated: never picked
    assert table.at[b, "chosen"] and not table.at[a, "chosen"] and not table.at[c, "chosen"]
    text = recommendation(card, parts, table.reset_index())
    p = table.at[b, "p_vs_best"]
    assert f"{b} (0.7" in text and f"p = {p:.2g}" in text and "tied on accuracy" in text
    assert "10× less than a (pretrained, full) (10 ms per example)" in text
    assert f"build on {b}" in text


def test_a_noisy_latency_is_named_as_such_in_the_decision_sentence():
    tables, _, _ = decision_tables()
    runtime = tables["runtime"].assign(latency_cv=0.05, noisy=False)
    runtime.loc[runtime["model"] == "a", ["latency_cv", "noisy"]] = [0.6, True]
    tables["runtime"] = runtime
    card, parts = scorecard(tables, models=FACTS)
    tables["scorecard_parts"] = parts
    table = decision_table(tables, "latency")
    by = table.set_index("system")
    assert by.at["a (pretrained, full)", "cost_noisy"]
    assert not by.at["b (scratch, full)", "cost_noisy"]
    text = recommendation(card, parts, table)
    assert "(10 ms per example, a noisy measurement)" in text


def test_equal_costs_are_broken_by_the_storage_per_extra_task():
    # two methods of one model: one network at inference, so the same latency
    tables, _, _ = decision_tables()
    runtime = tables["runtime"]
    runtime.loc[runtime["model"] == "b", "latency_p50_ms"] = 10.0
    _, parts = scorecard(tables, models=FACTS)
    tables["scorecard_parts"] = parts
    table = decision_table(tables, "latency")
    by = table.set_index("system")
    a, b = "a (pretrained, full)", "b (scratch, full)"
    assert by.at[a, "cost"] == by.at[b, "cost"]
    assert by.at[b, "storage_mb"] < by.at[a, "storage_mb"]  # 1e3 against 1e6 parameters
    assert by.at[b, "chosen"] and not by.at[a, "chosen"]
    text = decision.sentence(table)
    assert f"{b} and {a} cost the same (10 ms per example)" in text
    assert f"of them {b} stores the least per extra task (0.004 MB against 4 MB)" in text


def test_the_constraint_changes_the_pick_and_an_unmeasured_cost_is_never_picked():
    tables, _, _ = decision_tables()
    by_time = decision_table(tables, "finetune_cost").set_index("system")
    assert by_time.at["b (scratch, full)", "chosen"]  # 2 s against 100 s
    tables["runtime"] = tables["runtime"][tables["runtime"]["model"] == "a"]
    _, parts = scorecard(tables, models=FACTS)
    tables["scorecard_parts"] = parts
    table = decision_table(tables, "latency")
    chosen = table[table["chosen"]]
    assert list(chosen["system"]) == ["a (pretrained, full)"]
    text = decision.sentence(table)
    assert "Not measured, so not picked: b (scratch, full)" in text


def test_a_separated_winner_and_a_protocol_flag_are_said():
    protocol = pd.DataFrame(
        [
            {
                "model": "b",
                "task": "t",
                "init": "scratch",
                "method": "full",
                "below_frozen": True,
                "largest": True,
            }
        ]
    )
    tables, _, _ = decision_tables(protocol)
    tables["ranks"] = tables["ranks"][tables["ranks"]["model"] != "b"]
    table = decision_table(tables, "latency")
    assert list(table[table["chosen"]]["system"]) == ["a (pretrained, full)"]
    text = decision.sentence(table)
    assert text.startswith("On t, build on a (pretrained, full)") and "Holm-adjusted" in text
    tables, _, _ = decision_tables(protocol)
    text = decision.sentence(decision_table(tables, "latency"))
    assert "protocol check flagged: b (scratch, full)" in text


def test_one_seed_shows_no_spread(tmp_path):
    assert spread(0.75, 0.0, 1) == "0.750 (1 seed: no spread)"
    assert spread(0.75, 0.02, 3) == "0.750 ± 0.020"
    curve = hand_checked_tables()["learning_curve"]
    results = curve.rename(columns={"mean": "value"}).assign(seed=0, fraction=1.0)
    html = render_report(
        {"results": results, "learning_curve": learning_curves(results)},
        tmp_path / "r.html",
        title="x",
        config_hash="abc",
    ).read_text()
    assert "1 seed: no spread" in html and "± 0.000" not in html


def test_a_noisy_latency_is_flagged_with_the_machine_load():
    from ptmeval.verdicts import accessibility

    tables = hand_checked_tables()
    runtime = tables["runtime"].assign(
        latency_cv=[0.52, 0.05], attempts=[3, 1], noisy=[True, False], load_1min=[1.9, 0.1]
    )
    tables["runtime"] = runtime.assign(cpu_count=2, latency_p90_ms=1.0, throughput_per_s=1.0)
    _, parts = scorecard(tables, models=FACTS)
    status = parts.set_index(["model", "submeasure"])["status"]
    expected = "measured; noisy: CV 0.52 after 3 attempts, machine load 1.9 on 2 CPUs"
    assert status["a", "latency_b1"] == expected and status["b", "latency_b1"] == "measured"
    verdict = accessibility(tables["runtime"], []).set_index("model")["verdict"]
    assert "noisy" in verdict["a"] and "noisy" not in verdict["b"]
