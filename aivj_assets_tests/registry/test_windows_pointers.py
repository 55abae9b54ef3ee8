"""The champion's pointers under Windows' rules, simulated by patching the OS primitives that differ:
symlinks refused or not wanted, a directory link that ``os.replace`` cannot swap, a file held open.
Whatever fails, the previous champion stays complete and the registry names the champion the
pointers show."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aivj_assets.data import atomic
from aivj_assets.registry import BEST_NAME, Registry, pointers


def _register(reg: Registry, tmp_path: Path, name: str) -> str:
    src = tmp_path / f"{name}.bin"
    src.write_bytes(os.urandom(2048))
    return reg.register(src, {"stage": "full", "identity": f"id-{name}"})


def _windows_rules(monkeypatch) -> set[Path]:
    """Windows' semantics for the calls the pointers make: a directory link cannot be replaced by
    a rename nor removed by unlink (rmdir removes it), an open file cannot be replaced."""
    real_replace, real_unlink, real_rmdir = os.replace, os.unlink, os.rmdir
    held: set[Path] = set()

    def replace(src, dst, *args, **kwargs):
        dst = Path(dst)
        if dst in held or (dst.is_symlink() and dst.is_dir()):
            raise PermissionError(5, "Access is denied", str(dst))
        return real_replace(src, dst, *args, **kwargs)

    def unlink(path, *args, **kwargs):
        if Path(path).is_symlink() and Path(path).is_dir():
            raise PermissionError(5, "Access is denied", str(path))
        return real_unlink(path, *args, **kwargs)

    def rmdir(path, *args, **kwargs):
        return real_unlink(path) if Path(path).is_symlink() else real_rmdir(path, *args, **kwargs)

    def no_symlinks(*args, **kwargs):
        raise AssertionError("a symlink was made on Windows")

    monkeypatch.setattr(pointers, "_WINDOWS", True)
    monkeypatch.setattr(atomic, "_WINDOWS", True)
    monkeypatch.setattr(atomic, "_REPLACE_TRIES", 2)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "unlink", unlink)
    monkeypatch.setattr(os, "rmdir", rmdir)
    monkeypatch.setattr(os, "symlink", no_symlinks)
    return held


@pytest.fixture
def windows(monkeypatch) -> set[Path]:
    return _windows_rules(monkeypatch)


def test_on_windows_latest_is_a_pointer_file_even_where_symlinks_are_allowed(tmp_path, windows) -> None:
    reg = Registry(tmp_path / "models")
    first, second = _register(reg, tmp_path, "a"), _register(reg, tmp_path, "b")
    reg.promote(first, by="test")
    reg.promote(second, by="test")  # the promotion that failed when latest was a directory link
    latest = reg.root / "latest"
    assert latest.is_file() and not latest.is_symlink() and latest.read_text() == f"{second}\n"
    assert reg.latest_version() == second == reg.champion()["version"]
    assert (reg.root / BEST_NAME).read_bytes() == reg.weights_path(second).read_bytes()


def test_a_directory_link_from_an_earlier_install_becomes_a_pointer_file(tmp_path, monkeypatch) -> None:
    reg = Registry(tmp_path / "models")
    first, second = _register(reg, tmp_path, "a"), _register(reg, tmp_path, "b")
    reg.promote(first, by="test")  # on Linux: a real directory symlink, as Developer Mode allows
    assert (reg.root / "latest").is_symlink()
    _windows_rules(monkeypatch)  # the same folder, now under Windows' rules
    reg.promote(second, by="test")
    assert not (reg.root / "latest").is_symlink() and reg.latest_version() == second
    assert reg.champion()["version"] == second
    assert not [p for p in reg.root.iterdir() if p.name.endswith(".tmp")]


def _pointers_fail_on(monkeypatch, names: set[str]) -> None:
    """os.replace over these names in the models folder fails, as Windows fails a rename over a
    directory link or a file another process holds open."""
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        if Path(dst).name in names:
            raise PermissionError(5, "Access is denied", str(dst))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


@pytest.mark.parametrize("failing", ["latest", BEST_NAME])
def test_a_pointer_that_cannot_be_written_leaves_the_previous_champion_and_a_truthful_registry(
        tmp_path, monkeypatch, failing) -> None:
    reg = Registry(tmp_path / "models")
    first, second = _register(reg, tmp_path, "a"), _register(reg, tmp_path, "b")
    reg.promote(first, by="test")
    _pointers_fail_on(monkeypatch, {failing})
    with pytest.raises(RuntimeError) as err:
        reg.promote(second, by="test")
    assert f"{second} was not made champion" in str(err.value) and f"{first} stays the champion" in str(err.value)
    # Every reader sees the previous champion, whole: registry, csv, latest and the weights.
    assert reg.champion()["version"] == first and reg.get(second)["status"] == "candidate"
    assert reg.latest_version() == first
    assert (reg.root / BEST_NAME).read_bytes() == reg.weights_path(first).read_bytes()
    assert f"{second},".encode() in (reg.root / "versions.csv").read_bytes()
    assert reg.load()["events"][-1]["action"] == "pointer_failure"
    # A rollback that cannot be pointed at is undone the same way.
    monkeypatch.undo()
    reg.promote(second, by="test")
    _pointers_fail_on(monkeypatch, {failing})
    with pytest.raises(RuntimeError):
        reg.rollback(by="test")
    assert reg.champion()["version"] == second and reg.get(second)["status"] == "promoted"
    # Once the obstacle is gone the same promotion goes through.
    monkeypatch.undo()
    assert reg.rollback(by="test") == first and reg.latest_version() == first
