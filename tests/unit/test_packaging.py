"""`pip install .` gives a working ptmeval: every third-party module the library imports is a
declared dependency of the package (or of one of its extras)."""

import ast
import os
import re
import sys
import tomllib
from importlib import metadata

from tests.conftest import REPO


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_library_import_is_a_declared_dependency():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"]]
    for extra in project.get("optional-dependencies", {}).values():
        declared += extra
    names = {normalise(re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0]) for d in declared}
    distributions = metadata.packages_distributions()
    missing = {}
    for path in sorted((REPO / "src" / "ptmeval").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top == "ptmeval" or top in sys.stdlib_module_names:
                    continue
                dists = {normalise(d) for d in distributions.get(top, [top])}
                if not dists & names:
                    missing.setdefault(top, path.name)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def _pins(lines: list[str]) -> dict[str, str]:
    """name -> version ('' when unpinned) of requirement lines, comments dropped."""
    out = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            name, _, version = line.partition("==")
            out[normalise(name)] = version.strip()
    return out


def test_the_rules_conda_environment_matches_the_requirements():
    """envs/ptmeval.yaml (every rule's `conda:` environment) installs what the package needs, at
    the versions requirements.txt pins: a new dependency cannot be added to one and forgotten
    in the other."""
    import yaml

    env = yaml.safe_load((REPO / "envs" / "ptmeval.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    in_env = _pins(pip)
    required = _pins((REPO / "requirements.txt").read_text().split("# dev gates")[0].splitlines())
    # Snakemake, its executor plugins and the JSON schema check of the config run the workflow,
    # not the jobs
    required = {
        k: v for k, v in required.items() if not k.startswith("snakemake") and k != "jsonschema"
    }
    # DeepSpeed is installed after torch by the environment's post-deploy script (`make setup`
    # runs the same script), which Snakemake finds by the environment file's name
    post_deploy = REPO / "envs" / "ptmeval.post-deploy.sh"
    assert post_deploy.is_file()
    in_env.update(_pins(re.findall(r"\bdeepspeed==[\w.]+", post_deploy.read_text())))
    assert "deepspeed" in in_env
    mismatched = {
        name: (version, in_env.get(name))
        for name, version in required.items()
        if in_env.get(name) != version
    }
    assert not mismatched, f"requirements.txt vs envs/ptmeval.yaml: {mismatched}"
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"]["default-data"]]
    names = {normalise(re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0]) for d in declared}
    assert names - {"snakemake"} <= set(in_env), names - {"snakemake"} - set(in_env)


def test_pip_install_gives_a_package_that_imports_without_the_checkout(tmp_path):
    """`pip install .` (here into a target folder, the dependencies being this environment's)
    builds a package that holds every module and its data (report templates, py.typed): each
    module imports from the installed copy, run from outside the repository."""
    import shutil
    import subprocess

    source = tmp_path / "source"  # a copy: the build writes build/ and *.egg-info beside it
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(REPO / "src", source / "src", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    target = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
        + ["--disable-pip-version-check", "--target", str(target), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    modules = sorted(
        ".".join(p.relative_to(REPO / "src").with_suffix("").parts).removesuffix(".__init__")
        for p in (REPO / "src" / "ptmeval").rglob("*.py")
        if p.name != "__main__.py"
    )
    script = (
        "import importlib, pathlib, sys\n"
        f"for name in {modules!r}:\n"
        "    module = importlib.import_module(name)\n"
        f"    assert module.__file__.startswith({str(target)!r}), module.__file__\n"
        "import ptmeval\n"
        "root = pathlib.Path(ptmeval.__file__).parent\n"
        "assert (root / 'templates' / 'report.html.j2').is_file()\n"
        "assert (root / 'py.typed').is_file()\n"
        "print(len(sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    run = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]


def test_the_post_deploy_script_outside_a_checkout_says_so_and_installs_nothing(tmp_path):
    """Snakemake copies a post-deploy script of a workflow from a remote source to a temporary
    file: with no checkout beside it, the script stops before pip, naming what it looked for."""
    import shutil
    import subprocess

    (tmp_path / "envs").mkdir()
    script = shutil.copy(REPO / "envs" / "ptmeval.post-deploy.sh", tmp_path / "envs")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    marker = tmp_path / "python-ran"
    (bin_dir / "python").write_text(f"#!/bin/sh\ntouch {marker}\n")  # records any pip call
    (bin_dir / "python").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        ["bash", str(script)], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 1
    assert "no ptmeval checkout" in result.stderr and "pyproject.toml" in result.stderr
    assert not marker.exists()
