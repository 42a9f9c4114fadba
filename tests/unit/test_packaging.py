"""`pip install .` gives a working ptmeval: every third-party module the library imports is a
declared dependency of the package (or of one of its extras)."""

import ast
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
