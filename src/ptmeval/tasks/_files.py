"""Task sources on the user's disk (CSV/TSV/Parquet/JSONL, ImageFolder) and `datasets` by name."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from ptmeval._columns import encoding_message, table_format
from ptmeval.config import FileData, HFDatasetData, ImageFolderData
from ptmeval.errors import DataError
from ptmeval.tasks import register_source

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


SPLIT_VALUES = ("train", "test")  # the validation split is drawn from the training rows


def read_local_table(path: Path, encoding: str = "utf-8") -> pd.DataFrame:
    """Read a table; a malformed row or a wrong encoding is reported with the file."""
    fmt = table_format(path)
    try:
        if fmt == "parquet":
            return pd.read_parquet(path)
        if fmt == "jsonl":
            return pd.read_json(path, lines=True, encoding=encoding)
        return pd.read_csv(
            path, sep="\t" if fmt == "tsv" else ",", keep_default_na=False, encoding=encoding
        )
    except UnicodeDecodeError as err:
        raise DataError(encoding_message(path, encoding, err)) from None
    except (pd.errors.ParserError, ValueError, OSError) as err:
        raise DataError(f"'{path}': cannot be read as {fmt} ({str(err).strip()})") from None


def _rows(mask: pd.Series, fmt: str) -> str:
    """'3 rows (first: line 5)': where the flagged rows are (a CSV line counts the header)."""
    first = int(mask.to_numpy().nonzero()[0][0])
    where = f"line {first + 2}" if fmt in ("csv", "tsv") else f"row {first + 1}"
    return f"{int(mask.sum())} row{'s' * int(mask.sum() != 1)} (first: {where})"


@register_source("file")
def load_file(source: object) -> pd.DataFrame:
    assert isinstance(source, FileData)
    path = Path(source.path)
    fmt = table_format(path)
    frame = read_local_table(path, source.encoding)
    for key in ("text_column", "label_column", "split_column"):
        col = getattr(source, key)
        if col is not None and col not in frame.columns:
            raise DataError(f"'{path}': column '{col}' ({key}) not found")
    if frame.empty:
        raise DataError(f"'{path}': no data rows (a header only?)")
    for key in ("text_column", "label_column"):
        col = getattr(source, key)
        empty = frame[col].isna() | (frame[col].astype(str).str.strip() == "")
        if empty.any():
            raise DataError(
                f"'{path}': column '{col}' ({key}) is empty in {_rows(empty, fmt)}; "
                "fill or remove those rows"
            )
    out = pd.DataFrame(
        {
            "text": frame[source.text_column].astype(str),
            "label_name": frame[source.label_column].astype(str).str.strip(),
        }
    )
    if source.split_column:
        split = frame[source.split_column].astype(str).str.strip().str.lower()
        unknown = ~split.isin(SPLIT_VALUES)
        if unknown.any():
            values = ", ".join(f"'{v}'" for v in sorted(set(split[unknown]))[:5])
            raise DataError(
                f"'{path}': column '{source.split_column}' (split_column) has {values} in "
                f"{_rows(unknown, fmt)}; allowed: {', '.join(SPLIT_VALUES)} (the validation "
                "split is drawn from the training rows)"
            )
        out["source_split"] = split
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
        nested = sorted(
            p.parent
            for p in cls.rglob("*")
            if p.suffix.lower() in IMAGE_SUFFIXES and p.parent != cls
        )
        if nested:
            raise DataError(
                f"'{root}': class folder '{cls.name}' holds images in sub-folder "
                f"'{nested[0].relative_to(root)}'; the layout is one folder per class with the "
                "images directly inside (for a train/ + test/ layout, point path at one of them)"
            )
        for path in sorted(cls.iterdir()):
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
