"""Atomic replacement when another process holds the file open (Windows refuses the rename)."""

from __future__ import annotations

import os

import pytest

from aivj_assets.data import atomic
from aivj_assets_tests.processes import hold_lock_in_another_process


def _refusing(times: int, monkeypatch) -> list[int]:
    """os.replace raising Windows' PermissionError ``times`` times, then replacing."""
    real, calls = os.replace, []

    def replace(src, dst):
        calls.append(1)
        if len(calls) <= times:
            raise PermissionError(13, "The process cannot access the file because it is being used by another process")
        real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace)
    monkeypatch.setattr(atomic, "_WINDOWS", True)
    return calls


def test_a_briefly_open_target_is_replaced_once_the_reader_lets_go(tmp_path, monkeypatch):
    target = tmp_path / "pause.json"
    target.write_text("old")
    calls = _refusing(3, monkeypatch)
    atomic.write_text_atomic(target, "new")
    assert target.read_text() == "new" and len(calls) == 4
    assert [p.name for p in tmp_path.iterdir()] == ["pause.json"]  # no temp file left behind


def test_a_target_held_open_for_good_fails_and_leaves_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "pause.json"
    target.write_text("old")
    monkeypatch.setattr(atomic, "_REPLACE_TRIES", 3)
    calls = _refusing(99, monkeypatch)
    with pytest.raises(PermissionError):
        atomic.write_text_atomic(target, "new")
    assert target.read_text() == "old" and len(calls) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["pause.json"]


def test_elsewhere_a_permission_error_is_not_retried(tmp_path, monkeypatch):
    target = tmp_path / "pause.json"
    calls = _refusing(1, monkeypatch)
    monkeypatch.setattr(atomic, "_WINDOWS", False)
    with pytest.raises(PermissionError):
        atomic.write_text_atomic(target, "new")
    assert len(calls) == 1 and not target.exists()


@pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")
def test_written_files_get_the_usual_mode_not_owner_only(tmp_path):
    mask = os.umask(0o022)
    os.umask(mask)
    target = tmp_path / "coupling_net_best.pth"
    atomic.write_bytes_atomic(target, b"weights")
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask  # e.g. 0644: a web app as another user reads it



def test_a_stuck_lock_holder_gives_a_clear_error_not_a_hang_and_its_death_frees_the_lock(tmp_path):
    import time

    lock = tmp_path / ".registry.lock"
    holder = hold_lock_in_another_process(lock)
    try:
        began = time.monotonic()
        with pytest.raises(atomic.LockTimeout) as err, atomic.file_lock(lock, timeout=0.5):
            pass
        assert 0.5 <= time.monotonic() - began < 5
        assert str(lock) in str(err.value) and "held this lock for over 0.5 s" in str(err.value)
    finally:
        holder.kill()
        holder.wait()
    with atomic.file_lock(lock, timeout=5):  # the OS freed it with its holder
        pass


def test_the_default_lock_timeout_guards_every_lock(tmp_path, monkeypatch):
    from aivj_assets.registry import Registry

    registry = Registry(tmp_path / "models")
    holder = hold_lock_in_another_process(registry.root / ".registry.lock")
    monkeypatch.setattr(atomic, "LOCK_TIMEOUT_SECONDS", 0.3)
    try:
        with pytest.raises(atomic.LockTimeout, match="registry.lock"):
            registry.repair()
    finally:
        holder.kill()
        holder.wait()


def test_without_hard_links_create_exclusive_still_lets_only_the_first_writer_win(tmp_path, monkeypatch):
    import errno

    def no_links(src, dst, *args, **kwargs):  # exFAT, FAT32 and some shares refuse hard links
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(atomic.os, "link", no_links)
    target = tmp_path / "lineage.json"
    assert atomic.create_exclusive(target, b'{"audio_dim": 12}') is True
    assert atomic.create_exclusive(target, b'{"audio_dim": 99}') is False
    assert target.read_bytes() == b'{"audio_dim": 12}'
    # No temp file left behind (the lock file stays where the OS keeps lock files).
    assert {p.name for p in tmp_path.iterdir()} - {".lineage.json.lock"} == {"lineage.json"}
