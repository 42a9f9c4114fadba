"""What tests need of the system: Debian packages (Chromium, SLURM), which the test command's
set-up installs (`make test`, target `system-packages`: root with apt-get); and the process
table (/proc), to see which processes live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def require_debian_packages(binaries: dict[str, str], packages: list[str]) -> None:
    """Fail, naming what to install, unless every binary (name -> path) exists. The test
    command's set-up installs them (`make system-packages`); a test does not skip for want of
    them: a skipped test is not a passing one."""
    missing = [path for path in binaries.values() if not os.path.exists(path)]
    if missing:
        pytest.fail(
            f"needs the Debian packages {', '.join(packages)} (missing {', '.join(missing)}): "
            "`make test` installs them as root (target system-packages), or apt-get install them"
        )


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for a parent (or an init) to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    from ptmeval.stopping import children_by_parent

    return children_by_parent().get(pid, [])
