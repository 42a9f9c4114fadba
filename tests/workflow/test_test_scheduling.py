"""How `make test` shares the suite between its two pytest-xdist workers (tests/conftest.py)."""

from tests.conftest import REPO, e2e_run_readers, xdist_scope


def test_modules_stay_whole_and_the_e2e_runs_readers_share_one_worker():
    readers = e2e_run_readers(REPO)
    # found in the modules' source: the e2e tests take the run through their own fixture
    assert readers == {
        f"tests/e2e/test_{name}.py" for name in ("e2e", "browser", "fault_injection", "slurm")
    }
    scope = {
        nodeid: xdist_scope(nodeid, readers)
        for nodeid in (
            "tests/e2e/test_e2e.py::test_report_rendered",
            "tests/e2e/test_slurm.py::test_results_equal_the_local_run",
            "tests/e2e/test_methods.py::test_a",
            "tests/unit/test_io.py::test_a",
            "tests/unit/test_io.py::test_b[1-2]",
            "tests/unit/test_logs.py::test_a",
        )
    }
    assert len(set(scope.values())) == 4
    assert (
        scope["tests/e2e/test_e2e.py::test_report_rendered"]
        == scope["tests/e2e/test_slurm.py::test_results_equal_the_local_run"]
    )
    assert scope["tests/unit/test_io.py::test_a"] == scope["tests/unit/test_io.py::test_b[1-2]"]
