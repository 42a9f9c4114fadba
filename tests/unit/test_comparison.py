import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar

from ptmeval.comparison import (
    PAIRWISE_COLUMNS,
    RANK_COLUMNS,
    cohens_h,
    combine_seed_pvalues,
    five_by_two_cv_f_test,
    mcnemar,
    paired_bootstrap,
    pairwise_comparisons,
    rank_intervals,
)

N = 300


def correctness(accuracy, n=N, seed=0):
    """Exactly round(accuracy * n) correct examples, at random positions."""
    rng = np.random.default_rng(seed)
    out = np.zeros(n, dtype=bool)
    out[rng.choice(n, size=round(accuracy * n), replace=False)] = True
    return out


def predictions(systems, task="t", n_train=100, row_ids=None):
    """A predictions table: systems = {(model, init, method): {seed: correct vector}}."""
    frames = []
    for (model, init, method), seeds in systems.items():
        for seed, correct in seeds.items():
            rows = np.arange(len(correct)) if row_ids is None else row_ids
            frames.append(
                pd.DataFrame(
                    {
                        "model": model,
                        "task": task,
                        "fraction": 1.0,
                        "seed": seed,
                        "init": init,
                        "method": method,
                        "n_train": n_train,
                        "row_id": rows,
                        "label": 0,
                        "pred": np.where(correct, 0, 1),
                        "correct": correct,
                        "prob_label": np.where(correct, 0.9, 0.1),
                        "probs": None,
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def three_systems():
    """good (90%), and two equally mediocre systems (60%), 3 seeds each."""
    return predictions(
        {
            ("good", "pretrained", "full"): {s: correctness(0.9, seed=s) for s in range(3)},
            ("mid", "pretrained", "full"): {s: correctness(0.6, seed=10 + s) for s in range(3)},
            ("mid2", "scratch", "full"): {s: correctness(0.6, seed=20 + s) for s in range(3)},
        }
    )


# ---------------------------------------------------------------- McNemar


def test_mcnemar_matches_statsmodels_on_hand_built_table():
    # both right 50, a only 12, b only 4, both wrong 34: 16 discordant -> exact binomial
    a = np.array([1] * 50 + [1] * 12 + [0] * 4 + [0] * 34, dtype=bool)
    b = np.array([1] * 50 + [0] * 12 + [1] * 4 + [0] * 34, dtype=bool)
    expected = sm_mcnemar([[50, 12], [4, 34]], exact=True)
    assert mcnemar(a, b) == pytest.approx((expected.statistic, expected.pvalue))
    assert mcnemar(a, b)[1] == pytest.approx(2 * stats.binom.cdf(4, 16, 0.5))
    # 40 discordant -> chi-square with continuity correction
    a = np.array([1] * 30 + [0] * 10 + [1] * 60, dtype=bool)
    b = np.array([0] * 30 + [1] * 10 + [1] * 60, dtype=bool)
    expected = sm_mcnemar([[60, 30], [10, 0]], exact=False, correction=True)
    stat, p = mcnemar(a, b)
    assert (stat, p) == pytest.approx((expected.statistic, expected.pvalue))
    assert stat == pytest.approx((abs(30 - 10) - 1) ** 2 / 40)


def test_mcnemar_identical_systems_p_is_one():
    a = correctness(0.7)
    assert mcnemar(a, a)[1] == pytest.approx(1.0)


def test_mcnemar_aligns_series_by_row_id_and_rejects_other_rows():
    a = pd.Series([True, False, True], index=[10, 11, 12])
    b = pd.Series([True, True, False], index=[12, 10, 11])  # same rows, other order
    assert mcnemar(a, b) == mcnemar(a.to_numpy(), b.loc[[10, 11, 12]].to_numpy())
    with pytest.raises(ValueError, match="same test rows"):
        mcnemar(a, pd.Series([True, True, False], index=[10, 11, 13]))
    with pytest.raises(ValueError, match="different test rows"):
        mcnemar(np.ones(5, bool), np.ones(4, bool))


# ---------------------------------------------------------------- bootstrap


def test_paired_bootstrap_clear_difference_and_identical():
    better, worse = correctness(0.9, seed=1), correctness(0.6, seed=2)
    res = paired_bootstrap(better, worse, n_boot=300, seed=0)
    assert res["diff"] == pytest.approx(0.3)
    assert 0 < res["diff_lo"] < 0.3 < res["diff_hi"]
    assert res["p_value"] == pytest.approx(1 / 301)
    same = paired_bootstrap(better, better, n_boot=300)
    assert same["diff"] == 0 and same["diff_lo"] == same["diff_hi"] == 0
    assert same["p_value"] == pytest.approx(1.0)


def test_paired_bootstrap_is_reproducible_and_accepts_fractions():
    a, b = correctness(0.7, seed=3), correctness(0.65, seed=4)
    assert paired_bootstrap(a, b, n_boot=200, seed=5) == paired_bootstrap(a, b, n_boot=200, seed=5)
    res = paired_bootstrap(a * 0.5, b * 1.0, n_boot=50)
    assert res["diff"] == pytest.approx(0.35 - 0.65)


# ---------------------------------------------------------------- combining, effect size, 5x2cv


def test_combine_seed_pvalues():
    assert combine_seed_pvalues([0.03]) == pytest.approx(0.03)
    assert combine_seed_pvalues([0.01, 0.2]) == pytest.approx(0.2)  # upper middle, factor 1
    assert combine_seed_pvalues([0.5, 0.01, 0.02]) == pytest.approx(1.5 * 0.02)
    assert combine_seed_pvalues([0.9, 0.9, 0.9]) == 1.0
    # never smaller than the plain median: conservative compared with Fisher on copies
    copies = [0.04] * 5
    assert combine_seed_pvalues(copies) >= np.median(copies)
    assert stats.combine_pvalues(copies, method="fisher").pvalue < 0.01
    with pytest.raises(ValueError):
        combine_seed_pvalues([])


def test_cohens_h():
    assert cohens_h(0.5, 0.5) == 0
    assert cohens_h(0.9, 0.6) == pytest.approx(2 * np.arcsin(0.9**0.5) - 2 * np.arcsin(0.6**0.5))
    assert cohens_h(1.0, 0.0) == pytest.approx(np.pi)


def test_five_by_two_cv_f_test_matches_formula():
    diffs = np.array([[0.02, 0.04], [0.01, 0.03], [0.05, 0.01], [0.00, 0.02], [0.03, 0.03]])
    # by hand: sum of squares = (4 + 16 + 1 + 9 + 25 + 1 + 0 + 4 + 9 + 9) e-4 = 0.0078;
    # per-replication variances (d1 - d2)^2 / 2 = 2e-4, 2e-4, 8e-4, 2e-4, 0 -> sum 0.0014
    f_by_hand = 0.0078 / (2 * 0.0014)  # = 39 / 14
    f_stat, p = five_by_two_cv_f_test(diffs)
    assert f_stat == pytest.approx(39 / 14)
    assert f_stat == pytest.approx(f_by_hand)
    assert p == pytest.approx(stats.f.sf(39 / 14, 10, 5))
    assert p > 0.05  # not significant: F(10, 5) critical value at 5% is about 4.74
    assert five_by_two_cv_f_test(np.zeros((5, 2))) == (pytest.approx(np.nan, nan_ok=True), 1.0)
    with pytest.raises(ValueError, match="shape"):
        five_by_two_cv_f_test(np.zeros((2, 5)))


# ---------------------------------------------------------------- pairwise table


def test_pairwise_clearly_better_is_significant_equal_ones_are_not():
    table = pairwise_comparisons(three_systems(), "t", n_boot=200, seed=0)
    assert list(table.columns) == PAIRWISE_COLUMNS
    assert len(table) == 3
    assert (table["diff"] >= 0).all()  # system_a is the more accurate one
    good = table[table["system_a"] == "good (pretrained, full)"]
    assert len(good) == 2
    assert good["significant"].all()
    assert good["diff"].to_numpy() == pytest.approx([0.3, 0.3])
    assert (good["diff_lo"] > 0).all()
    assert (good["cohens_h_lo"] > 0).all()
    assert (good["n_seed_pairs"] == 3).all() and (good["seed_pairing"] == "matched").all()
    mids = table[table["system_a"] != "good (pretrained, full)"].iloc[0]
    assert mids["diff"] == pytest.approx(0.0)
    assert not mids["significant"]
    assert mids["diff_lo"] < 0 < mids["diff_hi"]


def test_identical_systems_not_significant():
    same = correctness(0.7, seed=7)
    preds = predictions(
        {("a", "pretrained", "full"): {0: same}, ("b", "scratch", "full"): {0: same}}
    )
    row = pairwise_comparisons(preds, "t", n_boot=100).iloc[0]
    assert row["mcnemar_p"] == pytest.approx(1.0)
    assert row["bootstrap_p"] == pytest.approx(1.0)
    assert not row["significant"]


def test_holm_adjustment_at_least_raw_and_monotone():
    systems = {
        (f"m{i}", "pretrained", "full"): {0: correctness(acc, seed=i)}
        for i, acc in enumerate([0.60, 0.64, 0.68, 0.72, 0.76])
    }
    table = pairwise_comparisons(predictions(systems), "t", n_boot=200)
    assert len(table) == 10
    for name in ("mcnemar_p", "bootstrap_p"):
        raw, holm = table[name].to_numpy(), table[f"{name}_holm"].to_numpy()
        assert (holm >= raw - 1e-12).all() and (holm <= 1).all()
        order = np.argsort(raw, kind="stable")
        assert (np.diff(holm[order]) >= -1e-12).all()  # same ordering as the raw p-values


def test_pairwise_bootstrap_agrees_with_paired_bootstrap():
    a, b = correctness(0.8, seed=1), correctness(0.7, seed=2)
    preds = predictions({("a", "pretrained", "full"): {0: a}, ("b", "pretrained", "full"): {0: b}})
    row = pairwise_comparisons(preds, "t", n_boot=150, seed=3).iloc[0]
    res = paired_bootstrap(a, b, n_boot=150, seed=3)
    assert row["diff_lo"] == pytest.approx(res["diff_lo"])
    assert row["diff_hi"] == pytest.approx(res["diff_hi"])
    assert row["bootstrap_p"] == pytest.approx(res["p_value"])
    assert row["mcnemar_p"] == pytest.approx(mcnemar(a, b)[1])


def test_unmatched_seeds_are_paired_by_order():
    preds = predictions(
        {
            ("a", "pretrained", "full"): {0: correctness(0.9, seed=1)},
            ("b", "pretrained", "full"): {5: correctness(0.6, seed=2), 6: correctness(0.6)},
        }
    )
    row = pairwise_comparisons(preds, "t", n_boot=50).iloc[0]
    assert row["seed_pairing"] == "by order" and row["n_seed_pairs"] == 1


def test_training_size_selection():
    big = predictions({("a", "pretrained", "full"): {0: correctness(0.9)}}, n_train=200)
    small = predictions(
        {
            ("a", "pretrained", "full"): {0: correctness(0.5)},
            ("b", "pretrained", "full"): {0: correctness(0.6)},
        },
        n_train=50,
    )
    preds = pd.concat([big, small], ignore_index=True)
    row = pairwise_comparisons(preds, "t", n_boot=50).iloc[0]  # largest size of each system
    assert (row["n_train_a"], row["n_train_b"], row["acc_a"]) == (200, 50, pytest.approx(0.9))
    row = pairwise_comparisons(preds, "t", n_train=50, n_boot=50).iloc[0]
    assert row["system_a"] == "b (pretrained, full)" and row["n_train_a"] == 50
    assert pairwise_comparisons(big, "t", n_boot=50).empty  # one system: nothing to compare
    with pytest.raises(ValueError, match="n_train=7"):
        pairwise_comparisons(preds, "t", n_train=7)
    with pytest.raises(ValueError, match="no predictions for task 'x'"):
        pairwise_comparisons(preds, "x")


def test_mismatched_row_ids_raise():
    a = predictions({("a", "pretrained", "full"): {0: correctness(0.9)}})
    b = predictions(
        {("b", "pretrained", "full"): {0: correctness(0.6)}}, row_ids=np.arange(1, N + 1)
    )
    preds = pd.concat([a, b], ignore_index=True)
    with pytest.raises(ValueError, match="not scored on the same test rows"):
        pairwise_comparisons(preds, "t", n_boot=10)
    with pytest.raises(ValueError, match="same test rows"):
        rank_intervals(preds, "t", n_boot=10)
    # seeds of one system must share the rows too
    c = predictions({("b", "pretrained", "full"): {1: correctness(0.6)}}, row_ids=np.arange(N) * 2)
    with pytest.raises(ValueError, match="seed 1"):
        pairwise_comparisons(pd.concat([a, c.assign(model="a")]), "t", n_boot=10)


def test_rows_are_matched_by_row_id_not_position():
    a = correctness(0.8, seed=1)
    preds = predictions({("a", "pretrained", "full"): {0: a}, ("b", "pretrained", "full"): {0: a}})
    half = len(a)
    shuffled = pd.concat([preds.iloc[:half], preds.iloc[half:].iloc[::-1]], ignore_index=True)
    row = pairwise_comparisons(shuffled, "t", n_boot=20).iloc[0]
    assert row["mcnemar_p"] == pytest.approx(1.0) and row["diff"] == 0


# ---------------------------------------------------------------- rank intervals


def test_rank_intervals_best_system_and_overlapping_equals():
    table = rank_intervals(three_systems(), "t", n_boot=200, seed=0)
    assert list(table.columns) == RANK_COLUMNS
    best = table.iloc[0]
    assert best["system"] == "good (pretrained, full)"
    assert (best["rank"], best["rank_lo"], best["rank_hi"]) == (1, 1, 1)
    assert best["p_best"] == pytest.approx(1.0)
    assert best["accuracy"] == pytest.approx(0.9)
    mids = table.iloc[1:]
    assert (mids["rank_lo"] <= 2).all() and (mids["rank_hi"] >= 3).all()  # overlap
    assert max(mids["rank_lo"]) <= min(mids["rank_hi"])
    assert table["p_best"].sum() == pytest.approx(1.0)


def test_rank_intervals_ties_share_average_rank():
    same = correctness(0.7)
    preds = predictions(
        {("a", "pretrained", "full"): {0: same}, ("b", "scratch", "full"): {0: same}}
    )
    table = rank_intervals(preds, "t", n_boot=50)
    assert (table["rank"] == 1.5).all()
    assert (table["rank_lo"] == 1.5).all() and (table["rank_hi"] == 1.5).all()
    assert table["p_best"].to_numpy() == pytest.approx([0.5, 0.5])
