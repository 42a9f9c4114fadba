"""Read the column names of a local table without loading it (used at config-check time)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from ptmeval.errors import ConfigError


def table_format(path: Path) -> str:
    """'csv', 'tsv', 'parquet' or 'jsonl', from the file name."""
    suffix = "".join(path.suffixes[-1:]).lower()
    formats = {
        ".csv": "csv",
        ".tsv": "tsv",
        ".parquet": "parquet",
        ".jsonl": "jsonl",
        ".json": "jsonl",
    }
    if suffix not in formats:
        raise ConfigError(
            f"'{path}': unsupported table format '{suffix}' (csv, tsv, parquet, jsonl)"
        )
    return formats[suffix]


def encoding_message(path: Path, encoding: str, err: UnicodeDecodeError) -> str:
    """One line for a file that is not in the encoding it was read with."""
    return (
        f"'{path}': not {encoding} text (byte 0x{err.object[err.start]:02x} at position "
        f"{err.start}); set the task's source.encoding, e.g. 'latin-1' or 'cp1252'"
    )


def table_columns(path: Path, encoding: str = "utf-8") -> list[str]:
    """Column names of a CSV/TSV/Parquet/JSONL file, read from its header only."""
    fmt = table_format(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    try:
        return _header(path, fmt, encoding)
    except UnicodeDecodeError as err:
        raise ConfigError(encoding_message(path, encoding, err)) from None
    except LookupError:
        raise ConfigError(f"'{path}': unknown encoding '{encoding}'") from None


def _header(path: Path, fmt: str, encoding: str) -> list[str]:
    with open(path, newline="", encoding=encoding) as handle:
        if fmt == "jsonl":
            first = handle.readline()
            try:
                row = json.loads(first)
            except json.JSONDecodeError as err:
                raise ConfigError(f"'{path}': line 1 is not JSON ({err.msg})") from None
            return list(row) if isinstance(row, dict) else []
        reader = csv.reader(handle, delimiter="\t" if fmt == "tsv" else ",")
        return next(reader, [])
