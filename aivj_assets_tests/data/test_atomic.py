"""Atomic replacement when another process holds the file open (Windows refuses the rename)."""

from __future__ import annotations

import os

import pytest

from aivj_assets.data import atomic


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
