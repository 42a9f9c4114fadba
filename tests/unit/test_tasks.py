import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ptmeval.config import parse_config
from ptmeval.errors import DataError
from ptmeval.tasks import load_source, prepare_task, split_task, stratified_order


def task_entry(source: dict, **sizes):
    cfg = parse_config(
        {
            "models": [{"slug": "t", "adapter": "tfidf-logreg"}],
            "tasks": [{"slug": "t", "source": source, **sizes}],
        }
    )
    return cfg.tasks[0]


def test_every_prefix_of_the_order_is_stratified():
    labels = np.array([0] * 60 + [1] * 30 + [2] * 10)
    order = stratified_order(labels, seed=3)
    assert sorted(order) == list(range(100))
    for n in (10, 20, 50, 80):
        counts = np.bincount(labels[order[:n]], minlength=3)
        assert np.all(np.abs(counts - n * np.array([0.6, 0.3, 0.1])) <= 1), (n, counts)
    assert not np.array_equal(order, stratified_order(labels, seed=4))
    assert np.array_equal(order, stratified_order(labels, seed=3))


def test_split_is_disjoint_sized_and_stratified():
    frame = pd.DataFrame(
        {"text": [f"doc {i}" for i in range(300)], "label_name": ["a", "b", "c"] * 100}
    )
    task = task_entry(
        {"kind": "packaged", "name": "bbc-news"}, test_size=60, val_size=30, max_train=90
    )
    data = split_task(frame, task, seed=0)
    sizes = data["split"].value_counts().to_dict()
    assert sizes == {"train": 90, "validation": 30, "test": 60}
    assert data["row_id"].is_unique
    for split in ("train", "validation", "test"):
        counts = data.loc[data["split"] == split, "label"].value_counts()
        assert counts.max() - counts.min() <= 1
    again = split_task(frame, task, seed=0)
    pd.testing.assert_frame_equal(data, again)


def test_source_split_keeps_test_rows_from_the_source_test_set():
    frame = pd.DataFrame(
        {
            "text": [str(i) for i in range(200)],
            "label_name": ["x", "y"] * 100,
            "source_split": ["train"] * 150 + ["test"] * 50,
        }
    )
    task = task_entry(
        {"kind": "packaged", "name": "reuters-r8"}, test_size=40, val_size=10, max_train=50
    )
    data = split_task(frame, task, seed=1)
    assert data.loc[data["split"] == "test", "row_id"].min() >= 150
    assert data.loc[data["split"] != "test", "row_id"].max() < 150


def test_one_class_is_an_error():
    frame = pd.DataFrame({"text": ["a", "b", "c"], "label_name": ["only"] * 3})
    task = task_entry({"kind": "packaged", "name": "bbc-news"})
    with pytest.raises(DataError, match="only one class"):
        split_task(frame, task, seed=0)


@pytest.mark.parametrize(
    ("name", "rows", "classes", "column"),
    [
        ("bbc-news", 2225, 5, "text"),
        ("reuters-r8", 7674, 8, "text"),
        ("digits", 1797, 10, "image"),
        ("mnist-5k", 5000, 10, "image"),
    ],
)
def test_packaged_datasets_load(name, rows, classes, column):
    frame = load_source(task_entry({"kind": "packaged", "name": name}).source)
    assert len(frame) == rows
    assert frame["label_name"].nunique() == classes
    assert column in frame
    if column == "image":
        with Image.open(io.BytesIO(frame[column].iloc[0])) as img:
            assert img.size[0] >= 8


def test_local_csv_task(tmp_path):
    path = tmp_path / "data.csv"
    pd.DataFrame({"body": [f"text {i}" for i in range(40)], "y": ["pos", "neg"] * 20}).to_csv(
        path, index=False
    )
    task = task_entry(
        {"kind": "file", "path": str(path), "text_column": "body", "label_column": "y"},
        test_size=10,
        val_size=4,
        max_train=20,
    )
    data, summary = prepare_task(task, seed=0)
    assert set(data["label_name"]) == {"neg", "pos"}
    assert summary.loc[summary["split"] == "test", "count"].sum() == 10


def test_broken_csv_row_is_named(tmp_path):
    path = tmp_path / "broken.csv"
    path.write_text('text,label\n"ok",a\n"unterminated,b\n')
    task = task_entry({"kind": "file", "path": str(path)})
    with pytest.raises(DataError, match="broken.csv': cannot be read as csv"):
        load_source(task.source)


def test_imagefolder_and_unreadable_image(tmp_path):
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(6):
            Image.new("RGB", (12, 12), color=(i * 40, 0, 0)).save(tmp_path / cls / f"{i}.png")
    task = task_entry(
        {"kind": "imagefolder", "path": str(tmp_path)}, test_size=4, val_size=2, max_train=6
    )
    data, _ = prepare_task(task, seed=0)
    assert len(data) == 12 and set(data["label_name"]) == {"cat", "dog"}
    (tmp_path / "dog" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="bad.png': unreadable image"):
        load_source(task.source)


def test_hf_datasets_source_from_local_files(tmp_path):
    folder = tmp_path / "my_dataset"
    folder.mkdir()
    for split, n in (("train", 30), ("test", 10)):
        pd.DataFrame(
            {"sentence": [f"{split} {i}" for i in range(n)], "label": [i % 2 for i in range(n)]}
        ).to_csv(folder / f"{split}.csv", index=False)
    task = task_entry(
        {"kind": "hf-dataset", "name": str(folder), "text_column": "sentence"},
        test_size=6,
        val_size=4,
        max_train=20,
    )
    frame = load_source(task.source)
    assert len(frame) == 40 and set(frame["source_split"]) == {"train", "test"}
    data, _ = prepare_task(task, seed=0)
    assert data.loc[data["split"] == "test", "text"].str.startswith("test").all()
