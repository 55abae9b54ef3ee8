"""The store's partition files: row-bytes vector columns on disk, PAIR_SCHEMA rows back, one layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aivj_assets.data.contract import PAIR_SCHEMA, build_table, read_pairs
from aivj_assets.data.partition_file import META_KEY, file_table
from aivj_assets.data.store import Store
from aivj_assets_tests.builders import rows, write_jsonl


def _table(n: int = 40, seed: int = 0) -> pa.Table:
    recs = rows(n, seed=seed)
    ids = [None if i % 3 == 0 else f"id-{i}" for i in range(n)]
    return build_table(np.array([r["audio"] for r in recs], np.float32), np.array([r["preset"] for r in recs], np.float32),
                       np.array([r["label"] for r in recs]), np.linspace(0.5, 2.0, n, dtype=np.float32), ids)


def _store_with_summary(store: Store, key: str, summary: dict | None) -> None:
    """Store a small partition whose footer holds ``summary``, and cache it, as an ingest does."""
    store.commit_partition(key, store.stage_partition(key, file_table(_table(5), {"k": key}), lambda: summary))
    if summary is not None:
        store.write_summary(key, summary)


def test_a_partition_reads_back_as_the_rows_written(aivj_env):
    store = Store(aivj_env)
    table = _table()
    store.write_partition("k-1", table, {"content_hash": "abc", "rows": 40})
    back = store.read_partitions(["k-1"])
    assert back.schema.equals(PAIR_SCHEMA) and back.equals(table)
    meta = store.partition_meta("k-1")
    assert meta == {"content_hash": "abc", "rows": 40, "file_id": meta["file_id"]} and len(meta["file_id"]) == 32
    on_disk = pq.read_table(store.partition_path("k-1"))
    # Each row's vector as its float32 bytes, in a required column; only pair_id may be null.
    # The row hashes are not a column of the file: the read computed them (they equal
    # build_table's, above) and cached them beside it.
    assert on_disk.column_names == ["audio", "preset", "label", "weight", "pair_id"]
    assert on_disk.schema.field("audio").type == pa.binary(4 * 32) and not on_disk.schema.field("audio").nullable
    assert on_disk.schema.field("preset").type == pa.binary(4 * 24)
    assert on_disk.column("preset")[3].as_py() == np.asarray(table.column("preset")[3].as_py(), "<f4").tobytes()
    assert on_disk.schema.field("pair_id").nullable and not on_disk.schema.field("label").nullable
    assert store.row_hashes(["k-1"]).equals(table.column("row_hash"))
    assert not list(store.raw_dir.glob(".*.tmp"))  # the staged temp file was renamed, not left behind


def _list_columns_file(table: pa.Table, meta: dict) -> pa.Table:
    """``table`` in an older layout: list columns, row hashes stored, no layout in the footer."""
    return table.replace_schema_metadata({META_KEY: json.dumps(meta).encode()})


def test_a_partition_in_an_older_layout_is_refused_then_stored_again_from_its_source(aivj_env):
    """The store reads one layout. A file in another is refused with a message that says what to do,
    and rebuild_stale stores it again from its source file, which is only read; a partition whose
    source is gone is set aside, not deleted."""
    from aivj_assets.data.ingest import ingest_partition, rebuild_stale
    from aivj_assets.data.scan import scan_tick
    from aivj_assets.data.store import StaleLayoutError

    kept = write_jsonl(aivj_env.data_dir / "kept.jsonl", rows(30, seed=1))
    gone = write_jsonl(aivj_env.data_dir / "gone.jsonl", rows(20, seed=2))
    plan = scan_tick(aivj_env, 0)
    for request in plan.requests:
        ingest_partition(aivj_env, request.partition)
    scan_tick(aivj_env, plan.last_seq)
    store = Store(aivj_env)
    keys = {Path(store.partition_meta(k)["source_rel"]).stem: k for k in store.partitions()}
    current = store.read_partitions([keys["kept"]])
    source_bytes = kept.read_bytes()
    for name in ("kept", "gone"):  # an earlier version's files, facts in the footer as ever
        key = keys[name]
        old = _list_columns_file(store.read_partitions([key]), store.partition_meta(key))
        pq.write_table(old, store.partition_path(key))
    assert store.stale_partitions() == sorted(keys.values())
    with pytest.raises(StaleLayoutError, match=rf"partition {keys['kept']} is stored in an older layout; `aivj up`"):
        store.read_partitions([keys["kept"]])
    with pytest.raises(StaleLayoutError):
        store.row_hashes([keys["gone"]])

    gone.unlink()
    lines: list[str] = []
    assert rebuild_stale(aivj_env, log=lines.append) == [keys["kept"]]
    assert "2 partitions are in an older layout; storing them again from their source files" in lines[0]
    assert any(keys["gone"] in line and "kept in" in line for line in lines)
    assert store.read_partitions([keys["kept"]]).equals(current) and kept.read_bytes() == source_bytes
    assert store.partitions() == [keys["kept"]] and store.stale_partitions() == []
    assert (store.root / "stale" / f"{keys['gone']}.parquet").is_file()  # kept aside, never deleted
    assert store.failure(keys["gone"]) is not None
    assert rebuild_stale(aivj_env, log=lines.append) == []  # nothing stale any more


def test_row_hashes_are_computed_once_and_cached_for_that_very_file(aivj_env, monkeypatch):
    """The ingest leaves the row hashes to the first read, which caches them for the partition
    file's file_id; later reads use the cache, and compute the hashes again when it is
    missing, torn or another file's."""
    from aivj_assets.data import split
    from aivj_assets.data.ingest import ingest_partition
    from aivj_assets.data.scan import scan_tick

    computed = []
    original = split.row_hash_values
    monkeypatch.setattr("aivj_assets.data.store.row_hash_values",
                        lambda *a: computed.append(len(a[2])) or original(*a))
    path = write_jsonl(aivj_env.data_dir / "f.jsonl", rows(50))
    [request] = scan_tick(aivj_env, 0).requests
    ingest_partition(aivj_env, request.partition)
    store, key = Store(aivj_env), request.partition
    cache = store.row_hashes_path(key)
    assert computed == [] and not cache.exists()  # not the ingest's work
    expected = read_pairs(path, path.read_bytes(), aivj_env, None).table

    assert store.read_partitions([key]).equals(expected) and computed == [50]
    assert cache.read_bytes().startswith(b"aivj row hashes 1\n" + store.partition_meta(key)["file_id"].encode())
    assert store.read_partitions([key]).equals(expected) and store.row_hashes([key]).equals(expected.column("row_hash"))
    assert computed == [50]  # both from the cache

    for spoil in (lambda: cache.unlink(), lambda: cache.write_bytes(cache.read_bytes()[:-3]),  # lost, torn
                  lambda: cache.write_bytes(cache.read_bytes().replace(b"hashes 1\n", b"hashes 1\n0", 1)[:-8])):  # another file's
        computed.clear()
        spoil()
        assert store.row_hashes([key]).equals(expected.column("row_hash")) and computed == [50]
        assert store.read_partitions([key]).equals(expected) and computed == [50]  # cached again by the first read

    # Damage that keeps the length (stale blocks after a crash) does not pass the digest.
    damaged = bytearray(cache.read_bytes())
    damaged[-200:] = bytes(200)
    cache.write_bytes(bytes(damaged))
    computed.clear()
    assert store.row_hashes([key]).equals(expected.column("row_hash")) and computed == [50]

    # A whole cache is the source for the file it was made from, and only for it: the same key
    # stored anew (a re-run) is another file, with another id.
    old_id = store.partition_meta(key)["file_id"]
    store._cache_hashes(key, old_id, np.zeros(50, np.uint64))
    assert store.row_hashes([key])[-1].as_py() == "0" * 16  # what the cache says, for this file
    ingest_partition(aivj_env, key)
    assert store.partition_meta(key)["file_id"] != old_id
    computed.clear()
    assert store.row_hashes([key]).equals(expected.column("row_hash")) and computed == [50]


def test_an_empty_partition_round_trips(aivj_env):
    store = Store(aivj_env)
    store.write_partition("empty", PAIR_SCHEMA.empty_table(), {"content_hash": "e"})
    assert store.read_partitions(["empty"]).num_rows == 0


def test_values_float32_cannot_hold_are_refused_and_large_integers_kept(aivj_env, tmp_path):
    good = rows(3)
    huge = dict(good[1], audio=[1e39] + good[1]["audio"][1:])  # finite in JSON, Inf as float32
    ints = dict(good[2], preset=[2**40 + 1] + [0] * 23)  # an integer beyond float32's exact range
    out = read_pairs(p := write_jsonl(tmp_path / "range.jsonl", [good[0], huge, ints]), p.read_bytes(), aivj_env, None)
    assert [(b.line, "NaN, Inf" in b.reason) for b in out.bad] == [(2, True)]
    assert out.rows == 2 and out.preset[1, 0] == np.float32(2**40 + 1)
    assert np.isfinite(out.audio).all()


def test_drift_summaries_come_from_the_partition_file_when_the_cache_is_torn(aivj_env):
    """The summary cache is written without fsync; each partition file's footer holds the durable copy."""
    store = Store(aivj_env)
    summaries = {k: {"rows": i + 1, "counts": [[i, 1]]} for i, k in enumerate(("a", "b", "c"))}
    for key, summary in summaries.items():
        _store_with_summary(store, key, summary)
    store.summary_path("a").write_text("")  # torn by a power cut
    store.summary_path("b").unlink()  # or lost
    assert [store.summary(k) for k in ("a", "b")] == [summaries["a"], summaries["b"]]
    assert json.loads(store.summary_path("a").read_text()) == summaries["a"]  # cached again
    assert store.partition_meta("b") == {"k": "b"}


def test_a_failure_beside_the_write_leaves_no_partition_and_no_temp_file(aivj_env, monkeypatch):
    from aivj_assets.data import ingest
    from aivj_assets.data.scan import scan_tick

    write_jsonl(aivj_env.data_dir / "f.jsonl", rows(30))
    [request] = scan_tick(aivj_env, 0).requests

    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setattr(ingest, "_drift_and_quarantine", broken)
    with pytest.raises(OSError, match="disk full"):
        ingest.ingest_partition(aivj_env, request.partition)
    store = Store(aivj_env)
    assert store.partitions() == [] and not list(store.raw_dir.glob(".*"))
    monkeypatch.undo()
    report = ingest.ingest_partition(aivj_env, request.partition)  # a retry ingests it whole
    assert report.rows == 30 and store.read_partitions().num_rows == 30


def test_the_corpus_summary_is_the_sum_of_the_other_partitions_and_reads_only_new_ones(aivj_env, monkeypatch):
    store = Store(aivj_env)
    parts = {"a": {"rows": 3, "counts": [[1, 2], [3, 0]]}, "b": {"rows": 5, "counts": [[4, 1], [2, 3]]},
             "c": None}  # a partition with no good rows has no summary
    for key, summary in parts.items():
        _store_with_summary(store, key, summary)

    def total(*keys):
        return {"rows": sum(parts[k]["rows"] for k in keys),
                "counts": np.sum([parts[k]["counts"] for k in keys], axis=0).tolist()}

    def sums(summary):
        return {k: summary[k] for k in ("rows", "counts")}

    first = store.corpus_summary(exclude="new")
    assert sums(first) == total("a", "b") and first["keys"] == ["a", "b", "c"]
    assert json.loads(store.corpus_path().read_text()) == first  # kept for the next ingest
    assert sums(store.corpus_summary(exclude="b")) == total("a")  # b stored again: the rest of the corpus

    read = []
    original = Store.summary
    monkeypatch.setattr(Store, "summary", lambda self, key: read.append(key) or original(self, key))
    parts["d"] = {"rows": 2, "counts": [[0, 2], [1, 1]]}
    _store_with_summary(store, "d", parts["d"])
    assert sums(store.corpus_summary(exclude="e")) == total("a", "b", "d")
    assert read == ["d"]  # the cost follows the new partitions, not the corpus

    store.partition_path("a").unlink()  # a partition gone: the running total is rebuilt without it
    read.clear()
    assert sums(store.corpus_summary()) == total("b", "d") and sorted(read) == ["b", "c", "d"]
    store.corpus_path().write_text("")  # or torn by a power cut
    assert sums(store.corpus_summary()) == total("b", "d")
