"""Every intermediate table is written and read here: atomic Parquet with provenance."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ptmeval import __version__
from ptmeval.config import config_hash
from ptmeval.errors import DataError

PROVENANCE_KEY = b"ptmeval"


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """Commit of the working tree that holds this package, if it is a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


@lru_cache(maxsize=1)
def hardware() -> dict[str, Any]:
    """CPU/GPU description of this machine (GPU only if torch is already imported)."""
    info: dict[str, Any] = {
        "host": platform.node(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "system": platform.platform(),
    }
    torch = __import__("sys").modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
    return info


def provenance(params: Any = None) -> dict[str, Any]:
    """What produced a table: library and key package versions, commit, hardware, settings."""
    return {
        "ptmeval_version": __version__,
        "git_commit": git_commit(),
        "params_hash": config_hash(params) if params is not None else None,
        "params": params,
        "torch_version": _version("torch"),
        "transformers_version": _version("transformers"),
        "pandas_version": _version("pandas"),
        "hardware": hardware(),
    }


def write_table(df: pd.DataFrame, path: str | Path, params: Any = None) -> Path:
    """Write `df` to Parquet at `path` atomically, with provenance in the file metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[PROVENANCE_KEY] = json.dumps(provenance(params), default=str).encode()
    table = table.replace_schema_metadata(meta)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_table(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a table written by `write_table`; a damaged file raises a DataError naming it."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"'{path}': cache file is missing")
    try:
        return pq.read_table(path, columns=columns).to_pandas()
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(
            f"'{path}': unreadable Parquet ({err}); delete it and re-run to recompute it"
        ) from None


def read_provenance(path: str | Path) -> dict[str, Any]:
    """The provenance stamped by `write_table`."""
    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(PROVENANCE_KEY)
    return json.loads(raw) if raw else {}
