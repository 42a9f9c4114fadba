"""The study configs in config/examples/: a dry run plans the whole study, and `ptmeval
estimate` says which models it could not read offline instead of failing."""

from __future__ import annotations

import io
import re
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pytest
from PIL import Image

from ptmeval.cli import main
from ptmeval.workflow import job_stats
from tests.conftest import REPO, run_snakemake

EXAMPLES = REPO / "config" / "examples"


@pytest.fixture
def user_data(tmp_path, monkeypatch):
    """The data the examples point at, where a user would put it (relative to the run)."""
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    words = {"good": "great lovely excellent", "bad": "awful poor terrible"}
    rows = ["text,label"] + [
        f'"{label} review {i}: {words[label]}",{label}' for i in range(150) for label in words
    ]
    (data / "reviews.csv").write_text("\n".join(rows) + "\n")
    for label in ("cats", "dogs"):
        folder = data / "images" / label
        folder.mkdir(parents=True)
        for i in range(40):
            pixels = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("name", ["workstation-text", "workstation-image"])
def test_example_plans_its_study_on_a_gpu_by_default(user_data, name):
    config = EXAMPLES / f"{name}.yaml"
    result = run_snakemake("-n", "--cores", "8", "--configfile", str(config), cwd=user_data)
    assert result.returncode == 0, result.stderr[-3000:]
    stats = job_stats(result.stdout + result.stderr)
    # 5 sizes × 3 seeds for every model × init, each scored on the test split
    assert stats["finetune"] == stats["evaluate"] and stats["finetune"] % 15 == 0
    assert stats["select_hparams"] >= 4


def test_estimate_names_the_models_it_could_not_read_offline(user_data, monkeypatch, caplog):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = EXAMPLES / "workstation-text.yaml"
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["estimate", "--configfile", str(config), "--cache", str(user_data / "r")])
    assert code == 0, err.getvalue()
    said = out.getvalue() + err.getvalue() + caplog.text
    hub = {"bert-base", "roberta-base", "distilbert-base", "deberta-v3-small"}
    # each Hub model not in the local cache is named once, with the reason, and left out …
    left_out = set(
        re.findall(r"model '([^']+)': no config\.json .* left out of the estimate", said)
    )
    assert left_out <= hub
    for slug in hub - left_out:  # … the others were read from the cache and are estimated
        assert not re.search(rf"without .*\b{slug}\b", said)
    # … and the rest of the study is still estimated: TF-IDF's 5 sizes × 3 seeds
    assert re.search(r"^finetune\s+(15|\d\d+)\s", said, re.M), said


def test_examples_are_valid_against_the_schema():
    import yaml

    from ptmeval.config import parse_config

    for path in sorted(EXAMPLES.glob("*.yaml")):
        cfg = parse_config(yaml.safe_load(path.read_text()))
        assert cfg.finetune.device == "auto" and cfg.finetune.precision == "auto", path
        if path.stem.startswith("workstation-"):  # a study: enough sizes and seeds for fits
            assert len(cfg.subsample.fractions) >= 5 and len(cfg.subsample.seeds) >= 3, path
        else:  # the first look says what it cannot tell and how to make it a study
            text = path.read_text()
            assert "What it cannot tell you" in text and "five sizes" in text, path
