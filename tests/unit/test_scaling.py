import numpy as np
import pandas as pd
import pytest

from ptmeval.scaling import (
    FIT_COLUMNS,
    PROCESS_COLUMNS,
    chance_scores,
    curve_band,
    data_needed,
    effective_data_transferred,
    finetune_process,
    fit_power_law,
    learning_curve_fits,
    prediction_collapse,
    training_difficulty,
    transfer_gain,
)

A, B, C = 0.1, 2.0, 0.5  # err(n) = 0.1 + 2 n^-0.5: score 0.72 at n=50, 0.85 at n=1600
SIZES = [50, 100, 200, 400, 800, 1600]
SEEDS = 3


def true_score(n):
    return 1.0 - (A + B * np.asarray(n, dtype=float) ** -C)


def results_table(scores, init="scratch", sizes=SIZES, method="full", metric="accuracy"):
    """Tidy results from per-size arrays of per-seed scores."""
    rows = []
    for n, values in zip(sizes, scores, strict=True):
        for seed, value in enumerate(values):
            rows.append(
                {
                    "model": "m",
                    "task": "t",
                    "init": init,
                    "method": method,
                    "fraction": n / max(sizes),
                    "seed": seed,
                    "n_train": n,
                    "metric": metric,
                    "value": float(value),
                }
            )
    return pd.DataFrame(rows)


def power_law_results(noise=0.003, seed=0, shift=0.0, init="scratch", sizes=SIZES):
    rng = np.random.default_rng(seed)
    scores = [true_score(n) + shift + rng.normal(0.0, noise, SEEDS) for n in sizes]
    return results_table(scores, init=init, sizes=sizes)


def test_fit_power_law_recovers_parameters_without_noise():
    n = np.array(SIZES, dtype=float)
    fit = fit_power_law(n, 1.0 - true_score(n))
    assert fit.converged and not fit.at_bound
    assert fit.n_points == 6
    assert (fit.a, fit.b, fit.c) == pytest.approx((A, B, C), rel=1e-4)
    assert fit.rss < 1e-12
    assert fit.predict(10_000)[0] == pytest.approx(A + B / 100, rel=1e-4)
    assert fit.invert(A + B / 100)[0] == pytest.approx(10_000, rel=1e-3)
    assert np.isnan(fit.invert(A / 2)[0])  # below the asymptote: never reached


def test_fit_power_law_too_few_points_and_huber():
    fit = fit_power_law([10, 20], [0.5, 0.4])
    assert not fit.converged and np.isnan(fit.a) and fit.message == "too few points"
    n = np.array(SIZES, dtype=float)
    huber = fit_power_law(n, 1.0 - true_score(n), loss="huber")
    assert huber.converged and huber.c == pytest.approx(C, rel=1e-3)


def test_fit_power_law_flags_flat_data_at_bound():
    fit = fit_power_law(SIZES, [0.3] * 6)
    assert fit.at_bound  # no decay: b = 0 or c at its lower bound, either way c is undetermined
    assert {"b=0", "c=min"} & set(fit.bounds_hit)
    assert fit.predict(10_000)[0] == pytest.approx(0.3, abs=1e-3)


def test_learning_curve_fit_recovers_truth_with_small_noise():
    # One fixed noise draw. With 3 seeds the 95 % bootstrap intervals cover the truth in roughly
    # 75-80 % of draws (module docstring), so this checks one draw where they do, not coverage.
    fits = learning_curve_fits(power_law_results(seed=1), n_boot=60, seed=1)
    assert list(fits.columns) == FIT_COLUMNS
    row = fits.iloc[0]
    assert row["converged"] and row["trustworthy"] and row["reason"] == "ok"
    assert row["n_sizes"] == 6 and row["min_seeds"] == 3
    assert row["a"] == pytest.approx(A, abs=0.02)
    assert row["c"] == pytest.approx(C, abs=0.1)
    assert row["b"] == pytest.approx(B, rel=0.25)
    # extrapolation: fitted without n=1600, predicted at n=1600
    assert abs(row["extrap_error"]) < 0.01
    assert row["extrap_pred"] == pytest.approx(true_score(1600), abs=0.01)
    # bootstrap intervals contain the truth
    assert row["n_boot_ok"] >= 55
    assert row["a_lo"] <= A <= row["a_hi"]
    assert row["c_lo"] <= C <= row["c_hi"]
    assert row["score_asymptote_lo"] <= 1 - A <= row["score_asymptote_hi"]
    assert row["score_at_max_lo"] <= true_score(1600) <= row["score_at_max_hi"]


def test_bootstrap_is_reproducible_and_curve_band_matches():
    data = power_law_results()
    fits = learning_curve_fits(data, n_boot=30, seed=3)
    again = learning_curve_fits(data, n_boot=30, seed=3)
    pd.testing.assert_frame_equal(fits, again)
    band = curve_band(data, fits, grid=[100, 1600, 6400])
    assert list(band["extrapolated"]) == [False, False, True]
    assert (band["score_lo"] <= band["score"]).all() and (band["score"] <= band["score_hi"]).all()
    at_max = band[band["n"] == 1600].iloc[0]
    assert at_max["score"] == pytest.approx(fits["score_at_max"].iloc[0])
    assert at_max["score_lo"] == pytest.approx(fits["score_at_max_lo"].iloc[0])
    default = curve_band(data, fits, n_grid=10)
    assert len(default) == 10 and default["n"].max() == pytest.approx(4 * 1600)


def test_non_monotone_noisy_curve_is_not_trustworthy():
    means = [0.60, 0.72, 0.55, 0.70, 0.50, 0.62]
    scores = [m + np.array([-0.005, 0.0, 0.005]) for m in means]
    row = learning_curve_fits(results_table(scores), n_boot=10).iloc[0]
    assert not row["trustworthy"] and not row["monotone"]
    assert "non-monotone beyond noise" in row["reason"]


def test_flat_curve_is_not_trustworthy():
    scores = [np.array([0.70, 0.71, 0.69]) for _ in SIZES]
    row = learning_curve_fits(results_table(scores), n_boot=10).iloc[0]
    assert not row["trustworthy"]
    assert "no decay" in row["reason"] or "c at bound" in row["reason"]


def test_three_sizes_are_too_few_points():
    data = power_law_results(sizes=[100, 400, 1600])
    row = learning_curve_fits(data, n_boot=10).iloc[0]
    assert not row["trustworthy"]
    assert "too few points" in row["reason"]
    assert np.isnan(row["extrap_error"])
    needed = data_needed(data, n_boot=10)
    assert not needed["trustworthy"].any()


def test_a_target_already_beaten_in_the_data_is_reachable_without_a_fit():
    sizes = [10, 40]
    data = results_table([[0.5, 0.52], [0.9, 0.88]], sizes=sizes)
    needed = data_needed(data, target=[0.7, 0.95], n_boot=10).set_index("target_score")
    # two sizes: no usable fit, but 0.7 was beaten at 40 examples (and 90% of the best too)
    assert np.isnan(needed.loc[0.7, "n_needed"]) and needed.loc[0.7, "observed_at"] == 40
    assert needed.loc[0.7, "reachable"]
    relative = needed[needed["kind"] == "relative"]
    assert relative["reachable"].all() and (relative["observed_at"] == 40).all()
    assert not needed.loc[0.95, "reachable"] and np.isnan(needed.loc[0.95, "observed_at"])


def test_single_seed_gives_no_interval():
    scores = [true_score(n) + np.zeros(1) for n in SIZES]
    row = learning_curve_fits(results_table(scores), n_boot=10).iloc[0]
    assert row["n_boot_ok"] == 0 and np.isnan(row["c_lo"]) and row["converged"]


def test_data_needed_matches_analytical_inverse():
    data = power_law_results(noise=0.0)
    table = data_needed(data, levels=(0.9, 0.95), target=[0.88, 0.95], n_boot=10)
    best = true_score(1600)  # 0.85

    def inverse(score):
        return (B / ((1 - score) - A)) ** (1 / C)

    rel = table[table["kind"] == "relative"].set_index("level")
    for level in (0.9, 0.95):
        assert rel.loc[level, "target_score"] == pytest.approx(level * best)
        assert rel.loc[level, "n_needed"] == pytest.approx(inverse(level * best), rel=1e-3)
        assert rel.loc[level, "reachable"] and not rel.loc[level, "extrapolated"]
        assert rel.loc[level, "n_needed_lo"] <= rel.loc[level, "n_needed"] * (1 + 1e-6)
    absolute = table[table["kind"] == "absolute"].set_index("target_score")
    assert absolute.loc[0.88, "n_needed"] == pytest.approx(10_000, rel=1e-3)
    assert absolute.loc[0.88, "extrapolated"]
    # 0.95 is above the asymptotic score 0.9: NaN, not infinity
    assert not absolute.loc[0.95, "reachable"]
    assert np.isnan(absolute.loc[0.95, "n_needed"]) and np.isnan(absolute.loc[0.95, "n_needed_hi"])


def test_transfer_gain_of_shifted_curve():
    scratch = power_law_results(seed=4)
    pretrained = scratch.assign(init="pretrained", value=scratch["value"] + 0.05)
    gain = transfer_gain(pd.concat([scratch, pretrained]), n_boot=300, seed=0)
    assert len(gain) == len(SIZES)
    assert gain["gain"].to_numpy() == pytest.approx(0.05)
    assert (gain["gain_lo"] <= 0.05).all() and (gain["gain_hi"] >= 0.05).all()
    assert gain["ci_excludes_zero"].all()
    assert (gain["n_seeds_pretrained"] == SEEDS).all()


def test_transfer_gain_needs_both_inits():
    only = power_law_results()
    assert transfer_gain(only, n_boot=10).empty


def test_effective_data_transferred_matches_analytical_value():
    scratch = power_law_results(noise=0.0)
    sizes = [50, 100, 200, 400]
    # pretrained at n scores what scratch scores at 4n: worth 3n extra examples
    pre = results_table(
        [true_score(4 * n) + np.zeros(SEEDS) for n in sizes], init="pretrained", sizes=sizes
    )
    data = pd.concat([scratch, pre], ignore_index=True)
    fits = learning_curve_fits(data, n_boot=10)
    table = effective_data_transferred(data, fits).set_index("n_train")
    for n in sizes:
        assert table.loc[n, "scratch_equivalent_n"] == pytest.approx(4 * n, rel=1e-3)
        assert table.loc[n, "effective_data"] == pytest.approx(3 * n, rel=1e-3)
        assert table.loc[n, "data_multiplier"] == pytest.approx(4, rel=1e-3)
        assert table.loc[n, "extrapolated"] == (4 * n > 1600)
    assert table["reachable"].all() and table["trustworthy"].all()


def test_effective_data_unreachable_is_nan():
    scratch = power_law_results(noise=0.0)
    pre = results_table([np.full(SEEDS, 0.95)], init="pretrained", sizes=[100])
    data = pd.concat([scratch, pre], ignore_index=True)
    table = effective_data_transferred(data, learning_curve_fits(data, n_boot=0))
    row = table.iloc[0]
    assert not row["reachable"] and np.isnan(row["effective_data"])


def history_rows(seed, val, loss, diverged=None, per_epoch_s=10.0, per_epoch_n=100):
    rows = []
    for e, (v, lo) in enumerate(zip(val, loss, strict=True), start=1):
        rows.append(
            {
                "model": "m",
                "task": "t",
                "init": "pretrained",
                "method": "full",
                "fraction": 1.0,
                "seed": seed,
                "n_train": 100,
                "epoch": e,
                "train_loss": lo,
                "val_accuracy": v,
                "val_macro_f1": v,
                "epoch_wall_s": per_epoch_s,
                "wall_s": per_epoch_s * e,
                "samples_seen": per_epoch_n * e,
                "trainable_params": 10,
                "diverged": bool(diverged and e == len(val)),
            }
        )
    return rows


def test_finetune_process_time_to_level_and_divergence():
    history = pd.DataFrame(
        history_rows(0, [0.5, 0.8, 0.88, 0.9], [1.0, 0.6, 0.4, 0.3])  # 90% of 0.9 at epoch 3
        + history_rows(1, [0.5, 0.3], [1.0, float("nan")])  # NaN loss, flag not set
        + history_rows(2, [0.3, 0.5, 0.6], [1.2, 1.0, 0.9])  # healthy history, chance test
        + history_rows(3, [0.4, 0.2], [1.0, 5.0], diverged=True)  # diverged flag
    )
    test = results_table(
        [np.array([0.88, 0.40, 0.25, 0.60])], init="pretrained", sizes=[100]
    ).assign(fraction=1.0)
    jobs = finetune_process(history, test, chance={"t": 0.25})
    assert list(jobs.columns) == PROCESS_COLUMNS
    jobs = jobs.set_index("seed")
    assert jobs.loc[0, "epoch_to_level"] == 3
    assert jobs.loc[0, "wall_s_to_level"] == pytest.approx(30.0)
    assert jobs.loc[0, "samples_to_level"] == pytest.approx(300)
    assert jobs.loc[0, "total_wall_s"] == pytest.approx(40.0)
    assert jobs.loc[0, "level_val"] == pytest.approx(0.81)
    assert not jobs.loc[0, "diverged"] and jobs.loc[0, "diverged_reason"] == ""
    assert jobs.loc[1, "diverged"] and jobs.loc[1, "nonfinite_loss"]
    assert "non-finite loss" in jobs.loc[1, "diverged_reason"]
    assert jobs.loc[2, "diverged"] and jobs.loc[2, "at_chance"]
    assert jobs.loc[2, "chance"] == pytest.approx(0.25)
    assert jobs.loc[3, "diverged"] and jobs.loc[3, "diverged_flag"]

    difficulty = training_difficulty(jobs.reset_index())
    row = difficulty.iloc[0]
    assert row["n_jobs"] == 4 and row["n_diverged"] == 3
    assert row["diverged_rate"] == pytest.approx(0.75)
    assert row["seed_std"] == pytest.approx(np.std([0.88, 0.40, 0.25, 0.60], ddof=1))


def test_finetune_process_without_classes_skips_chance():
    history = pd.DataFrame(history_rows(0, [0.5, 0.9], [1.0, 0.5]))
    test = results_table([np.array([0.1])], init="pretrained", sizes=[100]).assign(fraction=1.0)
    jobs = finetune_process(history, test)
    assert np.isnan(jobs["chance"].iloc[0]) and not jobs["diverged"].iloc[0]


def test_a_run_still_rising_when_its_budget_ran_out_is_marked_still_improving():
    def ended(seed, val, reason):
        rows = history_rows(seed, val, [1.0] * len(val))
        return [{**row, "stop_reason": reason} for row in rows]

    history = pd.DataFrame(
        ended(0, [0.5, 0.7, 0.8], "budget")  # its last point is its best: under-trained
        + ended(1, [0.5, 0.8, 0.8], "budget")  # levelled off: a tie is not a rise
        + ended(2, [0.5, 0.8, 0.7], "budget")  # past its best
        + ended(3, [0.5, 0.6, 0.9], "early_stopping")  # stopped by patience, not the budget
    )
    test = results_table([np.array([0.8, 0.8, 0.8, 0.8])], init="pretrained", sizes=[100]).assign(
        fraction=1.0
    )
    jobs = finetune_process(history, test, chance={"t": 0.25}).set_index("seed")
    assert jobs["still_improving"].tolist() == [True, False, False, False]
    assert not jobs["diverged"].any()
    row = training_difficulty(jobs.reset_index()).iloc[0]
    assert row["n_still_improving"] == 1 and row["still_improving_rate"] == pytest.approx(0.25)

    # with the loop's own best step (ties broken by the validation loss), that decides
    tied = pd.DataFrame(ended(0, [0.5, 0.8, 0.8], "budget")).assign(step=[20, 40, 60])
    assert finetune_process(tied.assign(best_step=60), test.head(1))["still_improving"].all()
    assert not finetune_process(tied.assign(best_step=40), test.head(1))["still_improving"].any()

    # a history without stop reasons (older runs) marks nothing
    old = finetune_process(pd.DataFrame(history_rows(0, [0.5, 0.9], [1.0, 0.5])), test.head(1))
    assert not old["still_improving"].any()


def test_learning_curves_reject_ece():
    with pytest.raises(ValueError, match="score metric"):
        learning_curve_fits(power_law_results(), metric="ece", n_boot=0)


# An imbalanced binary test set: 80 examples of class 0, 20 of class 1.
IMBALANCED = np.array([0] * 80 + [1] * 20)


def predictions_table(preds, seed=0, labels=IMBALANCED):
    """Per-example predictions of one job (the keys of `history_rows`)."""
    return pd.DataFrame(
        {
            "model": "m",
            "task": "t",
            "init": "pretrained",
            "method": "full",
            "fraction": 1.0,
            "seed": seed,
            "n_train": 100,
            "row_id": np.arange(len(labels)),
            "label": labels,
            "pred": preds,
        }
    ).assign(correct=lambda d: d["pred"] == d["label"])


def test_chance_is_the_majority_rate_of_the_test_split():
    summary = pd.DataFrame(
        {
            "task": "t",
            "split": ["train", "train", "test", "test"],
            "label": [0, 1, 0, 1],
            "count": [10, 90, 80, 20],
        }
    )
    assert chance_scores(summary) == {"t": pytest.approx(0.8)}  # not 1/k = 0.5
    assert chance_scores(summary, "macro_f1")["t"] == pytest.approx(2 * 0.8 / (1.8 * 2))
    # from predictions: each test row counted once, whatever the number of jobs
    preds = pd.concat([predictions_table(IMBALANCED), predictions_table(0 * IMBALANCED, 1)])
    assert chance_scores(preds) == {"t": pytest.approx(0.8)}


def test_constant_predictor_on_imbalanced_set_is_at_chance_and_collapsed():
    rng = np.random.default_rng(0)
    good = IMBALANCED.copy()
    good[rng.choice(100, 5, replace=False)] ^= 1  # 95 % right, both classes predicted
    preds = pd.concat([predictions_table(np.zeros(100, int), 0), predictions_table(good, 1)])
    history = pd.DataFrame(
        history_rows(0, [0.8, 0.8], [0.6, 0.5]) + history_rows(1, [0.8, 0.95], [0.6, 0.2])
    )
    test = results_table([np.array([0.80, 0.95])], init="pretrained", sizes=[100])
    test = test.assign(fraction=1.0)
    chance = chance_scores(preds)
    jobs = finetune_process(history, test, chance=chance, predictions=preds).set_index("seed")
    constant, fine = jobs.loc[0], jobs.loc[1]
    assert constant["chance"] == pytest.approx(0.8)
    assert constant["at_chance"] and constant["collapsed"] and constant["diverged"]
    assert constant["top_pred_share"] == pytest.approx(1.0)
    assert "collapsed" in constant["diverged_reason"]
    assert not fine["at_chance"] and not fine["collapsed"] and not fine["diverged"]

    row = training_difficulty(jobs.reset_index()).iloc[0]
    assert row["n_collapsed"] == 1 and row["collapsed_rate"] == pytest.approx(0.5)
    assert row["n_at_chance"] == 1 and bool(row["collapsed"])
    assert row["top_pred_share"] == pytest.approx(1.0) and row["chance"] == pytest.approx(0.8)


def test_collapse_needs_predictions_more_concentrated_than_the_labels():
    labels = np.array([0] * 97 + [1] * 3)
    perfect = predictions_table(labels, 0, labels=labels)  # 97 % one class, but right
    near_constant = predictions_table(np.r_[np.zeros(96, int), 1, 1, 1, 0], 1)  # 96 % class 0
    table = prediction_collapse(pd.concat([perfect, near_constant])).set_index("seed")
    assert not table.loc[0, "collapsed"] and table.loc[0, "top_pred_share"] == pytest.approx(0.97)
    assert table.loc[1, "collapsed"] and table.loc[1, "top_pred_share"] == pytest.approx(0.97)


def flat_results(score, sizes=SIZES):
    return results_table([np.full(SEEDS, score) for _ in sizes], sizes=sizes)


def test_curve_at_chance_is_never_reached_not_zero_examples():
    flat = flat_results(0.8)
    before = data_needed(flat, n_boot=0)
    assert (before["n_needed"] < 1).all()  # what a flat curve gives without chance: 0
    table = data_needed(flat, n_boot=20, chance={"t": 0.8})
    assert table["never_reached"].all() and not table["reachable"].any()
    assert table[["n_needed", "n_needed_lo", "n_needed_hi"]].isna().all().all()
    assert "chance" in table["never_reached_reason"].iloc[0]


def test_curve_of_collapsed_runs_is_never_reached_and_a_real_curve_is_not():
    slightly_above = flat_results(0.81)
    process = slightly_above.drop_duplicates(["n_train", "seed"]).assign(collapsed=True)
    table = data_needed(slightly_above, n_boot=0, chance=0.8, process=process)
    assert table["never_reached"].all() and table["n_needed"].isna().all()
    assert "collapsed" in table["never_reached_reason"].iloc[0]

    real = power_law_results(noise=0.0)  # 0.72 -> 0.85, chance 0.5
    table = data_needed(real, n_boot=0, chance=0.5, process=process.assign(collapsed=False))
    assert not table["never_reached"].any() and table["reachable"].all()
    assert (table["never_reached_reason"] == "").all()
