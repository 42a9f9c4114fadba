"""Logging set-up for rule scripts."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


def log_to(path: str | Path, level: int = logging.INFO) -> logging.Logger:
    """Send the library's log records to `path` and to stderr; return the `ptmeval` logger.
    Every rule script starts here, so this is also where a job starts watching the Snakemake
    process that started it (`ptmeval.stopping`: it stops when Snakemake is killed)."""
    from ptmeval.stopping import watch_parent

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    root = logging.getLogger()
    root.setLevel(level)
    for handler in (logging.FileHandler(path, mode="w"), logging.StreamHandler(sys.stderr)):
        handler.setFormatter(fmt)
        root.addHandler(handler)
    logging.captureWarnings(True)
    sys.excepthook = _excepthook
    watch_parent()
    return logging.getLogger("ptmeval")


def _excepthook(kind: type[BaseException], value: BaseException, tb: object) -> None:
    """User errors end in one line naming the culprit; bugs keep their traceback, in the job's
    log file as well as on stderr (the log is where Snakemake points after a failure)."""
    from ptmeval.errors import PtmevalError

    if isinstance(value, PtmevalError):
        logging.getLogger("ptmeval").error("%s", value)
        sys.stderr.write(f"ptmeval error: {value}\n")
        return
    if issubclass(kind, KeyboardInterrupt):
        logging.getLogger("ptmeval").error("interrupted")
        return
    logging.getLogger("ptmeval").error(
        "failed with an unexpected error (a bug: please report it with this log)",
        exc_info=(kind, value, tb),  # type: ignore[arg-type]
    )
