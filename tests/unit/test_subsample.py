import numpy as np
import pandas as pd

from ptmeval.subsample import subsample, subset_size


def pool(n=200):
    labels = np.array([0] * (n // 2) + [1] * (n // 4) + [2] * (n // 4))
    split = ["train"] * n + ["test"] * 20
    return pd.DataFrame(
        {
            "row_id": np.arange(n + 20),
            "split": split,
            "label": np.concatenate([labels, np.zeros(20, int)]),
        }
    )


def test_subsets_are_nested_for_one_seed():
    data = pool()
    sets = [set(subsample(data, f, seed=7)["row_id"]) for f in (0.125, 0.25, 0.5, 1.0)]
    for small, large in zip(sets, sets[1:], strict=False):
        assert small < large
    assert sets[-1] == set(range(200))


def test_subsets_are_stratified_and_exclude_test_rows():
    data = pool()
    sub = subsample(data, 0.2, seed=1)
    assert len(sub) == subset_size(200, 0.2) == 40
    counts = np.bincount(sub["label"], minlength=3)
    assert np.all(np.abs(counts - np.array([20, 10, 10])) <= 1)
    assert sub["row_id"].max() < 200


def test_seeds_differ_and_repeat():
    data = pool()
    a, b = subsample(data, 0.25, seed=0), subsample(data, 0.25, seed=1)
    assert set(a["row_id"]) != set(b["row_id"])
    pd.testing.assert_frame_equal(a, subsample(data, 0.25, seed=0))
