"""What tests need of the system: Debian packages (Chromium, SLURM), installed on demand where
the machine allows it (root with apt-get), otherwise the test is skipped with the reason; and
the process table (/proc), to see which processes live."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def ensure_debian_packages(binaries: dict[str, str], packages: list[str]) -> None:
    """Make sure every binary (name -> path) exists, installing `packages` with apt-get if not."""
    missing = [path for path in binaries.values() if not os.path.exists(path)]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(
            f"needs {', '.join(packages)} (missing {', '.join(missing)}); not root with apt-get"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
    ):
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        if result.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} failed: {result.stderr[-2000:]}")
    still = [path for path in binaries.values() if not os.path.exists(path)]
    if still:
        pytest.fail(f"installed {packages} but {still} are still missing")


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
