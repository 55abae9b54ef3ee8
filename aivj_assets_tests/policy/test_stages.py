"""What each stage trains on: seeded replay, new partitions since the champion, nothing to train."""

from __future__ import annotations

import pyarrow as pa
import pytest

from aivj_assets.policy.recipes import NothingToTrain, incremental_inputs, new_partitions
from aivj_assets.policy.rows import replay_sample
from aivj_assets.policy.stages import train_incremental
from aivj_assets.registry import Registry


def _table(n: int) -> pa.Table:
    return pa.table({"row_hash": [f"{i:016x}" for i in range(n)]})


def test_replay_sample_is_seeded_sized_by_ratio_and_capped(aivj_env) -> None:
    old = _table(1000)
    a = replay_sample(aivj_env, old, 100, 1.0, "manifest-a")
    assert a.num_rows == 100 and len(set(a.column("row_hash").to_pylist())) == 100
    assert a.equals(replay_sample(aivj_env, old, 100, 1.0, "manifest-a"))  # same data, same sample
    assert not a.equals(replay_sample(aivj_env, old, 100, 1.0, "manifest-b"))
    assert not a.equals(replay_sample(aivj_env.replace(seed=1), old, 100, 1.0, "manifest-a"))
    assert replay_sample(aivj_env, old, 100, 2.5, "m").num_rows == 250
    assert replay_sample(aivj_env, old, 800, 2.0, "m").num_rows == 1000  # never more than there is
    assert replay_sample(aivj_env, old, 100, 0.0, "m").num_rows == 0


def test_new_partitions_follow_the_champions_manifest(aivj_env, tmp_path) -> None:
    from aivj_assets.data.contract import PAIR_SCHEMA
    from aivj_assets.data.store import Store

    assert new_partitions({"c", "a", "b"}, ["a"]) == ["b", "c"]
    assert new_partitions(["a"], ["a", "gone"]) == []
    registry = Registry(aivj_env.models_dir)
    with pytest.raises(NothingToTrain, match="no champion yet"):
        incremental_inputs(aivj_env, registry)
    store = Store(aivj_env)
    for key in ("a-1", "b-2", "c-3"):
        store.write_partition(key, PAIR_SCHEMA.empty_table(), {"content_hash": key})
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"weights")
    version = registry.register(weights, {"stage": "full", "data_partitions": ["a-1", "b-2"]})
    registry.promote(version, by="test")
    inputs = incremental_inputs(aivj_env, registry)
    assert inputs.champion == version and inputs.new_keys == ["c-3"] and inputs.old_keys == ["a-1", "b-2"]
    store.partition_path("c-3").unlink()
    with pytest.raises(NothingToTrain, match=f"no partition arrived since champion {version}"):
        train_incremental(aivj_env, registry)


def test_partitions_without_training_rows_leave_nothing_to_train(aivj_env, tmp_path) -> None:
    from aivj_assets.data.contract import PAIR_SCHEMA
    from aivj_assets.data.store import Store
    from aivj_assets.policy.stages import train_full

    store = Store(aivj_env)
    store.write_partition("a-1", PAIR_SCHEMA.empty_table(), {"content_hash": "a"})
    registry = Registry(aivj_env.models_dir)
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"weights")
    champion = registry.register(weights, {"stage": "full", "data_partitions": ["a-1"]})
    registry.promote(champion, by="test")
    # A file whose every row was bad is stored with no rows: the incremental stage has nothing
    # to learn from (not a zero-width model that crashes on the champion's weights).
    store.write_partition("b-2", PAIR_SCHEMA.empty_table(), {"content_hash": "b"})
    with pytest.raises(NothingToTrain, match=f"the 1 partitions since champion {champion} hold no training rows"):
        train_incremental(aivj_env, registry)
    with pytest.raises(NothingToTrain, match="the 2 stored partitions hold no training rows"):
        train_full(aivj_env, registry, champion)
    assert [e["version"] for e in registry.entries()] == [champion]


def test_elite_rows_in_the_refined_data_never_train_what_judges_them(aivj_env, tmp_path) -> None:
    from aivj_assets.data.contract import read_pairs
    from aivj_assets.data.parts import elite_digest
    from aivj_assets.data.split import GATE, SELECTION, TRAIN, corpus_part
    from aivj_assets.data.store import Store
    from aivj_assets.policy.rows import gate_rows, selection_rows, training_split
    from aivj_assets_tests.builders import rows, write_jsonl

    path = write_jsonl(tmp_path / "refined.jsonl", rows(300, seed=5))
    table = read_pairs(path, path.read_bytes(), aivj_env, None).table
    store = Store(aivj_env)
    store.write_partition("refined-1", table, {"content_hash": "r"})
    hashes = table.column("row_hash").to_pylist()
    part = corpus_part(hashes, aivj_env.selection_fraction, aivj_env.gate_fraction)
    sides = {p: [i for i in range(300) if part[i] == p] for p in (TRAIN, SELECTION, GATE)}
    before_train, before_selection = training_split(aivj_env)
    assert (len(before_train), len(before_selection)) == (len(sides[TRAIN]), len(sides[SELECTION]))
    assert len(gate_rows(aivj_env).rows) == len(sides[GATE])
    digest = elite_digest(store)

    # The owner hand-picked elite pairs out of the refined data: one training-side row lands in
    # the judging part, one selection-side row and one gate-side row in the warm-up part.
    judged, warmed, warmed_gate = hashes[sides[TRAIN][0]], hashes[sides[SELECTION][0]], hashes[sides[GATE][0]]
    elite = table.take([sides[TRAIN][0], sides[SELECTION][0], sides[GATE][0]]).append_column(
        "part", pa.array(["judge", "warmup", "warmup"]))
    store.write_elite(elite)
    train, selection = training_split(aivj_env)
    assert judged not in set(train.row_hash) and len(train) == len(sides[TRAIN]) - 1
    assert warmed not in set(selection.row_hash) and len(selection) == len(sides[SELECTION]) - 1
    assert set(selection_rows(aivj_env).row_hash) == set(selection.row_hash)
    gate = gate_rows(aivj_env)
    assert warmed_gate not in set(gate.rows.row_hash) and len(gate.rows) == len(sides[GATE]) - 1
    assert gate.sources == ["refined-1"] and (gate.group == 0).all()
    assert elite_digest(store) != digest  # so full and incremental identities follow the elite set
