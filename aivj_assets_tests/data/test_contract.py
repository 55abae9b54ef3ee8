"""The data contract: good rows normalised, bad rows named by line and reason, unreadable files refused."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aivj_assets.data.contract import PAIR_SCHEMA, DataFileError, read_pairs
from aivj_assets.data.split import row_hashes
from aivj_assets_tests.builders import rows, write_jsonl, write_parquet


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


@pytest.mark.parametrize(("field", "value", "reason"), [
    ("audio", ["0.5"] * 32, "audio must be a list of numbers"),
    ("preset", [True] * 24, "preset must be a list of numbers"),
    ("audio", [], "audio has no values"),
    ("weight", "0.5", "weight must be a finite number >= 0"),
    ("weight", True, "weight must be a finite number >= 0"),
    ("pair_id", 1.5, "pair_id must be a string"),
])
def test_a_row_is_judged_the_same_whatever_its_neighbours(aivj_env, tmp_path, field, value, reason):
    # Every line alike lets pyarrow type the whole column (and a cast would take strings and
    # booleans for numbers); one good line among them sends the file line by line.
    good = rows(4)
    alike = [dict(r, **{field: value}) for r in good[:3]]
    for name, records in (("alike", alike), ("mixed", [*alike, good[3]])):
        out = _read(write_jsonl(tmp_path / f"{name}.jsonl", records), aivj_env, {"audio_dim": 32, "preset_dim": 24})
        assert [(b.line, b.reason) for b in out.bad] == [(i, reason) for i in (1, 2, 3)], name
        assert out.rows == len(records) - 3


def test_empty_vectors_do_not_fix_a_lineage(aivj_env, tmp_path):
    out = _read(write_jsonl(tmp_path / "empty.jsonl", [dict(r, audio=[], preset=[]) for r in rows(3)]), aivj_env)
    assert out.rows == 0 and out.audio_dim is None and [b.reason for b in out.bad] == ["audio has no values"] * 3


def test_numbers_json_can_hold_but_float32_cannot_are_bad_rows_not_crashes(aivj_env, tmp_path):
    good = rows(3)
    big = "9" * 400  # beyond float64: math.isfinite raises OverflowError
    records = [good[0], "{oops",  # one malformed line sends the file line by line
               f'{{"audio": [{big}' + ", 0.1" * 31 + f'], "preset": {good[1]["preset"]}, "label": 1}}',
               f'{{"audio": {good[1]["audio"]}, "preset": {good[1]["preset"]}, "label": 1, "weight": {big}}}',
               f'{{"audio": [{"9" * 5000}], "preset": [0.1], "label": 1}}',  # past Python's int digit limit
               '{"audio": ' + "[" * 100_000 + "]" * 100_000 + "}",  # nesting past the recursion limit
               dict(good[2], audio=[1e39] + good[2]["audio"][1:]),  # a float64, Inf as float32
               good[2]]
    out = _read(write_jsonl(tmp_path / "odd.jsonl", records), aivj_env, {"audio_dim": 32, "preset_dim": 24})
    reasons = {b.line: b.reason for b in out.bad}
    assert sorted(reasons) == [2, 3, 4, 5, 6, 7]
    assert reasons[3] == reasons[7] == "audio has NaN, Inf or null values"
    assert reasons[4] == "weight must be a finite number >= 0"
    assert reasons[5].startswith("malformed JSON") and reasons[6].startswith("malformed JSON")
    assert out.rows == 2 and np.isfinite(out.audio).all()


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


def test_parquet_columns_are_cast_where_json_lines_would_go_line_by_line(aivj_env, tmp_path):
    # Parquet has no lines and one type per column: pandas writes a category pair_id as a
    # dictionary, integer ids with a gap as floats, a boolean weight as bool. They still ingest.
    import pandas as pd

    recs = rows(20)
    frame = pd.DataFrame({"audio": [r["audio"] for r in recs], "preset": [r["preset"] for r in recs],
                          "label": [r["label"] for r in recs], "weight": [True] * 20,
                          "pair_id": pd.Categorical([f"p{i % 3}" for i in range(20)])})
    frame.to_parquet(tmp_path / "category.parquet")
    out = _read(tmp_path / "category.parquet", aivj_env)
    assert out.rows == 20 and not out.bad and out.table.column("pair_id").to_pylist()[:3] == ["p0", "p1", "p2"]
    frame.assign(pair_id=[float(i) if i % 5 else None for i in range(20)]).to_parquet(tmp_path / "gaps.parquet")
    assert _read(tmp_path / "gaps.parquet", aivj_env).rows == 20
