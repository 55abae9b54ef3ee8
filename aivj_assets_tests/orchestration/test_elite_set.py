"""elite_set: validated, deduplicated, split deterministically into warm-up and judging parts."""

from __future__ import annotations

import dagster as dg
import pytest

from aivj_assets.data.split import judge_mask
from aivj_assets.data.store import Store
from aivj_assets.orchestration.assets.elite_set import elite_set
from aivj_assets_tests.builders import rows, write_jsonl, write_parquet


def test_elite_set_is_split_by_row_hash_with_sizes_in_metadata(aivj_env, dagster_instance):
    recs = rows(60, seed=5)
    write_jsonl(aivj_env.elite_path / "a.jsonl", recs[:40] + ["{bad"])
    write_parquet(aivj_env.elite_path / "more" / "b.parquet", recs[30:])  # 10 rows overlap
    result = dg.materialize([elite_set], instance=dagster_instance)
    assert result.success
    md = result.asset_materializations_for_node("elite_set")[0].metadata
    assert md["rows"].value == 60 and md["duplicate_rows"].value == 10 and md["bad_rows"].value == 1
    assert md["warmup_rows"].value + md["judge_rows"].value == 60 and md["judge_rows"].value > 0
    table = Store(aivj_env).elite_table()
    hashes = table.column("row_hash").to_pylist()
    expected = ["judge" if j else "warmup" for j in judge_mask(hashes, aivj_env.elite_judge_fraction)]
    assert table.column("part").to_pylist() == expected
    # Deterministic: the same rows in another order land on the same sides.
    write_jsonl(aivj_env.elite_path / "a.jsonl", list(reversed(recs[:40])))
    assert dg.materialize([elite_set], instance=dagster_instance).success
    again = Store(aivj_env).elite_table()
    assert dict(zip(again.column("row_hash").to_pylist(), again.column("part").to_pylist(), strict=True)) == dict(
        zip(hashes, expected, strict=True))


def test_judge_fraction_is_configurable(aivj_env, dagster_instance, monkeypatch):
    write_jsonl(aivj_env.elite_path / "a.jsonl", rows(200, seed=6))
    monkeypatch.setenv("AIVJ_ELITE_JUDGE_FRACTION", "0.25")
    result = dg.materialize([elite_set], instance=dagster_instance)
    md = result.asset_materializations_for_node("elite_set")[0].metadata
    assert 30 <= md["judge_rows"].value <= 70 and md["judge_fraction"].value == 0.25


def test_missing_elite_folder_fails_with_its_path(aivj_env, dagster_instance):
    with pytest.raises(dg.Failure, match="AIVJ_FINAL_ELITE"):
        dg.materialize([elite_set], instance=dagster_instance)
