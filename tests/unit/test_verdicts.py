import pandas as pd
import pytest

from ptmeval.aggregate import task_similarity, transfer_prediction
from ptmeval.verdicts import accessibility, compatibility, failed_runs, undertrained_runs

HARDWARE = [
    {"name": "small, 1 GB", "device": "cpu", "memory_gb": 1},
    {"name": "laptop, 4 GB", "device": "cpu", "memory_gb": 4},
]


def runtime_rows():
    base = {
        "model": "m",
        "threads": 2,
        "device_kind": "cpu",
        "status": "ok",
        "reason": "",
        "latency_p50_ms": 10.0,
        "throughput_per_s": 100.0,
        "gpu_peak_mb": None,
    }
    return pd.DataFrame(
        [
            {**base, "mode": "inference", "batch_size": 1, "peak_rss_mb": 700.0},
            {**base, "mode": "inference", "batch_size": 32, "peak_rss_mb": 900.0},
            {**base, "mode": "train_step", "batch_size": 16, "peak_rss_mb": 2500.0},
            {
                **base,
                "mode": "train_step",
                "batch_size": 64,
                "status": "failed",
                "reason": "killed by signal 9 (out of memory?)",
                "peak_rss_mb": None,
            },
        ]
    )


def test_smallest_hardware_that_fits():
    verdict = accessibility(runtime_rows(), HARDWARE).iloc[0]
    assert verdict["cpu_inference_hardware"] == "small, 1 GB"
    assert verdict["cpu_train_step_hardware"] == "laptop, 4 GB"
    assert verdict["cpu_train_step_batch"] == 16
    assert "infers on CPU at batch 1 within 'small, 1 GB' (peak 0.68 GB)" in verdict["verdict"]
    assert "train_step at batch 64 failed: killed by signal 9" in verdict["verdict"]


def test_compatibility_cells_say_why():
    results = pd.DataFrame({"model": ["m"]})
    export = pd.DataFrame(
        [
            {
                "model": "m",
                "torch_export": "failed: X",
                "onnx_export": "failed: Y",
                "onnxruntime": "not run (no ONNX model)",
            }
        ]
    )
    table = compatibility({"m": "hf-text", "t": "tfidf-logreg"}, results, export).set_index("model")
    assert table.loc["m", "eager_pytorch"] == "ok"
    assert table.loc["m", "torch_export"] == "failed: X"
    assert table.loc["m", "onnx_onnxruntime"] == "failed: Y"
    assert table.loc["t", "torch_export"] == "not applicable"
    assert "not run" in table.loc["m", "deepspeed_finetune"]


def test_transfer_prediction_per_task_and_pooled():
    models = ["a", "b", "c", "d"]
    transfer = pd.DataFrame(
        {
            "model": models * 2,
            "task": ["t1"] * 4 + ["t2"] * 4,
            "logme": [1, 2, 3, 4] * 2,
            "h_score": [4, 3, 2, 1] * 2,
        }
    )
    results = pd.DataFrame(
        {
            "model": models * 2,
            "task": ["t1"] * 4 + ["t2"] * 4,
            "init": "pretrained",
            "metric": "accuracy",
            "n_train": 100,
            "value": [0.1, 0.2, 0.3, 0.4] * 2,
        }
    )
    table = transfer_prediction(transfer, pd.DataFrame(), results, "accuracy", n_boot=200)
    logme = table[table["predictor"] == "logme"].set_index("task")
    assert logme.loc["t1", "tau"] == pytest.approx(1.0)
    assert logme.loc["pooled (ranks within task)", "tau"] == pytest.approx(1.0)
    h = table[(table["predictor"] == "h_score") & (table["task"] == "t1")]["tau"].iloc[0]
    assert h == pytest.approx(-1.0)
    assert set(table["kind"]) == {"transferability"}


def test_task_similarity_is_zero_for_identical_distributions():
    transfer = pd.DataFrame(
        {
            "model": ["m", "m", "m"],
            "task": ["a", "b", "c"],
            "feature_mean": [[0.0, 0.0], [0.0, 0.0], [3.0, 4.0]],
            "feature_var": [[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]],
        }
    )
    sim = task_similarity(transfer).set_index(["task_a", "task_b"])["frechet_distance"]
    assert sim[("a", "b")] == 0.0 and sim[("a", "c")] == 25.0


def test_similarity_vs_gain_needs_three_tasks_and_ranks_them():
    from ptmeval.aggregate import similarity_vs_gain

    sim = pd.DataFrame(
        {
            "model": "m",
            "task_a": ["a", "a", "b"],
            "task_b": ["b", "c", "c"],
            "frechet_distance": [1.0, 2.0, 5.0],  # mean per task: a 1.5, b 3, c 3.5
        }
    )
    gain = pd.DataFrame(
        {"model": "m", "task": ["a", "b", "c"], "n_train": 10, "gain": [0.3, 0.2, 0.1]}
    )
    row = similarity_vs_gain(sim, gain).iloc[0]
    assert row["tasks"] == 3 and row["spearman_rho"] == pytest.approx(-1.0)
    two = similarity_vs_gain(sim[sim["task_b"] == "b"], gain[gain["task"] != "c"]).iloc[0]
    assert pd.isna(two["spearman_rho"]) and "needs 3 tasks" in two["note"]


def test_prediction_cost_counts_shared_features_on_the_fine_tune_side():
    from ptmeval.aggregate import prediction_cost

    transfer = pd.DataFrame(
        {
            "model": ["full", "probe"],
            "task": "t",
            "scores_wall_s": [1.0, 1.0],
            "features_wall_s": [3.0, 30.0],
        }
    )
    history = pd.DataFrame(
        {
            "model": ["full", "full", "probe"],
            "task": "t",
            "init": "pretrained",
            "method": ["full", "full", "linear_probe"],
            "fraction": [0.5, 1.0, 1.0],
            "seed": 0,
            "epoch": 1,
            "wall_s": [50.0, 150.0, 0.5],
        }
    )
    cost = prediction_cost(transfer, history).set_index("model")
    assert cost.loc["full", "predict_wall_s"] == 4.0 and cost.loc["full", "finetune_wall_s"] == 200
    assert cost.loc["full", "cost_ratio"] == pytest.approx(0.02)
    # the probe's fine-tune needed the same 30 s of features: only the scores are extra
    assert cost.loc["probe", "predict_wall_s"] == 1.0
    assert cost.loc["probe", "finetune_wall_s"] == 30.5
    assert bool(cost.loc["probe", "shared_features"]) and not cost.loc["full", "shared_features"]


def test_failed_runs_name_collapsed_and_at_chance_configurations():
    base = {"task": "bbc", "method": "full", "n_jobs": 5, "chance": 0.225}
    difficulty = pd.DataFrame(
        [
            {
                **base,
                "model": "minilm",
                "init": "scratch",
                "n_collapsed": 5,
                "n_at_chance": 5,
                "test_score_mean": 0.225,
            },
            {
                **base,
                "model": "minilm",
                "init": "pretrained",
                "n_collapsed": 0,
                "n_at_chance": 0,
                "test_score_mean": 0.95,
            },
        ]
    )
    (sentence,) = failed_runs(difficulty)
    assert sentence.startswith("minilm (scratch, full) on bbc: 5 of 5 runs collapsed")
    assert "5 of 5 runs scored at or below chance" in sentence and "chance 0.225" in sentence
    assert failed_runs(pd.DataFrame()) == []


def test_undertrained_runs_name_the_runs_still_improving_at_their_budget():
    difficulty = pd.DataFrame(
        [
            {
                "model": "minilm",
                "init": "pretrained",
                "method": "full",
                "task": "r8",
                "n_jobs": 8,
                "n_still_improving": 3,
            },
            {
                "model": "minilm",
                "init": "scratch",
                "method": "full",
                "task": "r8",
                "n_jobs": 8,
                "n_still_improving": 0,
            },
        ]
    )
    (sentence,) = undertrained_runs(difficulty)
    assert sentence.startswith("minilm (pretrained, full) on r8: 3 of 8 runs used their whole")
    assert "likely understate the model" in sentence
    assert undertrained_runs(pd.DataFrame()) == []
