"""raw_pairs on a real Dagster instance: stored rows, quarantine, failures, metadata and checks."""

from __future__ import annotations

import json

import dagster as dg
import numpy as np
import pyarrow.parquet as pq

from aivj_assets.data.scan import scan_tick
from aivj_assets.data.store import Store
from aivj_assets.orchestration.assets.raw_pairs import data_files, raw_pairs
from aivj_assets.orchestration.resources import build_resources
from aivj_assets_tests.builders import rows, write_jsonl, write_parquet


def _register(settings, instance):
    plan = scan_tick(settings, 0)
    keys = [r.partition for r in plan.requests]
    instance.add_dynamic_partitions(data_files.name, keys)
    return keys


def _materialize(instance, key):
    return dg.materialize([raw_pairs], instance=instance, partition_key=key, raise_on_error=False,
                          resources=build_resources())


def _checks(result):
    return {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data
            for e in result.all_events if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION}


def test_good_and_bad_rows_stored_quarantined_with_metadata(aivj_env, dagster_instance):
    good = rows(40)
    src = write_jsonl(aivj_env.data_dir / "mixed file.jsonl", good[:37] + ["{oops", dict(good[37], label=7), "[1]"])
    before = src.read_bytes()
    [key] = _register(aivj_env, dagster_instance)
    result = _materialize(dagster_instance, key)
    assert result.success
    md = result.asset_materializations_for_node("raw_pairs")[0].metadata
    assert md["rows"].value == 37 and md["bad_rows"].value == 3
    assert md["audio_dim"].value == 32 and md["preset_dim"].value == 24
    assert md["source_path"].value == str(src) and len(md["content_hash"].value) == 64
    assert 0 < md["label_positive_share"].value < 1
    store = Store(aivj_env)
    table = pq.read_table(store.partition_path(key))
    assert table.num_rows == 37 and store.lineage() == {"audio_dim": 32, "preset_dim": 24}
    bad = [json.loads(line) for line in store.quarantine_path(key).read_text().splitlines()]
    assert [(b["file"], b["line"]) for b in bad] == [(str(src), 38), (str(src), 39), (str(src), 40)]
    assert src.read_bytes() == before  # the source is never modified
    checks = _checks(result)
    assert checks["vector_lengths_match_lineage"].passed and not checks["bad_row_share"].passed
    assert checks["label_balance"].passed and checks["feature_drift"].passed


def test_unreadable_file_fails_its_partition_and_others_flow(aivj_env, dagster_instance):
    (aivj_env.data_dir / "broken.parquet").write_bytes(b"PAR1 garbage")
    write_parquet(aivj_env.data_dir / "fine.parquet", rows(20))
    keys = _register(aivj_env, dagster_instance)
    outcomes = {k: _materialize(dagster_instance, k) for k in keys}
    broken = next(k for k in keys if k.startswith("broken"))
    fine = next(k for k in keys if k.startswith("fine"))
    assert outcomes[fine].success and not outcomes[broken].success
    failure = next(e for e in outcomes[broken].all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    assert "broken.parquet" in str(failure.event_specific_data.error) and "cannot read Parquet" in str(
        failure.event_specific_data.error)
    assert "cannot read Parquet" in Store(aivj_env).failure(broken)["reason"]
    scan_tick(aivj_env, 99)  # the next scan records both outcomes in the ledger
    ledger = [json.loads(line) for line in (aivj_env.data_dir / "processed_hashes.jsonl").read_text().splitlines()]
    assert {e["partition"]: e["status"] for e in ledger} == {broken: "failed", fine: "ingested"}


def test_a_file_moved_or_edited_before_its_run_is_read_from_its_recorded_copy(aivj_env, dagster_instance):
    data = aivj_env.data_dir
    moved = write_jsonl(data / "batch.jsonl", rows(20, seed=1))
    edited = write_jsonl(data / "other.jsonl", rows(30, seed=2))
    keys = _register(aivj_env, dagster_instance)  # both pending; their runs wait in the queue
    (data / "archive").mkdir()
    moved.rename(data / "archive" / "batch.jsonl")  # the owner tidies up
    (data / "other_copy.jsonl").write_bytes(edited.read_bytes())
    assert scan_tick(aivj_env, 99).requests == []  # both recorded as duplicates of their partitions
    write_jsonl(edited, rows(5, seed=3))  # then the original is edited in place
    for key in keys:
        result = _materialize(dagster_instance, key)
        assert result.success
        [mat] = result.asset_materializations_for_node("raw_pairs")
        rel = Store(aivj_env).partition_meta(key)["source_rel"]
        expected = "archive/batch.jsonl" if key.startswith("batch") else "other_copy.jsonl"
        assert rel == expected and mat.metadata["rows"].value == (20 if key.startswith("batch") else 30)
    # With no usable copy the error names the registered file and says why.
    gone = write_jsonl(data / "gone.jsonl", rows(4, seed=4))
    # (this scan also registers other.jsonl's new content as its own partition)
    [key] = [r.partition for r in scan_tick(aivj_env, 99).requests if r.partition.startswith("gone")]
    dagster_instance.add_dynamic_partitions(data_files.name, [key])
    gone.unlink()
    result = _materialize(dagster_instance, key)
    assert not result.success
    assert "gone.jsonl: cannot read the file" in Store(aivj_env).failure(key)["reason"]

    # A copy that holds the registered bytes but cannot be read as data: the failure is the copy's.
    garbage = data / "garbage.jsonl"
    garbage.write_bytes(b"\x00\x01 not json")
    [key] = [r.partition for r in scan_tick(aivj_env, 99).requests if r.partition.startswith("garbage")]
    dagster_instance.add_dynamic_partitions(data_files.name, [key])
    garbage.rename(data / "archive" / "garbage.jsonl")
    scan_tick(aivj_env, 99)
    assert not _materialize(dagster_instance, key).success
    failure = Store(aivj_env).failure(key)
    assert failure["source_rel"] == "archive/garbage.jsonl" and "binary content" in failure["reason"]


def test_wrong_lineage_file_fails_the_blocking_check(aivj_env, dagster_instance):
    write_jsonl(aivj_env.data_dir / "a.jsonl", rows(20))
    [first] = _register(aivj_env, dagster_instance)
    assert _materialize(dagster_instance, first).success
    write_jsonl(aivj_env.data_dir / "b.jsonl", rows(20, audio_dim=16))
    [second] = _register(aivj_env, dagster_instance)
    result = _materialize(dagster_instance, second)
    assert not result.success  # blocking: the run fails, the broken exporter is caught
    assert not _checks(result)["vector_lengths_match_lineage"].passed
    assert Store(aivj_env).partition_path(second).exists()  # materialised with 0 good rows


def test_drift_and_label_balance_warn(aivj_env, dagster_instance):
    write_jsonl(aivj_env.data_dir / "base.jsonl", rows(400, seed=1))
    [base] = _register(aivj_env, dagster_instance)
    assert _materialize(dagster_instance, base).success
    shifted = rows(400, seed=2)
    for r in shifted:
        r["audio"] = (np.asarray(r["audio"]) * 3 + 2).round(4).tolist()
        r["label"] = 1
    write_jsonl(aivj_env.data_dir / "shifted.jsonl", shifted)
    [key] = _register(aivj_env, dagster_instance)
    result = _materialize(dagster_instance, key)
    assert result.success  # warnings do not block
    checks = _checks(result)
    assert not checks["feature_drift"].passed and checks["feature_drift"].metadata["psi_mean"].value > 0.25
    assert not checks["label_balance"].passed
