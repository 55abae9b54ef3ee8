"""What each stage trains on: seeded replay, new partitions since the champion, nothing to train."""

from __future__ import annotations

import pyarrow as pa
import pytest

from aivj_assets.registry import Registry
from aivj_assets.stages import NothingToTrain, new_partitions, replay_sample, train_incremental


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
    from aivj_assets.data.store import Store

    registry = Registry(aivj_env.models_dir)
    with pytest.raises(NothingToTrain, match="no champion yet"):
        new_partitions(aivj_env, registry)
    raw = Store(aivj_env).raw_dir
    raw.mkdir(parents=True)
    for key in ("a-1", "b-2", "c-3"):
        (raw / f"{key}.parquet").write_bytes(b"")  # only the keys matter here
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"weights")
    version = registry.register(weights, {"stage": "full", "data_partitions": ["a-1", "b-2"]})
    registry.promote(version, by="test")
    champion, new, old = new_partitions(aivj_env, registry)
    assert champion["version"] == version and new == ["c-3"] and old == ["a-1", "b-2"]
    (raw / "c-3.parquet").unlink()
    with pytest.raises(NothingToTrain, match=f"no partition arrived since champion {version}"):
        train_incremental(aivj_env, registry)


def test_partitions_without_training_rows_leave_nothing_to_train(aivj_env, tmp_path) -> None:
    from aivj_assets.data.contract import PAIR_SCHEMA
    from aivj_assets.data.store import Store
    from aivj_assets.stages import train_full

    store = Store(aivj_env)
    store.write_partition("a-1", PAIR_SCHEMA.empty_table(), {"content_hash": "a"})
    registry = Registry(aivj_env.models_dir)
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"weights")
    champion = registry.register(weights, {"stage": "full", "data_partitions": ["a-1"]})
    registry.promote(champion, by="test")
    # A file whose every row was bad is stored with no rows: the incremental stage has nothing
    # to learn from (it used to build a zero-width model and crash on the champion's weights).
    store.write_partition("b-2", PAIR_SCHEMA.empty_table(), {"content_hash": "b"})
    with pytest.raises(NothingToTrain, match=f"the 1 partitions since champion {champion} hold no training rows"):
        train_incremental(aivj_env, registry)
    with pytest.raises(NothingToTrain, match="the 2 stored partitions hold no training rows"):
        train_full(aivj_env, registry, champion)
    assert [e["version"] for e in registry.entries()] == [champion]


def test_elite_rows_in_the_refined_data_never_train_what_judges_them(aivj_env, tmp_path) -> None:
    from aivj_assets.data.contract import read_pairs
    from aivj_assets.data.split import validation_mask
    from aivj_assets.data.store import Store
    from aivj_assets.stages import _elite_digest, corpus_split, validation_rows
    from aivj_assets_tests.data.helpers import rows, write_jsonl

    path = write_jsonl(tmp_path / "refined.jsonl", rows(300, seed=5))
    table = read_pairs(path, path.read_bytes(), aivj_env, None).table
    store = Store(aivj_env)
    store.write_partition("refined-1", table, {"content_hash": "r"})
    hashes = table.column("row_hash").to_pylist()
    on_val = validation_mask(hashes, aivj_env.val_fraction)
    train_side, val_side = [i for i in range(300) if not on_val[i]], [i for i in range(300) if on_val[i]]
    before_train, before_val = corpus_split(aivj_env)
    assert (len(before_train), len(before_val)) == (len(train_side), len(val_side))
    digest = _elite_digest(aivj_env)

    # The owner hand-picked elite pairs out of the refined data: one training-side row lands in
    # the judging part, one validation-side row in the warm-up part.
    judged, warmed = hashes[train_side[0]], hashes[val_side[0]]
    elite = table.take([train_side[0], val_side[0]]).append_column("part", pa.array(["judge", "warmup"]))
    store.write_elite(elite)
    train, val = corpus_split(aivj_env)
    assert judged not in set(train.row_hash) and len(train) == len(train_side) - 1
    assert warmed not in set(val.row_hash) and len(val) == len(val_side) - 1
    assert set(validation_rows(aivj_env).row_hash) == set(val.row_hash)
    assert _elite_digest(aivj_env) != digest  # so full and incremental identities follow the elite set
