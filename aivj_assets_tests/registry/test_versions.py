"""The registry on real files: versions, champion pointer, rollback, retention, repair."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from aivj_assets.data.atomic import file_sha256
from aivj_assets.registry import BEST_NAME, META_NAME, WEIGHTS_NAME, Registry
from aivj_assets.registry.table import versions_table
from aivj_assets.registry.versions import CSV_COLUMNS


def _weights(tmp_path: Path, name: str, size: int = 4096) -> Path:
    """A weights-like file with distinct bytes (the registry never parses weights)."""
    path = tmp_path / f"{name}.bin"
    path.write_bytes(os.urandom(size))
    return path


def _register(reg: Registry, tmp_path: Path, name: str, elite: float = 0.96, **meta) -> str:
    return reg.register(_weights(tmp_path, name), {
        "stage": "full", "parent": None, "identity": f"id-{name}", "data_hash": f"d-{name}",
        "metrics": {"elite_accuracy": elite, "val_accuracy": 0.93}, "cmd_line": "pytest", **meta,
    })


def test_register_writes_a_complete_version_and_both_indexes(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    src = _weights(tmp_path, "a")
    version = reg.register(src, {"stage": "full", "metrics": {"elite_accuracy": 0.97}, "history": [{"epoch": 1}],
                                 "data_hash": "abc", "cmd_line": "aivj demo", "run_id": "r1"})
    vdir = reg.version_dir(version)
    assert version.startswith("v") and version.endswith("_" + file_sha256(src)[:4])
    assert (vdir / WEIGHTS_NAME).read_bytes() == src.read_bytes()
    meta = json.loads((vdir / META_NAME).read_text())
    assert meta["model_hash"] == file_sha256(src) and meta["history"] == [{"epoch": 1}] and meta["run_id"] == "r1"
    entry = reg.get(version)
    assert entry["status"] == "candidate" and entry["metrics"]["elite_accuracy"] == 0.97
    rows = list(csv.reader((reg.root / "versions.csv").open()))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert rows[1] == [version, entry["time"], "abc", file_sha256(src), "aivj demo", "candidate"]
    assert reg.champion() is None and reg.latest_version() is None
    assert not [p for p in reg.root.iterdir() if p.name.startswith(".incoming-")]


@pytest.mark.parametrize("symlinks", [None, False])
def test_promote_then_rollback_restores_previous_champion_bytes(tmp_path: Path, symlinks) -> None:
    reg = Registry(tmp_path / "models", use_symlinks=symlinks)
    first = _register(reg, tmp_path, "a")
    reg.promote(first, by="test")
    first_bytes = (reg.root / BEST_NAME).read_bytes()
    assert first_bytes == reg.weights_path(first).read_bytes()
    assert reg.latest_version() == first
    assert (reg.root / "latest").is_symlink() == (symlinks is None)
    assert (reg.root / "latest" / WEIGHTS_NAME).is_file() or symlinks is False

    second = _register(reg, tmp_path, "b")
    reg.promote(second, by="test", expected_champion=first)
    assert reg.latest_version() == second and reg.champion()["version"] == second
    assert (reg.root / BEST_NAME).read_bytes() == reg.weights_path(second).read_bytes()

    assert reg.rollback(None, by="test") == first
    assert (reg.root / BEST_NAME).read_bytes() == first_bytes
    assert reg.latest_version() == first
    assert reg.get(second)["status"] == "rolled_back" and "rolled back to" in reg.get(second)["reasons"][0]
    assert reg.get(first)["status"] == "promoted"
    actions = [e["action"] for e in reg.load()["events"]]
    assert actions == ["promote", "promote", "rollback"]
    with pytest.raises(RuntimeError, match="no earlier champion"):
        reg.rollback(None, by="test")
    assert reg.rollback(second, by="test") == second  # an explicit version may come back


def test_reject_leaves_champion_and_files_untouched(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    champ = _register(reg, tmp_path, "a")
    reg.promote(champ, by="test")
    before = (reg.root / BEST_NAME).read_bytes()
    cand = _register(reg, tmp_path, "b")
    reg.reject(cand, ["elite_accuracy 0.5 < 0.95"], by="test")
    assert reg.get(cand)["status"] == "rejected" and reg.get(cand)["reasons"] == ["elite_accuracy 0.5 < 0.95"]
    assert reg.latest_version() == champ and (reg.root / BEST_NAME).read_bytes() == before
    assert "rejected" in versions_table(reg) and "* " in versions_table(reg)


def test_promote_refuses_stale_judgement_and_tampered_weights(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    a, b, c = (_register(reg, tmp_path, n) for n in "abc")
    reg.promote(a, by="test")
    with pytest.raises(RuntimeError, match="champion changed"):
        reg.promote(b, by="test", expected_champion=None)
    reg.weights_path(c).write_bytes(b"tampered")
    with pytest.raises(ValueError, match="does not match registry"):
        reg.promote(c, by="test")
    assert reg.champion()["version"] == a and not reg.verify(c) and reg.verify(a)


def test_find_by_identity_and_adoption_of_an_unlisted_version(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    v = _register(reg, tmp_path, "a")
    assert reg.find(identity="id-a", stage="full") == v
    assert reg.find(identity="id-a", stage="warmup") is None
    # A process killed between the version's rename and the registry write leaves the dir only.
    doc = reg.load()
    del doc["versions"][v]
    (reg.root / "model_registry.json").write_text(json.dumps(doc))
    reg.repair()
    assert reg.get(v)["model_hash"] == file_sha256(reg.weights_path(v))


def test_repair_restores_pointers_from_the_registry(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    a = _register(reg, tmp_path, "a")
    reg.promote(a, by="test")
    (reg.root / BEST_NAME).write_bytes(b"half")
    (reg.root / "latest").unlink()
    reg.repair()
    assert reg.latest_version() == a and (reg.root / BEST_NAME).read_bytes() == reg.weights_path(a).read_bytes()


def test_unknown_version_is_named(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    _register(reg, tmp_path, "a")
    with pytest.raises(ValueError, match="v123_abcd"):
        reg.rollback("v123_abcd", by="test")
    assert "no model versions" in versions_table(Registry(tmp_path / "empty"))
