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
