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
