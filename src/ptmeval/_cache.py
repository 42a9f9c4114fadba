"""Light checks of the Parquet cache, run while the Snakefile is parsed (no pandas import)."""

from __future__ import annotations

import os
from pathlib import Path


def parquet_intact(path: str | Path) -> bool:
    """Cheap structural check of a Parquet file: magic bytes at both ends and a footer that fits
    (catches truncation without reading the data)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size < 12:
            return False
        with open(path, "rb") as handle:
            head = handle.read(4)
            handle.seek(size - 8)
            tail = handle.read(8)
    except OSError:
        return False
    footer = int.from_bytes(tail[:4], "little")
    return head == b"PAR1" and tail[4:] == b"PAR1" and footer + 12 <= size


def quarantine_damaged(
    results_dir: str | Path = "results", move: bool = True
) -> list[tuple[Path, Path]]:
    """Move damaged Parquet files out of the cache (to results/.damaged/) so that Snakemake
    recomputes them and only what depends on them. Nothing is deleted; with `move` False
    (a dry run) they are only named, as (damaged, where it would go)."""
    root = Path(results_dir)
    moved: list[tuple[Path, Path]] = []
    if not root.is_dir():
        return moved
    for path in root.rglob("*.parquet"):
        if ".damaged" in path.parts or path.name.startswith("."):
            continue
        if not parquet_intact(path):
            target = root / ".damaged" / path.relative_to(root)
            if move:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
            moved.append((path, target))
    return moved


# Snakemake invocations that run no job: they must not change the cache either.
READ_ONLY_FLAGS = {
    "--dry-run",
    "--dryrun",
    "--lint",
    "--summary",
    "--detailed-summary",
    "--dag",
    "--d3dag",
    "--rulegraph",
    "--filegraph",
    "--list",
    "--list-rules",
    "--list-target-rules",
    "--list-changes",
    "--list-code-changes",
    "--list-input-changes",
    "--list-params-changes",
    "--report",
    "--unlock",
    "--touch",
    "--cleanup-metadata",
}
READ_ONLY_SHORT = set("nSDlt")  # -n, -S, -D, -l, -t (also inside combined flags: -np)


def changes_nothing(argv: list[str], main_process: bool) -> bool:
    """Whether this parse of the Snakefile must leave the cache as it is: a dry run, a lint, a
    summary, a listing or a graph (no job runs), or a job's re-parse on a cluster node or in a
    job subprocess (not Snakemake's main process: the main process already checked the
    cache)."""
    if not main_process:
        return True
    for arg in argv:
        if arg.split("=")[0] in READ_ONLY_FLAGS:
            return True
        if arg.startswith("-") and not arg.startswith("--") and READ_ONLY_SHORT & set(arg[1:]):
            return True
    return False


def awaiting_recompute(results_dir: str | Path = "results") -> list[str]:
    """Files moved to results/.damaged/ that have not been recomputed yet (their original path is
    still missing), as paths under `results_dir`. Snakemake does not rerun a job only because an
    intermediate output is missing while what depends on it is up to date, so these are asked
    for explicitly: a run interrupted after the quarantine still recomputes them next time."""
    root = Path(results_dir)
    damaged = root / ".damaged"
    if not damaged.is_dir():
        return []
    return sorted(
        str(root / moved.relative_to(damaged))
        for moved in damaged.rglob("*.parquet")
        if not (root / moved.relative_to(damaged)).exists()
    )
