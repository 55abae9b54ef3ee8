"""`aivj versions`, `aivj rollback` and `aivj import-model` on real files."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from aivj_assets.cli.main import main
from aivj_assets.registry import BEST_NAME, Registry
from aivj_assets.settings import load_settings
from aivj_assets.training.model import CouplingNet
from aivj_assets_tests.builders import state_file

AUDIO, PRESET = 12, 8


class NotATensor:
    """An object whose loading would run this module's code: never unpickled."""


@pytest.fixture
def settings(aivj_env, monkeypatch):
    monkeypatch.setenv("AIVJ_HIDDEN_DIM", "16")
    monkeypatch.setenv("AIVJ_EMBED_DIM", "8")
    return load_settings()


def test_import_model_makes_the_owners_file_the_first_champion(settings, tmp_path, capsys) -> None:
    owners = state_file(tmp_path / "coupling_net_best.pth", seed=1, audio_dim=AUDIO, preset_dim=PRESET)
    assert main(["import-model", str(owners)]) == 0
    version = Registry(settings.models_dir).champion()["version"]
    assert f"as champion {version}" in capsys.readouterr().out
    reg = Registry(settings.models_dir)
    assert reg.get(version)["stage"] == "import" and reg.latest_version() == version
    assert (settings.models_dir / BEST_NAME).read_bytes() == owners.read_bytes()
    assert reg.meta(version)["dims"] == {"audio_dim": AUDIO, "preset_dim": PRESET}
    # Only the first champion can be imported.
    assert main(["import-model", str(owners)]) == 1
    assert "already has champion" in capsys.readouterr().err


def test_import_model_refuses_a_different_architecture_naming_keys_and_shapes(settings, tmp_path, capsys) -> None:
    wider = state_file(tmp_path / "wider.pth", seed=1, audio_dim=AUDIO, preset_dim=PRESET, hidden=32)
    assert main(["import-model", str(wider)]) == 1
    err = capsys.readouterr().err
    assert "architecture does not match" in err
    assert re.search(r"audio_tower\.\d+\.weight: shape \(32, 12\) in the file, \(16, 12\) expected", err)

    state = CouplingNet(AUDIO, PRESET, hidden_dim=16, embed_dim=8).state_dict()
    state["extra.bias"] = torch.zeros(3)
    del state["head.2.bias"]
    torch.save(state, tmp_path / "renamed.pth")
    assert main(["import-model", str(tmp_path / "renamed.pth")]) == 1
    err = capsys.readouterr().err
    assert "missing keys ['head.2.bias']" in err and "unexpected keys ['extra.bias']" in err

    torch.save({"weights": NotATensor()}, tmp_path / "pickled.pth")  # needs unpickling code: refused
    assert main(["import-model", str(tmp_path / "pickled.pth")]) == 1
    assert "refused" in capsys.readouterr().err
    assert main(["import-model", str(tmp_path / "absent.pth")]) == 1
    (tmp_path / "notes.pth").write_text("hello")  # text, not a checkpoint: torch's reader raises KeyError
    assert main(["import-model", str(tmp_path / "notes.pth")]) == 1
    assert "notes.pth: refused to load" in capsys.readouterr().err
    assert main(["import-model", str(tmp_path)]) == 1
    assert "is a folder, not a weights file" in capsys.readouterr().err
    assert Registry(settings.models_dir).champion() is None and not (settings.models_dir / BEST_NAME).exists()


def test_reset_forgets_the_platforms_state_and_keeps_the_data(settings, tmp_path, capsys) -> None:
    reg = Registry(settings.models_dir)
    reg.promote(reg.register(state_file(tmp_path / "a.pth", seed=1, audio_dim=AUDIO, preset_dim=PRESET), {"stage": "full", "metrics": {}}), by="demo")
    data_file = settings.data_dir / "refined" / "pairs.jsonl"
    data_file.parent.mkdir(parents=True)
    data_file.write_text("{}\n")
    for path in (settings.data_dir / "processed_hashes.jsonl", settings.store_dir / "raw_pairs" / "p.parquet",
                 settings.checkpoints_dir / "full" / "step_0001.pth", settings.dagster_home / "dagster.yaml"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    assert main(["reset"]) == 1  # without --yes: the list, and nothing removed
    listed = capsys.readouterr().out
    assert f"would remove {settings.store_dir}" in listed and f"would remove {settings.dagster_home}" in listed
    assert reg.champion() is not None
    assert main(["reset", "--yes"]) == 0
    assert f"removed {settings.models_dir / 'model_registry.json'}" in capsys.readouterr().out
    assert Registry(settings.models_dir).champion() is None and not settings.store_dir.exists()
    assert not settings.checkpoints_dir.exists() and not settings.dagster_home.exists()
    assert not (settings.data_dir / "processed_hashes.jsonl").exists() and data_file.read_text() == "{}\n"
    assert main(["reset"]) == 0 and "nothing to remove" in capsys.readouterr().out


def test_versions_and_rollback_commands(settings, tmp_path, capsys, monkeypatch) -> None:
    app_file = tmp_path / "app" / "coupling_net_best.pth"
    monkeypatch.setenv("AIVJ_EXPORT_PATH", str(app_file))
    reg = Registry(settings.models_dir)
    first = reg.register(state_file(tmp_path / "a.pth", seed=1, audio_dim=AUDIO, preset_dim=PRESET), {"stage": "full", "metrics": {}})
    reg.update(first, measured={"elite_accuracy": 0.97, "val_accuracy": 0.93, "f1": 0.92})  # as judged
    reg.promote(first, by="test")
    second = reg.register(state_file(tmp_path / "b.pth", seed=2, audio_dim=AUDIO, preset_dim=PRESET), {"stage": "incremental", "metrics": {}})
    reg.update(second, measured={"elite_accuracy": 0.98, "val_accuracy": 0.9412},
               paired={"gain": 0.0112, "gain_low": 0.0061, "gain_high": 0.0163, "p_value": 2.1e-5},
               summary="passed every blocking gate: +1.12 points on 10,404 rows, p = 2.1e-05")
    reg.promote(second, by="test")
    rejected = reg.register(state_file(tmp_path / "c.pth", seed=3, audio_dim=AUDIO, preset_dim=PRESET), {"stage": "incremental", "metrics": {}})
    reg.reject(rejected, ["val_accuracy: 0.5 < 0.9"], by="test")

    assert main(["versions"]) == 0
    table = capsys.readouterr().out
    assert any(line.startswith("*") and second in line for line in table.splitlines())
    assert "0.9700" in table and "val_accuracy: 0.5 < 0.9" in table
    # Each judged version shows its gain over the champion of the day, with its interval and p.
    row = next(line for line in table.splitlines() if second in line)
    assert re.search(r"0\.9412\s+0\.9800\s+\+1\.12 \[\+0\.61, \+1\.63\]\s+2\.1e-05\s+passed every blocking gate: \+1\.12 points", row)
    assert f"champion: {second}" in table

    assert main(["rollback"]) == 0
    assert f"champion is now {first}" in capsys.readouterr().out
    assert (settings.models_dir / BEST_NAME).read_bytes() == (tmp_path / "a.pth").read_bytes()
    assert app_file.read_bytes() == (tmp_path / "a.pth").read_bytes()  # the app loads the rolled-back one
    assert main(["rollback"]) == 1
    assert "no earlier champion" in capsys.readouterr().err
    assert main(["rollback", second]) == 0 and reg.champion()["version"] == second

    # The installed entry point runs the same command in its own process.
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = subprocess.run([sys.executable, "-m", "aivj_assets", "versions"], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert f"champion: {second}" in out and "rolled_back" in out


def test_bad_arguments_and_a_torn_registry_are_named(settings, tmp_path, capsys) -> None:
    assert main(["demo-data", str(tmp_path / "d"), "--pairs", "100", "--elite", "0"]) == 1
    assert "--elite must be at least 1, got 0" in capsys.readouterr().err
    assert main(["demo-data", str(tmp_path / "d"), "--pairs", "-1"]) == 1
    assert "--pairs must be at least 1, got -1" in capsys.readouterr().err
    (tmp_path / "file.pth").write_bytes(b"x")
    assert main(["demo-data", str(tmp_path / "file.pth"), "--pairs", "100", "--elite", "10"]) == 1
    assert "is a file, not a folder" in capsys.readouterr().err
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    (settings.models_dir / "model_registry.json").write_text('{"versions": {')  # torn
    assert main(["versions"]) == 1
    assert f"{settings.models_dir / 'model_registry.json'}: not a readable registry" in capsys.readouterr().err
