"""The folder scan: every file once, settled, deduplicated, bounded per tick, ledger rebuildable."""

from __future__ import annotations

import os
import re
import shutil

from aivj_assets.data.ledger import Ledger
from aivj_assets.data.scan import partition_key, scan_tick
from aivj_assets_tests.builders import rows, write_jsonl


def _keys(plan):
    return sorted(r.partition for r in plan.requests)


def test_partition_keys_are_safe_and_readable():
    key = partition_key("sub dir/My, file (v2).jsonl", "abcdef0123456789")
    assert key == "My_file_v2-abcdef01"
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", partition_key("../,, ,.parquet", "12345678ff"))


def test_new_nested_renamed_copied_and_changed_files(aivj_env):
    data = aivj_env.data_dir
    a = write_jsonl(data / "nested" / "deeper" / "a.jsonl", rows(5, seed=1))
    first = scan_tick(aivj_env, 0)
    assert _keys(first) == [partition_key("a.jsonl", Ledger(aivj_env).load()[0]["hash"])]
    # same content under another name, and a copy with an old modification time: duplicates
    shutil.copy2(a, data / "copy_of_a.jsonl")
    os.rename(a, data / "moved_a.jsonl")
    second = scan_tick(aivj_env, first.last_seq)
    assert second.requests == []
    dups = [e for e in Ledger(aivj_env).load() if e["status"] == "duplicate"]
    assert sorted(e["path"] for e in dups) == ["copy_of_a.jsonl", "moved_a.jsonl"]
    assert second.stats["hashed_files"] == 1  # the rename was recognised by inode, not re-read
    # a file with an old mtime that is new content is still found
    b = write_jsonl(data / "b.jsonl", rows(5, seed=2))
    os.utime(b, (1_000_000, 1_000_000))
    third = scan_tick(aivj_env, second.last_seq)
    assert len(third.requests) == 1 and third.requests[0].partition.startswith("b-")
    # content changed in place: a new partition; the old entry stays
    write_jsonl(b, rows(6, seed=3))
    fourth = scan_tick(aivj_env, third.last_seq)
    assert len(fourth.requests) == 1 and fourth.requests[0].partition != third.requests[0].partition
    assert {e["partition"] for e in Ledger(aivj_env).load()} >= {third.requests[0].partition, fourth.requests[0].partition}


def test_unsettled_files_wait_and_nothing_is_hashed_twice(aivj_env):
    settings = aivj_env.replace(settle_seconds=60)
    write_jsonl(aivj_env.data_dir / "slow.jsonl", rows(3))
    plan = scan_tick(settings, 0)
    assert plan.requests == [] and plan.stats["waiting"] == 1 and plan.stats["hashed_files"] == 0
    plan = scan_tick(aivj_env, plan.last_seq)  # settle 0: taken now
    assert len(plan.requests) == 1
    again = scan_tick(aivj_env, plan.last_seq)
    assert again.requests == [] and again.stats["hashed_bytes"] == 0


def test_elite_folder_ledger_hidden_and_other_files_are_not_data(aivj_env):
    data = aivj_env.data_dir
    write_jsonl(aivj_env.elite_path / "elite.jsonl", rows(3))
    write_jsonl(data / ".hidden.jsonl", rows(3))
    write_jsonl(data / ".partial" / "x.jsonl", rows(3))
    (data / "notes.txt").write_text("hello")
    (data / "demo_manifest.json").write_text("{}")
    write_jsonl(data / "real.jsonl", rows(3))
    first = scan_tick(aivj_env, 0)
    assert [r.path for r in first.requests] == ["real.jsonl"]
    assert (data / "processed_hashes.jsonl").exists() and (data / ".last_seen").exists()
    plan = scan_tick(aivj_env, first.last_seq)
    assert plan.requests == [] and plan.stats["scanned"] == 1  # the ledger itself is not data


def test_work_per_tick_is_bounded_and_the_rest_follows(aivj_env):
    settings = aivj_env.replace(sensor_max_files_per_tick=2)
    for i in range(5):
        write_jsonl(aivj_env.data_dir / f"f{i}.jsonl", rows(2, seed=i))
    seq, seen = 0, []
    for _ in range(3):
        plan = scan_tick(settings, seq)
        seq = plan.last_seq
        assert len(plan.requests) <= 2
        seen += _keys(plan)
    assert len(seen) == len(set(seen)) == 5


def test_a_tick_that_died_is_requested_again_but_never_twice_as_new(aivj_env):
    write_jsonl(aivj_env.data_dir / "a.jsonl", rows(3))
    lost = scan_tick(aivj_env, 0)  # Dagster never took these (the cursor stays 0)
    again = scan_tick(aivj_env, 0)
    assert _keys(again) == _keys(lost)
    committed = scan_tick(aivj_env, again.last_seq)
    assert committed.requests == []
    assert sum(e["status"] == "pending" for e in Ledger(aivj_env).load()) == 1


def test_ledger_is_rebuilt_from_the_store(aivj_env):
    from aivj_assets.data.ingest import ingest_partition

    write_jsonl(aivj_env.data_dir / "a.jsonl", rows(4))
    plan = scan_tick(aivj_env, 0)
    ingest_partition(aivj_env, plan.requests[0].partition)
    scan_tick(aivj_env, plan.last_seq)
    before = Ledger(aivj_env).load()
    ledger_file = aivj_env.data_dir / "processed_hashes.jsonl"
    ledger_file.unlink()
    after = Ledger(aivj_env).load()
    keep = ("hash", "path", "size", "mtime_ns", "inode", "partition", "status", "rows")
    assert [{k: e[k] for k in keep} for e in after] == [{k: e[k] for k in keep} for e in before]
    # A reader (an ingest run) does not write the rebuilt ledger: without the ledger lock it
    # could overwrite entries the sensor has just saved. The sensor's tick writes it.
    assert not ledger_file.exists()
    assert scan_tick(aivj_env, 0).stats["hashed_files"] == 0
    assert ledger_file.exists()


def test_windows_scan_without_inodes_still_registers_each_file(aivj_env, monkeypatch):
    # On Windows DirEntry.stat() reports st_ino 0 while os.stat() gives the file index.
    real_scandir = os.scandir

    class NoInode:
        def __init__(self, entry):
            self._entry, self.name, self.path = entry, entry.name, entry.path

        def is_dir(self, follow_symlinks=True):
            return self._entry.is_dir(follow_symlinks=follow_symlinks)

        def stat(self):
            st = self._entry.stat()
            fields = list(st)
            fields[1] = 0  # st_ino
            return os.stat_result(fields, {"st_mtime": st.st_mtime, "st_ctime": st.st_ctime,
                                           "st_mtime_ns": st.st_mtime_ns})

    monkeypatch.setattr(os, "scandir", lambda path: [NoInode(e) for e in real_scandir(path)])
    write_jsonl(aivj_env.data_dir / "a.jsonl", rows(3, seed=1))
    first = scan_tick(aivj_env, 0)
    assert len(first.requests) == 1 and first.stats["waiting"] == 0
    again = scan_tick(aivj_env, first.last_seq)
    assert again.requests == [] and again.stats["hashed_files"] == 0


def test_platform_folders_inside_the_data_folder_are_not_data(aivj_env):
    # AIVJ_HOME inside the data folder: the store's own Parquet and quarantine files must not
    # come back as new data (each ingest would feed the next one, without end).
    settings = aivj_env.replace(home=aivj_env.data_dir / "platform", dagster_home=aivj_env.data_dir / "dagster")
    write_jsonl(settings.data_dir / "a.jsonl", rows(3, seed=1))
    for folder in (settings.store_dir / "raw_pairs", settings.store_dir / "quarantine", settings.models_dir,
                   settings.checkpoints_dir, settings.state_dir, settings.dagster_home):
        write_jsonl(folder / "own.jsonl", rows(2, seed=2))
    plan = scan_tick(settings, 0)
    assert [r.path for r in plan.requests] == ["a.jsonl"]
