"""SIGKILL a process that registers, promotes and rolls back in a loop: readers never see a broken
champion or a half-written version."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aivj_assets.data.atomic import file_sha256
from aivj_assets.registry import BEST_NAME, META_NAME, WEIGHTS_NAME, Registry

_WORKER = """
import sys
from aivj_assets.registry import Registry

reg = Registry(sys.argv[1])
versions = sys.argv[2:]
print("ready", flush=True)
i = 0
while True:
    champion = reg.champion()["version"]
    target = versions[i % len(versions)]
    if target == champion:
        target = versions[(i + 1) % len(versions)]
    if i % 3 == 2:  # a registration too: a version directory must appear whole or not at all
        reg.register(sys.argv[1] + "/../w0.bin", {"stage": "full", "metrics": {}})
    elif i % 2:
        reg.rollback(target, by="kill-test")
    else:
        reg.promote(target, by="kill-test")
    print(i, flush=True)
    i += 1
"""


def _assert_readers_see_a_complete_champion(reg: Registry, hashes: set[str]) -> None:
    latest = reg.root / "latest"
    assert latest.exists(), "latest must always resolve"
    vdir = latest.resolve()
    meta = json.loads((vdir / META_NAME).read_text())
    assert file_sha256(vdir / WEIGHTS_NAME) == meta["model_hash"]
    assert file_sha256(reg.root / BEST_NAME) in hashes
    doc = json.loads(reg.registry_path.read_text())
    assert doc["champion"] in doc["versions"]
    for vdir in (d for d in reg.root.glob("v*_*") if d.is_dir()):  # every visible version is whole
        meta = json.loads((vdir / META_NAME).read_text())
        assert file_sha256(vdir / WEIGHTS_NAME) == meta["model_hash"]
    rows = list(csv.DictReader((reg.root / "versions.csv").open()))
    # versions.csv is a view written after the registry file: a kill in between leaves it one behind.
    assert {r["ver"] for r in rows} <= set(doc["versions"])


@pytest.mark.timeout(180)
def test_sigkill_during_promotion_and_rollback_never_breaks_the_champion(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    versions = []
    for i in range(3):
        src = tmp_path / f"w{i}.bin"
        src.write_bytes(os.urandom(3 * 1024 * 1024))  # big enough that copies take measurable time
        versions.append(reg.register(src, {"stage": "full", "metrics": {}}))
    reg.promote(versions[0], by="setup")
    hashes = {reg.get(v)["model_hash"] for v in versions}
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}

    total_ops = 0
    for attempt in range(30):
        proc = subprocess.Popen([sys.executable, str(script), str(reg.root), *versions],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        assert proc.stdout.readline().strip() == b"ready"  # imports done: the loop starts now
        time.sleep(0.02 + (attempt % 10) * 0.031)  # spread the kill over the operations' phases
        proc.kill()  # SIGKILL; TerminateProcess on Windows: no chance to clean up either way
        out, err = proc.communicate()
        assert proc.returncode == (1 if os.name == "nt" else -signal.SIGKILL), err.decode()
        total_ops += len(out.splitlines())
        _assert_readers_see_a_complete_champion(reg, hashes)

    assert total_ops >= 10, "the worker must have completed operations between kills"
    # The next registry call brings every pointer in line with the registry's champion.
    reg.repair()
    champion = reg.champion()
    assert reg.latest_version() == champion["version"]
    assert file_sha256(reg.root / BEST_NAME) == champion["model_hash"]
    rows = list(csv.DictReader((reg.root / "versions.csv").open()))
    assert [r["ver"] for r in rows] == list(reg.load()["versions"])
