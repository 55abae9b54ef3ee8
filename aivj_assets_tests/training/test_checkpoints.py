"""The checkpoint manager: atomic files, the newest kept, identities apart, background snapshots."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from aivj_assets.training.checkpoints import CheckpointManager


def _payload(value: float) -> dict:
    return {"model": {"w": torch.full((3,), value)}, "history": [{"epoch": 1, "val_loss": value}]}


def test_keeps_the_newest_and_points_state_at_the_latest(tmp_path: Path):
    ckpt = CheckpointManager(tmp_path, "run-a", keep=2)
    for step in (5, 10, 15):
        ckpt.save(step, _payload(step))
    assert [p.name for p in sorted(tmp_path.glob("*.pth"))] == ["step_0010.pth", "step_0015.pth"]
    state = json.loads((tmp_path / "train_state.json").read_text())
    assert state["checkpoint"] == "step_0015.pth" and state["identity"] == "run-a"
    assert ckpt.latest() == tmp_path / "step_0015.pth"
    assert ckpt.load(ckpt.latest())["model"]["w"][0].item() == 15
    assert not list(tmp_path.glob(".*tmp"))  # no temporary files left
    assert CheckpointManager(tmp_path, "run-b").latest() is None  # another training's are not ours


def test_background_write_saves_the_state_at_save_time(tmp_path: Path):
    ckpt = CheckpointManager(tmp_path, "run-a", keep=5, background=True)
    payload = _payload(1.0)
    ckpt.save(7, payload)
    payload["model"]["w"].add_(100.0)  # training goes on changing the live tensors
    payload["history"].append({"epoch": 2})
    ckpt.wait()
    loaded = ckpt.load(tmp_path / "step_0007.pth")
    assert torch.equal(loaded["model"]["w"], torch.full((3,), 1.0)) and len(loaded["history"]) == 1
    ckpt.close()


def test_state_naming_a_missing_file_falls_back_to_the_newest_present(tmp_path: Path):
    ckpt = CheckpointManager(tmp_path, "run-a", keep=5)
    ckpt.save(3, _payload(3))
    ckpt.save(6, _payload(6))
    (tmp_path / "step_0006.pth").unlink()
    assert ckpt.latest() == tmp_path / "step_0003.pth"
    assert ckpt.clear() == ["step_0003.pth"] and not (tmp_path / "train_state.json").exists()
