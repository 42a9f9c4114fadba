"""`tfidf-logreg`: the classical baseline, TF-IDF features + logistic regression (scikit-learn).

No torch model and no pretraining: it always runs with init 'scratch'. Its fitted state is stored
as plain arrays (vocabulary, idf, coefficients) and JSON, never pickled.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ptmeval.adapters._base import ModelAdapter


class TfidfOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_features: int = Field(50000, ge=1)
    ngram_max: int = Field(2, ge=1, le=3)
    min_df: int = Field(1, ge=1)
    sublinear_tf: bool = True
    c: float = Field(10.0, gt=0)
    max_iter: int = Field(2000, ge=10)


class Adapter(ModelAdapter):
    name = "tfidf-logreg"
    modality = "text"

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)
        self.settings = TfidfOptions.model_validate(options)

    def fit(self, texts: Sequence[str], labels: np.ndarray, seed: int) -> dict[str, Any]:
        """Fit vectoriser and classifier; return the state `save` writes."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        s = self.settings
        vec = TfidfVectorizer(
            max_features=s.max_features,
            ngram_range=(1, s.ngram_max),
            min_df=s.min_df,
            sublinear_tf=s.sublinear_tf,
        )
        x = vec.fit_transform(list(texts))
        clf = LogisticRegression(C=s.c, max_iter=s.max_iter, random_state=seed)
        clf.fit(x, labels)
        vocab = sorted(vec.vocabulary_, key=vec.vocabulary_.__getitem__)
        coef = clf.coef_
        intercept = clf.intercept_
        if len(clf.classes_) == 2:  # binary LR stores one row; make it one per class
            coef = np.vstack([-coef[0] / 2, coef[0] / 2])
            intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
        return {
            "vocabulary": vocab,
            "idf": vec.idf_,
            "coef": coef,
            "intercept": intercept,
            "classes": clf.classes_,
            "train_log_loss": float(_log_loss(clf.predict_proba(x), labels, clf.classes_)),
            "n_params": int(coef.size + intercept.size),
        }

    def save(self, state: dict[str, Any], out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        np.savez(
            out_dir / "tfidf_logreg.npz",
            idf=state["idf"],
            coef=state["coef"],
            intercept=state["intercept"],
            classes=state["classes"],
        )
        meta = {"vocabulary": state["vocabulary"], "options": self.settings.model_dump()}
        (out_dir / "tfidf_logreg.json").write_text(json.dumps(meta))

    def load_fitted(self, out_dir: Path) -> FittedTfidf:
        """The fitted state in `out_dir`, loaded once to predict many times."""
        return FittedTfidf(out_dir)

    def predict_proba(self, out_dir: Path, texts: Sequence[str], num_labels: int) -> np.ndarray:
        """Class probabilities (n × num_labels; classes unseen in training get 0)."""
        return self.load_fitted(out_dir).predict(texts, num_labels)


class FittedTfidf:
    """A saved `tfidf-logreg` state (vocabulary, idf, coefficients) read from disk once; each
    `predict` only vectorises and scores (what the runtime stage times)."""

    def __init__(self, out_dir: Path) -> None:
        from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer

        with np.load(out_dir / "tfidf_logreg.npz", allow_pickle=False) as arrays:
            idf, coef = arrays["idf"], arrays["coef"]
            self.intercept, self.classes = arrays["intercept"], arrays["classes"]
        meta = json.loads((out_dir / "tfidf_logreg.json").read_text())
        opts = TfidfOptions.model_validate(meta["options"])
        self.counter = CountVectorizer(
            vocabulary={t: i for i, t in enumerate(meta["vocabulary"])},
            ngram_range=(1, opts.ngram_max),
        )
        self.tfidf = TfidfTransformer(sublinear_tf=opts.sublinear_tf)
        self.tfidf.idf_ = idf
        self.coef_t = coef.T

    def predict(self, texts: Sequence[str], num_labels: int) -> np.ndarray:
        """Class probabilities (n × num_labels; classes unseen in training get 0)."""
        x = self.tfidf.transform(self.counter.transform(list(texts)))
        scores = np.asarray(x @ self.coef_t) + self.intercept
        return expand_classes(softmax(scores), self.classes, num_labels)


def softmax(scores: np.ndarray) -> np.ndarray:
    z = scores - scores.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def expand_classes(probs: np.ndarray, classes: np.ndarray, num_labels: int) -> np.ndarray:
    """Place the columns of `probs` (one per seen class) into a num_labels-wide matrix."""
    full = np.zeros((probs.shape[0], num_labels), dtype=np.float64)
    full[:, np.asarray(classes, dtype=int)] = probs
    return full


def _log_loss(probs: np.ndarray, labels: np.ndarray, classes: np.ndarray) -> float:
    index = {c: i for i, c in enumerate(classes)}
    picked = probs[np.arange(len(labels)), [index[y] for y in labels]]
    return float(-np.mean(np.log(np.clip(picked, 1e-12, None))))
