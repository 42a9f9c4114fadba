"""A stage's code version covers the library modules its script really imports (lazy imports,
registry strings and `python -m` targets included), never a hand-kept list."""

import textwrap

from ptmeval.workflow import PACKAGE_DIR, SCRIPTS_DIR, code_version, import_closure


def write(path, text=""):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def fake_package(root):
    pkg = root / "ptmeval"
    write(pkg / "__init__.py")
    write(
        pkg / "a.py",
        """
        from . import e

        def f():
            from ptmeval import b  # lazy
            return b
        """,
    )
    write(pkg / "b.py", 'MODULE = "ptmeval.sub.c"  # a registry entry, imported by name\n')
    write(pkg / "sub" / "__init__.py")
    write(pkg / "sub" / "c.py")
    write(pkg / "e.py")
    write(pkg / "unused.py")
    write(root / "scripts" / "stage.py", "from ptmeval.a import f\n")
    return pkg


def test_the_closure_follows_lazy_relative_and_named_imports(tmp_path):
    pkg = fake_package(tmp_path)
    closure = import_closure(tmp_path / "scripts" / "stage.py", pkg)
    names = sorted(str(p.relative_to(pkg)) for p in closure)
    assert names == ["__init__.py", "a.py", "b.py", "e.py", "sub/__init__.py", "sub/c.py"]


def test_a_change_anywhere_in_the_closure_changes_the_version(tmp_path):
    pkg = fake_package(tmp_path)
    scripts = tmp_path / "scripts"
    before = code_version("stage", scripts, pkg)
    (pkg / "unused.py").write_text("x = 1\n")
    code_version.cache_clear()
    assert code_version("stage", scripts, pkg) == before
    (pkg / "sub" / "c.py").write_text("x = 1\n")
    code_version.cache_clear()
    assert code_version("stage", scripts, pkg) != before


def test_the_real_stages_cover_the_modules_they_use():
    def closure(stage):
        return {
            str(p.relative_to(PACKAGE_DIR)) for p in import_closure(SCRIPTS_DIR / f"{stage}.py")
        }

    # what the hand-kept list missed: the report's figures, scorecard and table helpers; the
    # estimate's job enumeration, subsets and text adapter; the aggregate's io and registry
    assert {"figures.py", "scorecard.py", "io.py", "decision.py"} <= closure("render_report")
    assert {"workflow.py", "subsample.py", "adapters/hf_text.py"} <= closure("estimate_cost")
    assert {"io.py", "adapters/__init__.py"} <= closure("aggregate")
    assert {"runtime.py", "adapters/tfidf.py"} <= closure("measure_runtime")
    assert "training/ds_engine.py" in closure("finetune")  # launched as `python -m`
    assert "report.py" not in closure("finetune")
