"""Debian packages some tests need (Chromium, SLURM): installed on demand where the machine
allows it (root with apt-get), otherwise the test is skipped with the reason."""

from __future__ import annotations

import os
import shutil
import subprocess

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
