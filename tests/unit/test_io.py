import pandas as pd
import pytest

from ptmeval.errors import DataError
from ptmeval.io import read_provenance, read_table, write_table


def test_round_trip_with_provenance(tmp_path):
    frame = pd.DataFrame({"model": ["a", "b"], "value": [0.5, 0.75]})
    path = write_table(frame, tmp_path / "sub" / "t.parquet", params={"seed": 1})
    pd.testing.assert_frame_equal(read_table(path), frame)
    prov = read_provenance(path)
    assert prov["params"] == {"seed": 1}
    assert prov["ptmeval_version"] and prov["torch_version"] and prov["hardware"]["cpu_count"]
    assert len(prov["params_hash"]) == 16
    assert [p.name for p in path.parent.iterdir()] == ["t.parquet"]  # no temporary left over


def test_truncated_file_is_named(tmp_path):
    path = write_table(pd.DataFrame({"x": range(100)}), tmp_path / "t.parquet")
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(DataError, match=r"t.parquet': unreadable Parquet"):
        read_table(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match="cache file is missing"):
        read_table(tmp_path / "nope.parquet")


def test_damaged_table_is_moved_aside_and_asked_for_until_recomputed(tmp_path):
    from ptmeval._cache import awaiting_recompute, parquet_intact, quarantine_damaged

    results = tmp_path / "results"
    good = results / "a" / "good.parquet"
    bad = results / "a" / "b" / "bad.parquet"
    write_table(pd.DataFrame({"x": [1, 2, 3]}), good)
    write_table(pd.DataFrame({"x": [1, 2, 3]}), bad)
    bad.write_bytes(bad.read_bytes()[:-20])  # truncated: the footer is gone
    assert parquet_intact(good) and not parquet_intact(bad)
    moved = quarantine_damaged(results)
    assert moved == [(bad, results / ".damaged" / "a" / "b" / "bad.parquet")]
    assert moved[0][1].exists() and good.exists() and not bad.exists()
    assert awaiting_recompute(results) == [str(bad)]
    assert quarantine_damaged(results) == []  # the quarantine itself is never re-examined
    write_table(pd.DataFrame({"x": [1, 2, 3]}), bad)  # recomputed
    assert awaiting_recompute(results) == []


def test_a_dry_run_lint_or_job_reparse_leaves_the_cache_as_it_is(tmp_path):
    from ptmeval._cache import changes_nothing, quarantine_damaged

    for argv in (["-n"], ["-np", "--cores", "2"], ["--dry-run"], ["--lint"], ["-pn"]):
        assert changes_nothing(argv, main_process=True), argv
    assert not changes_nothing(["--cores", "2", "-p", "--configfile", "my.yaml"], True)
    assert changes_nothing(["--cores", "2"], main_process=False)  # a job on a cluster node
    results = tmp_path / "results"
    bad = results / "a" / "bad.parquet"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"PAR1 truncated")
    named = quarantine_damaged(results, move=False)
    assert named == [(bad, results / ".damaged" / "a" / "bad.parquet")] and bad.exists()


def test_machines_come_from_the_tables_provenance(tmp_path):
    """The report's "where the results were computed" reads each job's stamp, not the machine
    that renders it: two tables from here, one stamped on another node."""
    import json
    import platform

    import pyarrow as pa
    import pyarrow.parquet as pq

    from ptmeval.aggregate import machines
    from ptmeval.io import PROVENANCE_KEY, provenance

    frame = pd.DataFrame({"a": [1]})
    here = [
        write_table(frame, tmp_path / "results" / stage / "x.parquet")
        for stage in ("finetune", "evaluate")
    ]
    stamp = provenance()
    stamp["hardware"] = {**stamp["hardware"], "host": "node-7", "gpu": "H200"}
    table = pa.Table.from_pandas(frame)
    table = table.replace_schema_metadata({PROVENANCE_KEY: json.dumps(stamp).encode()})
    there = tmp_path / "results" / "finetune" / "y.parquet"
    pq.write_table(table, there)
    found = machines([*here, there]).set_index("host")
    assert found.loc[platform.node(), "tables"] == 2
    assert found.loc[platform.node(), "stages"] == "evaluate, finetune"
    assert found.loc["node-7", "gpu"] == "H200" and found.loc["node-7", "tables"] == 1
    assert machines([]).empty
