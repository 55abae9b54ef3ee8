"""Retention: which model versions keep their files, decided by policy, carried out by the registry."""

from __future__ import annotations

import os
from pathlib import Path

from aivj_assets.policy.retention import apply_retention, prunable
from aivj_assets.registry import Registry
from aivj_assets.registry.table import versions_table


def _register(reg: Registry, tmp_path: Path, name: str, elite: float = 0.96, **meta) -> str:
    weights = tmp_path / f"{name}.bin"
    weights.write_bytes(os.urandom(4096))  # the registry never parses weights
    version = reg.register(weights, {"stage": "full", "identity": f"id-{name}", **meta})
    reg.update(version, measured={"elite_accuracy": elite})  # as judged
    return version


def _retain(reg: Registry, **rule) -> list[str]:
    return reg.prune(lambda alive: prunable(alive, **rule))


def test_retention_keeps_newest_and_every_champion(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    versions = [_register(reg, tmp_path, f"w{i}", elite=0.90 + i / 100) for i in range(9)]
    reg.promote(versions[0], by="test")  # an old champion must survive
    for v in versions[1:]:
        reg.reject(v, ["judged"], by="test")  # decided: nothing still needs them
    removed = _retain(reg, keep=5, keep_low_disk=3, low_disk=False)
    assert sorted(removed) == sorted(versions[1:4])
    for v in versions[1:4]:
        assert not reg.version_dir(v).exists() and reg.get(v)["pruned"]
    assert all(reg.version_dir(v).exists() for v in [versions[0], *versions[4:]])

    # Low disk: only the 3 best by elite accuracy among never-champions stay.
    removed = _retain(reg, keep=5, keep_low_disk=3, low_disk=True, protect={versions[4]})
    assert sorted(removed) == sorted(versions[5:6])
    alive = [v for v in versions if reg.version_dir(v).exists()]
    assert alive == [versions[0], versions[4], *versions[6:9]]
    assert "files pruned" in versions_table(reg)


def test_retention_spares_what_a_night_still_needs(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    champion = _register(reg, tmp_path, "champ")
    reg.promote(champion, by="test")
    old_warm = _register(reg, tmp_path, "warm0", stage="warmup", parent=champion, elite=0.99)
    warm = _register(reg, tmp_path, "warm1", stage="warmup", parent=champion, elite=0.50)
    full = _register(reg, tmp_path, "full", stage="full", parent=warm, elite=0.50)  # not judged yet
    rejected = _register(reg, tmp_path, "inc", stage="incremental", parent=champion, elite=0.95)
    reg.reject(rejected, ["does not beat the champion"], by="test")
    # Low disk, keeping none: the champion, the candidate waiting for its gates, its parent
    # warm-up (the newest, which a stopped full training resumes from) all stay.
    removed = _retain(reg, keep=0, keep_low_disk=0, low_disk=True)
    assert sorted(removed) == sorted([old_warm, rejected])
    assert all(reg.version_dir(v).exists() for v in (champion, warm, full))
    reg.reject(full, ["val_accuracy"], by="test")  # decided: now it may go, the newest warm-up stays
    assert _retain(reg, keep=0, keep_low_disk=0, low_disk=True) == [full]
    assert reg.version_dir(warm).exists()


def test_apply_retention_reads_the_settings_and_the_free_disk(aivj_env, tmp_path: Path) -> None:
    reg = Registry(aivj_env.models_dir)
    versions = [_register(reg, tmp_path, f"w{i}", elite=0.90 + i / 100) for i in range(4)]
    for v in versions:
        reg.reject(v, ["judged"], by="test")
    assert apply_retention(aivj_env.replace(keep_versions=2), reg, low_disk=False) == versions[:2]
    # No free disk at all by the settings' measure: the low-disk rule keeps only the best.
    assert apply_retention(aivj_env.replace(keep_versions_low_disk=1, disk_min_free_gb=1e9), reg) == [versions[2]]
    assert reg.version_dir(versions[3]).exists()
