"""Task sources on the user's disk (CSV/TSV/Parquet/JSONL, ImageFolder) and `datasets` by name."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from ptmeval._columns import table_format
from ptmeval.config import FileData, HFDatasetData, ImageFolderData
from ptmeval.errors import DataError
from ptmeval.tasks import register_source

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def read_local_table(path: Path) -> pd.DataFrame:
    """Read a table; a malformed row is reported with the file and line."""
    fmt = table_format(path)
    try:
        if fmt == "parquet":
            return pd.read_parquet(path)
        if fmt == "jsonl":
            return pd.read_json(path, lines=True)
        return pd.read_csv(path, sep="\t" if fmt == "tsv" else ",", keep_default_na=False)
    except (pd.errors.ParserError, ValueError, OSError) as err:
        raise DataError(f"'{path}': cannot be read as {fmt} ({str(err).strip()})") from None


@register_source("file")
def load_file(source: object) -> pd.DataFrame:
    assert isinstance(source, FileData)
    path = Path(source.path)
    frame = read_local_table(path)
    for key in ("text_column", "label_column", "split_column"):
        col = getattr(source, key)
        if col is not None and col not in frame.columns:
            raise DataError(f"'{path}': column '{col}' ({key}) not found")
    out = pd.DataFrame(
        {
            "text": frame[source.text_column].astype(str),
            "label_name": frame[source.label_column].astype(str),
        }
    )
    if source.split_column:
        out["source_split"] = frame[source.split_column].astype(str).str.lower()
    return out


def _check_image(path: Path, raw: bytes) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(raw)) as img:
            img.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DataError(f"'{path}': unreadable image ({err})") from None


@register_source("imagefolder")
def load_imagefolder(source: object) -> pd.DataFrame:
    assert isinstance(source, ImageFolderData)
    root = Path(source.path)
    rows = []
    for cls in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(cls.rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                raw = path.read_bytes()
                _check_image(path, raw)
                rows.append({"image": raw, "label_name": cls.name})
    if not rows:
        raise DataError(f"'{root}': no images in class sub-folders")
    return pd.DataFrame(rows)


def _image_bytes(value: object) -> bytes:
    if isinstance(value, dict) and value.get("bytes"):
        return bytes(value["bytes"])
    if hasattr(value, "save"):
        buf = io.BytesIO()
        value.save(buf, format="PNG")
        return buf.getvalue()
    raise DataError(f"unsupported image value of type {type(value).__name__}")


@register_source("hf-dataset")
def load_hf_dataset(source: object) -> pd.DataFrame:
    assert isinstance(source, HFDatasetData)
    import datasets

    try:
        ds = datasets.load_dataset(source.name, source.config)
    except Exception as err:  # datasets raises many kinds; report them in one line
        raise DataError(f"dataset '{source.name}': cannot be loaded ({err})") from None
    parts = []
    for split_name, role in ((source.train_split, "train"), (source.test_split, "test")):
        if split_name is None:
            continue
        if split_name not in ds:
            raise DataError(
                f"dataset '{source.name}': no split '{split_name}' (has: {', '.join(ds)})"
            )
        part = ds[split_name]
        column = source.image_column or source.text_column
        for col in (column, source.label_column):
            if col not in part.column_names:
                raise DataError(f"dataset '{source.name}': column '{col}' not found")
        labels = part[source.label_column]
        feature = part.features[source.label_column]
        names = [feature.int2str(v) for v in labels] if hasattr(feature, "int2str") else labels
        values = part[column]
        frame = pd.DataFrame({"label_name": [str(n) for n in names], "source_split": role})
        if source.image_column:
            frame["image"] = [_image_bytes(v) for v in values]
        else:
            frame["text"] = [str(v) for v in values]
        parts.append(frame)
    return pd.concat(parts, ignore_index=True)
