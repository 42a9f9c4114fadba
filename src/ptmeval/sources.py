"""`download_model`: resolve a model reference to a local snapshot and describe what was found."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import re
import shutil
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from ptmeval._parts import extract
from ptmeval.adapters import get_adapter
from ptmeval.config import (
    HubSource,
    ModelEntry,
    PackagePartsSource,
    PackageSource,
    PathSource,
    package_root,
)
from ptmeval.errors import ModelSourceError

log = logging.getLogger(__name__)

# Files worth fetching from a Hub repository: configs, tokenizers, safetensors/PyTorch weights.
HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.py", "*.md"]


def resolve_source(
    entry: ModelEntry, base_dir: Path = Path("."), unpack_dir: Path | None = None
) -> Path | None:
    """Local path holding the model's files (downloading from the Hub when it is a Hub id;
    extracting a `package-parts` archive into `unpack_dir`)."""
    src = entry.source
    if src is None:
        return None
    if isinstance(src, PathSource):
        path = (base_dir / src.path).resolve()
        if not path.exists():
            raise ModelSourceError(
                f"models '{entry.slug}'.source.path: '{src.path}' does not exist"
            )
        return path
    if isinstance(src, PackageSource):
        path = package_root(src.package, f"models '{entry.slug}'.source.package") / src.file
        if not path.exists():
            raise ModelSourceError(
                f"models '{entry.slug}'.source.file: '{src.file}' not found in package '{src.package}'"
            )
        return path.resolve()
    if isinstance(src, HubSource):
        return hub_snapshot(src.id, src.revision, src.gguf_file, entry.slug)
    if isinstance(src, PackagePartsSource):
        if unpack_dir is None:
            raise ModelSourceError(f"models '{entry.slug}': a package-parts source needs a folder")
        return extract(src, unpack_dir, entry.slug).resolve()
    raise ModelSourceError(f"models '{entry.slug}': unsupported source {src!r}")


def hub_snapshot(repo_id: str, revision: str | None, gguf_file: str | None, slug: str) -> Path:
    """`huggingface_hub.snapshot_download` (honours HF_HUB_OFFLINE and the local cache)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    patterns = HUB_PATTERNS + ([gguf_file] if gguf_file else [])
    try:
        path = snapshot_download(repo_id, revision=revision, allow_patterns=patterns)
    except LocalEntryNotFoundError:
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")
        hint = "offline mode is on and it is not in the local cache" if offline else "no network?"
        raise ModelSourceError(
            f"models '{slug}'.source.id: cannot fetch '{repo_id}' from the Hugging Face Hub ({hint})"
        ) from None
    except (HfHubHTTPError, OSError, ValueError) as err:
        raise ModelSourceError(f"models '{slug}'.source.id: '{repo_id}': {err}") from None
    return Path(path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file, checked against the file: a header length that
    fits, valid JSON, and tensor data that ends exactly at the end of the file (a truncated or
    padded copy, or random bytes, fail here with a ModelSourceError naming the file)."""
    total = path.stat().st_size
    with open(path, "rb") as handle:
        size = int.from_bytes(handle.read(8), "little")
        if total < 8 or not 2 <= size <= total - 8:
            raise ModelSourceError(
                f"'{path.name}' is not a safetensors file (header length {size}, file {total} B)"
            )
        try:
            header = json.loads(handle.read(size))
            ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
        except (ValueError, TypeError, KeyError, IndexError):
            raise ModelSourceError(f"'{path.name}' has a damaged safetensors header") from None
    expected = 8 + size + max(ends, default=0)
    if expected != total:
        raise ModelSourceError(
            f"'{path.name}' is {total:,} bytes but its header describes {expected:,}: a truncated "
            "or damaged copy; replace it with a complete one"
        )
    return dict(header)


def _safetensors_dtypes(path: Path) -> str:
    """Comma-separated dtypes in a safetensors file, read from its JSON header."""
    header = safetensors_header(path)
    return ",".join(sorted({v["dtype"] for k, v in header.items() if k != "__metadata__"}))


def find_license(entry: ModelEntry, resolved: Path | None) -> str:
    """Licence as stated by the config, the model card or the package metadata."""
    if entry.license:
        return entry.license
    if resolved is not None:
        card = (resolved if resolved.is_dir() else resolved.parent) / "README.md"
        if card.exists():
            match = re.search(r"^license:\s*(\S+)", card.read_text(errors="replace"), re.M)
            if match:
                return match.group(1)
    if isinstance(entry.source, PackageSource):
        try:
            dist = metadata.packages_distributions().get(entry.source.package.split(".")[0], [])
            for name in dist:
                meta = metadata.metadata(name)
                stated = meta["License-Expression"] or meta["License"]
                if stated and stated.upper() != "UNKNOWN" and len(stated) < 80:
                    return f"{stated} (package {name})"
        except Exception:  # metadata is best-effort
            pass
    return "not stated"


def describe_source(entry: ModelEntry) -> str:
    src = entry.source
    if src is None:
        return "none (trained from data only)"
    if isinstance(src, HubSource):
        return f"hub:{src.id}@{src.revision or 'main'}"
    if isinstance(src, PathSource):
        return f"path:{src.path}"
    if isinstance(src, PackagePartsSource):
        return f"package-parts:{src.packages[0]}..{src.packages[-1]}/{src.file}"
    return f"package:{src.package}/{src.file}"


def download_model(
    entry: ModelEntry, snapshot_dir: str | Path, base_dir: Path = Path(".")
) -> pd.DataFrame:
    """Write a local snapshot of `entry` to `snapshot_dir`; return its manifest (one row a file)."""
    out = Path(snapshot_dir)
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}-unpack-") as unpack:
        resolved = resolve_source(entry, base_dir, Path(unpack))
        log.info("model %s: source %s -> %s", entry.slug, describe_source(entry), resolved)
        adapter = get_adapter(entry.adapter, entry.options)
        adapter.trust_remote_code = entry.trust_remote_code
        try:
            adapter.prepare_snapshot(resolved, entry.source, out)
        except pickle.UnpicklingError as err:
            raise ModelSourceError(
                f"models '{entry.slug}': refused to load '{resolved}': the pickle would run code "
                f"or holds objects other than tensors ({str(err).splitlines()[0][:200]})"
            ) from None
        for weights in sorted(out.rglob("*.safetensors")):  # before any later job reads them
            try:
                safetensors_header(weights)
            except ModelSourceError as err:
                shutil.rmtree(out, ignore_errors=True)
                raise ModelSourceError(f"models '{entry.slug}': {err}") from None
        licence = find_license(entry, resolved)
    rows: list[dict[str, Any]] = []
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        fmt = path.suffix.lstrip(".") or "none"
        rows.append(
            {
                "model": entry.slug,
                "file": str(path.relative_to(out)),
                "format": fmt,
                "dtypes": _safetensors_dtypes(path) if fmt == "safetensors" else "",
                "bytes_on_disk": path.stat().st_size,
                "sha256": _sha256(path),
                "source": describe_source(entry),
                "license": licence,
            }
        )
    log.info(
        "model %s: %d files, %.1f MB",
        entry.slug,
        len(rows),
        sum(r["bytes_on_disk"] for r in rows) / 1e6,
    )
    return pd.DataFrame(rows)
