"""The data contract: good rows normalised, bad rows named by line and reason, unreadable files refused."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aivj_assets.data.contract import PAIR_SCHEMA, DataFileError, read_pairs
from aivj_assets.data.split import row_hashes
from aivj_assets_tests.data.helpers import rows, write_jsonl, write_parquet


def _read(path, settings, lineage=None):
    return read_pairs(path, path.read_bytes(), settings, lineage)


def test_jsonl_and_parquet_normalise_to_the_same_rows(aivj_env, tmp_path):
    recs = rows(50)
    p = _read(write_parquet(tmp_path / "a.parquet", recs), aivj_env)
    recs[3]["label"] = bool(recs[3]["label"])  # booleans are labels too
    j = _read(write_jsonl(tmp_path / "a.jsonl", recs), aivj_env)
    assert j.table.schema.equals(PAIR_SCHEMA) and p.table.schema.equals(PAIR_SCHEMA)
    assert j.rows == p.rows == 50 and not j.bad and not p.bad
    assert j.table.column("row_hash").to_pylist() == p.table.column("row_hash").to_pylist()
    assert j.table.column("label").to_pylist()[3] == int(recs[3]["label"])
    assert j.table.column("weight").to_pylist() == [1.0] * 50
    assert (j.audio_dim, j.preset_dim) == (32, 24)
    expected = row_hashes(np.array([r["audio"] for r in recs], np.float32),
                          np.array([r["preset"] for r in recs], np.float32), np.array([r["label"] for r in recs]))
    assert j.table.column("row_hash").to_pylist() == expected


def test_bad_rows_are_named_by_line_and_reason_and_good_rows_kept(aivj_env, tmp_path):
    good = rows(6)
    short = dict(good[1], audio=good[1]["audio"][:31])
    nan_row = '{"audio": [NaN' + ", 0.1" * 31 + '], "preset": ' + str(good[2]["preset"]) + ', "label": 1}'
    records = [good[0], "{not json", short, dict(good[3], label=2), {"audio": good[4]["audio"], "label": 0},
               nan_row, good[5], "", good[0]]
    path = write_jsonl(tmp_path / "mixed.jsonl", records)
    out = _read(path, aivj_env, {"audio_dim": 32, "preset_dim": 24})
    reasons = {b.line: b.reason for b in out.bad}
    assert set(reasons) == {2, 3, 4, 5, 6}
    assert reasons[2].startswith("malformed JSON")
    assert "audio has 31 values, lineage expects 32" in reasons[3]
    assert "label must be 0/1" in reasons[4]
    assert "missing field 'preset'" in reasons[5]
    assert "NaN" in reasons[6]
    assert all(b.file == str(path) for b in out.bad)
    assert out.rows == 3 and out.wrong_length_rows == 1


def test_vectorised_path_names_real_lines_past_blank_lines(aivj_env, tmp_path):
    good = rows(4)
    path = write_jsonl(tmp_path / "blank.jsonl", [good[0], "", good[1], dict(good[2], label=5), good[3]])
    out = _read(path, aivj_env)
    assert [(b.line, "label" in b.reason) for b in out.bad] == [(4, True)]
    assert out.rows == 3


def test_parquet_rows_with_nan_and_wrong_length_are_kept_aside(aivj_env, tmp_path):
    recs = rows(5)
    recs[1]["audio"][0] = math.nan
    recs[2]["preset"] = recs[2]["preset"][:20]
    out = _read(write_parquet(tmp_path / "p.parquet", recs), aivj_env, {"audio_dim": 32, "preset_dim": 24})
    assert [b.line for b in out.bad] == [2, 3] and out.rows == 3


@pytest.mark.parametrize(
    "name,content,reason",
    [
        ("empty.jsonl", b"", "empty"),
        ("blank.parquet", b"\n\n", "empty"),
        ("garbage.jsonl", bytes(range(256)) * 4, "binary"),
        ("garbage.parquet", b"PAR1 this is not parquet at all", "cannot read Parquet"),
        ("words.jsonl", b"hello\nworld\n", "no line is a JSON object"),
    ],
)
def test_unreadable_files_fail_with_file_and_reason(aivj_env, tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataFileError) as err:
        _read(path, aivj_env)
    assert str(path) in str(err.value) and reason in str(err.value)
