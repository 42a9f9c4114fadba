import math
import warnings

import numpy as np
import pytest

from ptmeval.transfer import (
    h_score,
    knn_accuracy,
    leep,
    logme,
    nce,
    score_predictions,
    transfer_scores,
)


def blobs(n_per=40, k=3, d=8, sep=6.0, seed=0):
    """Well-separated Gaussian clusters: features that linearly separate the labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * sep
    labels = np.repeat(np.arange(k), n_per)
    feats = centres[labels] + rng.normal(size=(k * n_per, d))
    return feats, labels


def noise(n=120, k=3, d=8, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.integers(0, k, size=n)


# ------------------------------------------------------------------------------ LogME


def brute_force_logme(f, labels, iters=2000):
    """Direct, unoptimised LogME (ICML 2021, Algorithm 1) with explicit D x D matrices."""
    f = np.asarray(f, dtype=np.float64)
    n, d = f.shape
    ftf = f.T @ f
    eig = np.linalg.eigvalsh(ftf)
    evidences = []
    for c in np.unique(labels):
        y = (labels == c).astype(np.float64)
        alpha, beta = 1.0, 1.0
        for _ in range(iters):
            a_mat = alpha * np.eye(d) + beta * ftf
            m = beta * np.linalg.solve(a_mat, f.T @ y)
            gamma = np.sum(beta * eig / (alpha + beta * eig))
            alpha_new = gamma / (m @ m + 1e-5)
            beta_new = (n - gamma) / (np.sum((f @ m - y) ** 2) + 1e-5)
            done = abs(alpha_new / beta_new - alpha / beta) <= 1e-13 * alpha / beta
            alpha, beta = alpha_new, beta_new
            if done:
                break
        a_mat = alpha * np.eye(d) + beta * ftf
        m = beta * np.linalg.solve(a_mat, f.T @ y)
        _, logdet = np.linalg.slogdet(a_mat)
        evidence = (
            d / 2 * np.log(alpha)
            + n / 2 * np.log(beta)
            - beta / 2 * np.sum((f @ m - y) ** 2)
            - alpha / 2 * (m @ m)
            - logdet / 2
            - n / 2 * np.log(2 * np.pi)
        )
        evidences.append(evidence / n)
    return float(np.mean(evidences))


@pytest.mark.parametrize(("n", "d"), [(30, 5), (12, 20)])  # n > D and rank-deficient n < D
def test_logme_matches_brute_force_evidence(n, d):
    rng = np.random.default_rng(n + d)
    f = rng.normal(size=(n, d))
    labels = rng.integers(0, 3, size=n)
    labels[:3] = [0, 1, 2]
    expected = brute_force_logme(f, labels)
    assert logme(f, labels, max_iter=2000, tol=1e-13) == pytest.approx(expected, rel=1e-7)
    assert logme(f, labels) == pytest.approx(expected, rel=1e-6)  # defaults reach the optimum
    if n > d:  # the reference's settings (11 steps, tol 1e-3) suffice when n > D
        assert logme(f, labels, max_iter=11, tol=1e-3) == pytest.approx(expected, abs=1e-4)


def test_logme_separable_beats_random_and_accepts_float32():
    sep_f, sep_y = blobs()
    rnd_f, rnd_y = noise()
    good = logme(sep_f.astype(np.float32), sep_y)
    assert good > logme(rnd_f, rnd_y)
    assert good == pytest.approx(logme(sep_f, sep_y), rel=1e-5)


def test_logme_binary_and_singleton_class():
    f, y = blobs(n_per=20, k=2, d=4)
    assert math.isfinite(logme(f, y))
    y = y.copy()
    y[0] = 2  # a class with a single example
    assert math.isfinite(logme(f, y))


def test_logme_is_invariant_to_label_values():
    f, y = blobs()
    assert logme(f, y) == pytest.approx(logme(f, y * 10 + 7))


# ----------------------------------------------------------------------------- H-score


def test_h_score_higher_for_informative_features_and_bounded():
    f, y = blobs()
    informative = h_score(f, y)
    rnd = h_score(np.random.default_rng(5).normal(size=f.shape), y)
    assert informative > rnd
    assert 0.0 <= rnd < informative <= 2.0 + 1e-9  # at most K - 1


def test_h_score_matches_textbook_formula():
    rng = np.random.default_rng(3)
    f = rng.normal(size=(50, 4))
    y = rng.integers(0, 3, size=50)
    f[y == 1] += 1.0
    g = np.stack([f[y == c].mean(0) for c in y])  # E[f | y] per example
    expected = np.trace(np.linalg.pinv(np.cov(f, rowvar=False)) @ np.cov(g, rowvar=False))
    assert h_score(f, y) == pytest.approx(expected, rel=1e-9)


def test_h_score_pinv_degenerate_when_n_small_shrinkage_is_not():
    rng = np.random.default_rng(4)
    f = rng.normal(size=(10, 30))
    y = np.arange(10) % 2
    with pytest.warns(RuntimeWarning, match="degenerate"):
        assert h_score(f, y) == pytest.approx(1.0)  # K - 1 whatever the features
    shrunk = h_score(f, y, regularization="ledoit-wolf")
    assert 0.0 <= shrunk < 1.0
    sep_f, sep_y = blobs(d=30, n_per=5, k=2)
    assert h_score(sep_f, sep_y, regularization="ledoit-wolf") > shrunk


# --------------------------------------------------------------------------- LEEP / NCE


def test_leep_by_hand():
    theta = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    y = np.array([0, 1, 1])
    # P(y, z) = 1/3 * sum of theta rows with that label
    joint = np.array([[0.9, 0.1], [0.8, 1.2]]) / 3
    cond = joint / joint.sum(0)  # P(y | z)
    expected = np.mean(
        [
            np.log(cond[0, 0] * 0.9 + cond[0, 1] * 0.1),
            np.log(cond[1, 0] * 0.2 + cond[1, 1] * 0.8),
            np.log(cond[1, 0] * 0.6 + cond[1, 1] * 0.4),
        ]
    )
    assert leep(theta, y) == pytest.approx(expected)
    assert leep(theta, y) < 0


def test_leep_perfect_source_and_unused_source_class():
    theta = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert leep(theta, np.array([0, 1, 0])) == pytest.approx(0.0)


def test_leep_rejects_logits():
    with pytest.raises(ValueError, match="sum to 1"):
        leep(np.array([[2.0, 1.0], [0.5, 3.0]]), np.array([0, 1]))


def test_nce_deterministic_and_constant_source():
    y = np.array([0, 0, 1, 1, 1, 2])
    assert nce(np.array([5, 5, 7, 7, 7, 9]), y) == pytest.approx(0.0)
    p = np.array([2, 3, 1]) / 6
    assert nce(np.zeros(6, dtype=int), y) == pytest.approx(np.sum(p * np.log(p)))


# ------------------------------------------------------------------------------- k-NN


def test_knn_accuracy_separable_and_noise():
    f, y = blobs()
    assert knn_accuracy(f, y) > 0.97
    rf, ry = noise(n=300, k=2, d=5)
    assert abs(knn_accuracy(rf, ry) - 0.5) < 0.12


def test_knn_accuracy_small_classes_do_not_crash():
    f, y = blobs(n_per=3, k=2, d=3)
    y = y.copy()
    y[0] = 2  # singleton class; fewer examples per class than folds
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        acc = knn_accuracy(f, y, k=5, folds=5)
    assert 0.0 <= acc <= 1.0


# ------------------------------------------------------------------------ score checking


def test_score_predictions_identical_and_reversed():
    actual = {f"m{i}": float(i) for i in range(6)}
    same = score_predictions({m: 2 * v + 1 for m, v in actual.items()}, actual, n_boot=200)
    assert same["tau"] == pytest.approx(1.0)
    assert same["n_models"] == 6
    assert same["tau_lo"] <= same["tau_hi"] <= 1.0 + 1e-12
    rev = score_predictions({m: -v for m, v in actual.items()}, actual, n_boot=200)
    assert rev["tau"] == pytest.approx(-1.0)
    assert rev["tau_hi"] == pytest.approx(-1.0)


def test_score_predictions_two_models_is_nan_with_note():
    out = score_predictions({"a": 1.0, "b": 2.0, "c": 0.5}, {"a": 0.7, "b": 0.9})
    assert math.isnan(out["tau"]) and math.isnan(out["tau_lo"]) and math.isnan(out["tau_hi"])
    assert out["n_models"] == 2
    assert "at least 3 models" in out["note"] and "c" in out["note"]


def test_score_predictions_constant_scores_is_nan_with_note():
    out = score_predictions({"a": 1.0, "b": 1.0, "c": 1.0}, {"a": 0.1, "b": 0.2, "c": 0.3})
    assert math.isnan(out["tau"])
    assert "undefined" in out["note"]


# --------------------------------------------------------------------------- all at once


def test_transfer_scores_keys():
    f, y = blobs()
    assert set(transfer_scores(f, y)) == {"logme", "h_score", "knn_accuracy"}
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(len(y), 10))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    out = transfer_scores(f.astype(np.float32), y, source_probs=probs)
    assert set(out) == {"logme", "h_score", "knn_accuracy", "leep", "nce"}
    assert all(math.isfinite(v) for v in out.values())


@pytest.mark.parametrize("fn", [logme, h_score, knn_accuracy])
def test_bad_inputs_raise(fn):
    f, y = blobs()
    with pytest.raises(ValueError, match="mismatched lengths"):
        fn(f, y[:-1])
    with pytest.raises(ValueError, match="at least 2 classes"):
        fn(f, np.zeros(len(y), dtype=int))


def test_bad_inputs_raise_for_leep_and_nce():
    probs = np.full((4, 2), 0.5)
    with pytest.raises(ValueError, match="mismatched lengths"):
        leep(probs, np.array([0, 1, 0]))
    with pytest.raises(ValueError, match="at least 2 classes"):
        nce(np.array([0, 1, 0, 1]), np.array([1, 1, 1, 1]))


# ------------------------------------------------------------ frozen-feature reference


def feature_table(n_per=30, k=3, d=8, sep=6.0, seed=0):
    """A cached-feature table (row_id, split, label, feature) of separable blobs: 60% training
    pool, 20% validation, 20% test, every class in every split."""
    import pandas as pd

    feats, labels = blobs(n_per=n_per, k=k, d=d, sep=sep, seed=seed)
    order = np.random.default_rng(seed).permutation(len(labels))
    feats, labels = feats[order], labels[order]
    rank = np.array([np.sum(labels[:i] == labels[i]) for i in range(len(labels))])
    split = np.where(
        rank < 0.6 * n_per, "train", np.where(rank < 0.8 * n_per, "validation", "test")
    )
    return pd.DataFrame(
        {
            "row_id": np.arange(len(labels)),
            "split": split,
            "label": labels,
            "feature": list(feats.astype(np.float32)),
        }
    )


def test_frozen_probe_scores_on_every_subset_and_separable_features_score_high():
    from ptmeval.transfer import FROZEN_COLUMNS, PROBE_C_GRID, frozen_probe_scores

    features = feature_table()
    pool = features.loc[features["split"] == "train", "row_id"].to_numpy()
    subsets = {
        (0.5, 0): features.loc[features["row_id"].isin(pool[::2]), ["row_id"]],
        (1.0, 0): features.loc[features["row_id"].isin(pool), ["row_id"]],
    }
    table = frozen_probe_scores("m", "t", features, subsets)
    assert list(table.columns) == FROZEN_COLUMNS
    assert len(table) == 4 and set(table["metric"]) == {"accuracy", "macro_f1"}
    assert table.set_index(["fraction", "metric"]).loc[(0.5, "accuracy"), "n_train"] == len(
        pool[::2]
    )
    assert table["probe_c"].isin(PROBE_C_GRID).all() and (table["init"] == "pretrained").all()
    assert (table["value"] > 0.95).all() and (table["val_accuracy"] > 0.95).all()


def test_frozen_probe_scores_noise_is_near_chance_and_bad_subsets_are_named():
    import pandas as pd

    from ptmeval.transfer import frozen_probe_scores

    features = feature_table()
    rng = np.random.default_rng(3)
    features["feature"] = list(rng.normal(size=(len(features), 8)).astype(np.float32))
    pool = features.loc[features["split"] == "train", ["row_id"]]
    acc = frozen_probe_scores("m", "t", features, {(1.0, 0): pool}).query("metric == 'accuracy'")
    assert acc["value"].iloc[0] < 0.7  # 3 classes: chance is 1/3
    one_class = features[(features["split"] == "train") & (features["label"] == 0)][["row_id"]]
    table = frozen_probe_scores("m", "t", features, {(0.1, 1): one_class})
    assert table["value"].isna().all() and "single class" in table["note"].iloc[0]
    test_row = features.loc[features["split"] == "test", ["row_id"]].iloc[:3]
    with pytest.raises(ValueError, match="not in the features' training split"):
        frozen_probe_scores("m", "t", features, {(1.0, 0): pd.concat([pool, test_row])})


def test_read_subsets_keys_by_fraction_and_seed(tmp_path):
    import pandas as pd

    from ptmeval.io import write_table
    from ptmeval.transfer import read_subsets

    paths = []
    for fraction, seed in (("0.125", 0), ("1", 2)):
        path = tmp_path / "subsample" / "t" / fraction / str(seed) / "0123abcd" / "train.parquet"
        write_table(pd.DataFrame({"row_id": [1, 2], "label": [0, 1]}), path)
        paths.append(path)
    subsets = read_subsets(paths)
    assert sorted(subsets) == [(0.125, 0), (1.0, 2)]
    assert list(subsets[(1.0, 2)].columns) == ["row_id"]
    with pytest.raises(ValueError, match="not a subset path"):
        read_subsets([tmp_path / "x" / "train.parquet"])


# ------------------------------------------------------------ the stage's entry point


def test_score_task_scores_the_training_pool_only():
    from ptmeval.transfer import score_task

    features = feature_table()
    train = features[features["split"] == "train"]
    x = np.stack(train["feature"].to_numpy()).astype(np.float64)
    y = train["label"].to_numpy()
    row = score_task("m", "t", features).iloc[0]
    assert (row["model"], row["task"], row["n_examples"], row["feature_dim"]) == ("m", "t", 54, 8)
    assert row["logme"] == pytest.approx(logme(x, y))
    assert row["h_score"] == pytest.approx(h_score(x, y))
    assert row["knn_accuracy"] == pytest.approx(knn_accuracy(x, y, k=5, seed=0))
    assert row["linear_probe_val_accuracy"] > 0.95  # separable blobs, scored on validation
    np.testing.assert_allclose(row["feature_mean"], x.mean(axis=0), rtol=1e-6)
    # no source classifier: LEEP and NCE are NaN and the note says why
    assert math.isnan(row["leep"]) and math.isnan(row["nce"])
    assert "LEEP/NCE: no source classification head" in row["note"]
    # validation and test rows do not reach the scores: scrambling them changes none
    scrambled = features.copy()
    held_out = scrambled["split"] != "train"
    scrambled.loc[held_out, "feature"] = noise_features(
        held_out.sum(), 8, scrambled.index[held_out]
    )
    again = score_task("m", "t", scrambled).iloc[0]
    for score in ("logme", "h_score", "knn_accuracy"):
        assert again[score] == row[score]


def noise_features(n: int, d: int, index):
    import pandas as pd

    rng = np.random.default_rng(7)
    return pd.Series(list(rng.normal(size=(n, d)).astype(np.float32)), index=index)


def test_score_task_with_a_source_head_and_with_few_examples():
    from ptmeval.transfer import score_task

    features = feature_table()
    train = features["split"] == "train"
    k_source = 5  # a source classifier's probabilities over its own 5 classes
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(k_source), size=len(features))
    features["source_probs"] = list(probs)
    row = score_task("m", "t", features).iloc[0]
    y = features.loc[train, "label"].to_numpy()
    assert row["leep"] == pytest.approx(leep(probs[train.to_numpy()], y))
    assert row["nce"] == pytest.approx(nce(probs[train.to_numpy()].argmax(axis=1), y))
    assert "LEEP/NCE" not in row["note"]
    # no more training examples than feature dimensions: the shrinkage H-score, said in the note
    wide = feature_table(n_per=5, d=16)
    small = score_task("m", "t", wide).iloc[0]
    assert small["n_examples"] <= 16 + 1
    assert "H-score: Ledoit-Wolf shrinkage" in small["note"]
    x = np.stack(wide.loc[wide["split"] == "train", "feature"].to_numpy()).astype(np.float64)
    yw = wide.loc[wide["split"] == "train", "label"].to_numpy()
    assert small["h_score"] == pytest.approx(h_score(x, yw, regularization="ledoit-wolf"))
