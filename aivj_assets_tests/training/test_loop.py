"""The loop's behaviours in process: NaN recovery, pause/stop and resume, new data, progress lines."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from aivj_assets.training.checkpoints import CheckpointManager
from aivj_assets.training.dataset import PairTensors, split_parts, tensors_from_table
from aivj_assets.training.loop import TrainConfig, TrainError, train
from aivj_assets.training.model import CouplingNet
from aivj_assets_tests.builders import pair_table

BATCH = 64


def _data(n: int = 1200, seed: int = 0) -> tuple[PairTensors, PairTensors]:
    return split_parts(tensors_from_table(pair_table(n=n, audio_dim=8, preset_dim=4, seed=seed)), 0.10, 0.05)[:2]


def _model() -> CouplingNet:
    torch.manual_seed(0)
    return CouplingNet(8, 4, hidden_dim=16, embed_dim=4)


class NanAt(nn.Module):
    """The model, whose training forward pass number ``step`` gives NaN logits.

    The count is a buffer, so it travels in checkpoints: after a recovery the run replays the
    same steps, and with ``repeat`` the NaN comes back each time (a loss that keeps diverging);
    without, it came once in this process (a transient fault).
    """

    def __init__(self, inner: nn.Module, step: int, *, repeat: bool = False) -> None:
        super().__init__()
        self.inner, self.step, self.repeat, self.fired = inner, step, repeat, False
        self.register_buffer("forwards", torch.zeros((), dtype=torch.long))

    def fit_input_scaling(self, audio: torch.Tensor, preset: torch.Tensor) -> bool:
        return self.inner.fit_input_scaling(audio, preset)

    def forward(self, audio: torch.Tensor, preset: torch.Tensor) -> torch.Tensor:
        logits = self.inner(audio, preset)
        if not self.training:
            return logits
        self.forwards += 1
        if int(self.forwards) == self.step and (self.repeat or not self.fired):
            self.fired = True
            return logits * float("nan")
        return logits


def _config(tmp_path: Path, **changes) -> TrainConfig:
    base = dict(epochs=3, batch_size=BATCH, learning_rate=5e-3, weight_decay=1e-2, seed=1, checkpoint_every=10,
                checkpoint_keep=5, checkpoint_dir=tmp_path / "ckpt", identity="loop-test", warmup_steps=5)
    return TrainConfig(**{**base, **changes})


def _quiet(lines: list[str] | None = None):
    return (lines.append if lines is not None else (lambda line: None))


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _last_checkpoint_before(step: int, rows: int, every: int = 10) -> int:
    """The newest checkpoint under ``step``: every ``every`` steps and at each epoch's end."""
    per_epoch = math.ceil(rows / BATCH)
    return max(s for s in range(step) if s % every == 0 or s % per_epoch == 0)


def test_nan_loss_restores_checkpoint_halves_lr_and_finishes(tmp_path: Path):
    train_rows, val = _data()
    clean = train(_model(), train_rows, selection=val, config=_config(tmp_path / "clean"), log=_quiet())
    lines: list[str] = []
    log_file = tmp_path / "loss.log"
    faulty = train(NanAt(_model(), 25), train_rows, selection=val, log=lines.append,
                   config=_config(tmp_path / "faulty", loss_log=log_file))
    assert faulty.status == "finished" and faulty.steps == clean.steps
    nan_events = [e for e in faulty.events if e["kind"] == "nan_recovered"]
    assert len(nan_events) == 1 and nan_events[0]["step"] == 25
    healthy = _last_checkpoint_before(25, len(train_rows))
    assert f"restored step_{healthy:04d}" in nan_events[0]["message"]  # the last one before step 25
    assert faulty.metrics["nan_recoveries"] == 1 and faulty.metrics["lr_scale"] == 0.5
    # Epochs 2 and 3 ran at half the clean run's learning rate, on the same schedule.
    for f, c in zip(faulty.history[1:], clean.history[1:], strict=True):
        assert f["lr"] == pytest.approx(c["lr"] / 2)
    assert all(math.isfinite(v) for v in faulty.state_dict["inner.head.0.weight"].flatten().tolist())
    logged = [line.split() for line in log_file.read_text().splitlines()]
    assert [int(s) for s, _ in logged] == list(range(1, faulty.steps + 1))  # replayed steps, once each
    assert all(math.isfinite(float(v)) for _, v in logged)
    assert any("loss was NaN/Inf at step 25" in line for line in lines)


def test_loss_that_keeps_diverging_fails_cleanly(tmp_path: Path):
    train_rows, val = _data()
    config = _config(tmp_path, nan_max_recoveries=2)
    healthy = f"step_{_last_checkpoint_before(25, len(train_rows)):04d}"
    with pytest.raises(TrainError, match=r"diverged: loss NaN/Inf at step 25 after 2 recoveries "
                                         rf"\(limit nan_max_recoveries=2\).*0\.25x.*{healthy}"):
        train(NanAt(_model(), 25, repeat=True), train_rows, selection=val, config=config, log=_quiet())
    # The recoveries were recorded as they happened, so a restart knows how many were spent.
    state = CheckpointManager(config.checkpoint_dir, "loop-test").load(config.checkpoint_dir / f"{healthy}.pth")
    assert state["counters"]["nan_recoveries"] == 2


def test_pause_checkpoints_and_resume_matches_uninterrupted(tmp_path: Path):
    train_rows, val = _data()
    whole = train(_model(), train_rows, selection=val, config=_config(tmp_path / "whole"), log=_quiet())

    def pause_after_30(progress: dict) -> str:
        return "pause" if progress["step"] >= 30 else "continue"

    config = _config(tmp_path / "parts", control_poll_seconds=0.0)
    first = train(_model(), train_rows, selection=val, config=config, control=pause_after_30, log=_quiet())
    assert first.status == "paused" and first.steps == 30 and first.resumed_from is None
    state = json.loads((config.checkpoint_dir / "train_state.json").read_text())
    assert state["status"] == "pause" and state["checkpoint"] == "step_0030.pth" and state["identity"] == "loop-test"

    lines: list[str] = []
    second = train(_model(), train_rows, selection=val, config=config, log=lines.append)
    assert second.status == "finished" and second.resumed_from == "step_0030"
    assert any(line.startswith("resumed from step_0030") for line in lines)
    assert _same(second.state_dict, whole.state_dict)
    assert [h["selection_loss"] for h in second.history] == [h["selection_loss"] for h in whole.history]


def test_stop_at_step_zero_and_a_different_identity_starts_fresh(tmp_path: Path):
    train_rows, val = _data()
    config = _config(tmp_path, control_poll_seconds=0.0)
    stopped = train(_model(), train_rows, selection=val, config=config, control=lambda p: "stop", log=_quiet())
    assert stopped.status == "stopped" and stopped.steps == 0
    with pytest.raises(ValueError, match="expected 'continue', 'pause' or 'stop'"):
        train(_model(), train_rows, selection=val, config=config, control=lambda p: "maybe", log=_quiet())

    other = _config(tmp_path, identity="another-training", epochs=1)
    lines: list[str] = []
    result = train(_model(), train_rows, selection=val, config=other, log=lines.append)
    assert result.resumed_from is None and result.status == "finished"
    assert json.loads((other.checkpoint_dir / "train_state.json").read_text())["identity"] == "another-training"


def test_explicit_resume_path_and_checkpoints_kept(tmp_path: Path):
    train_rows, val = _data()
    config = _config(tmp_path, checkpoint_keep=3)
    train(_model(), train_rows, selection=val, config=config, log=_quiet())
    kept = sorted(p.name for p in config.checkpoint_dir.glob("step_*.pth"))
    assert len(kept) == 3 and kept[-1] == f"step_{3 * math.ceil(len(train_rows) / BATCH):04d}.pth"
    again = train(_model(), train_rows, selection=val, log=_quiet(),
                  config=_config(tmp_path, checkpoint_keep=3, resume=config.checkpoint_dir / kept[0]))
    assert again.resumed_from == Path(kept[0]).stem and again.status == "finished"
    with pytest.raises(FileNotFoundError, match="step_9999"):
        train(_model(), train_rows, selection=val, log=_quiet(),
              config=_config(tmp_path, resume=config.checkpoint_dir / "step_9999.pth"))


def test_new_data_joins_at_the_next_epoch_boundary(tmp_path: Path):
    train_rows, val = _data()
    more, _ = _data(n=600, seed=9)
    current = {"data": train_rows}
    config = _config(tmp_path, control_poll_seconds=0.0)

    def pause_mid_epoch_2(progress: dict) -> str:
        return "pause" if progress["step"] >= 25 else "continue"

    paused = train(_model(), lambda: current["data"], selection=val, config=config, control=pause_mid_epoch_2,
                   log=_quiet())
    assert paused.status == "paused" and paused.history[0]["rows"] == len(train_rows)
    current["data"] = more.concat(train_rows)  # new rows arrive (first, to shift every index)
    lines: list[str] = []
    done = train(_model(), lambda: current["data"], selection=val, config=config, log=lines.append)
    rows = [h["rows"] for h in done.history]
    assert rows == [len(train_rows), len(train_rows), len(train_rows) + len(more)]
    assert any("new rows join next epoch" in line for line in lines)


def test_new_data_can_restart_the_interrupted_epoch_and_the_best_epoch(tmp_path: Path):
    # What the full stage asks for: every row of the data it records has been trained on, and
    # the best epoch is chosen among scores on the same validation rows.
    train_rows, val = _data()
    more, more_val = _data(n=600, seed=9)
    current = {"data": train_rows}
    config = _config(tmp_path, control_poll_seconds=0.0, restart_epoch_on_new_data=True, manifest_hash="m1")

    def pause_mid_epoch_2(progress: dict) -> str:
        return "pause" if progress["step"] >= 25 else "continue"

    paused = train(_model(), lambda: current["data"], selection=val, config=config, control=pause_mid_epoch_2,
                   log=_quiet())
    assert paused.status == "paused"
    current["data"] = more.concat(train_rows)
    lines: list[str] = []
    grown = dataclasses.replace(config, manifest_hash="m2")
    done = train(_model(), lambda: current["data"], selection=val.concat(more_val), config=grown, log=lines.append)
    rows = [h["rows"] for h in done.history]
    assert rows == [len(train_rows), len(train_rows) + len(more), len(train_rows) + len(more)]
    assert any("restarting the epoch on the current data" in line for line in lines)
    assert "data changed since the checkpoint: the best epoch is chosen again on the current data" in lines
    assert done.metrics["epoch"] >= 1  # the best epoch is one scored on the current validation rows


def test_progress_lines_show_step_samples_rate_and_eta(tmp_path: Path):
    train_rows, val = _data()
    lines: list[str] = []
    seen: list[dict] = []
    config = _config(tmp_path, epochs=1, progress_seconds=0.0, control_poll_seconds=0.0)
    train(_model(), train_rows, selection=val, config=config, log=lines.append,
          control=lambda p: seen.append(p) or "continue")
    progress = [line for line in lines if line.startswith("step ")]
    assert progress and all(" samples " in line and "samples/s" in line and "ETA" in line for line in progress)
    assert f"samples {len(train_rows):,}/{len(train_rows):,}" in progress[-1]
    last = seen[-1]
    assert {"step", "total_steps", "epoch", "samples", "samples_total", "rate", "eta_seconds"} <= last.keys()
    assert last["samples"] == len(train_rows) and last["step"] == math.ceil(len(train_rows) / BATCH)


def test_fresh_model_fits_input_scaling_and_warm_start_keeps_it(tmp_path: Path):
    train_rows, val = _data()
    # Features in their own units, far from zero mean and unit variance.
    train_rows.audio, val.audio = train_rows.audio * 500 + 1000, val.audio * 500 + 1000
    lines: list[str] = []
    first = train(_model(), train_rows, selection=val, config=_config(tmp_path / "a", learning_rate=2e-2), log=lines.append)
    assert any(line.startswith("fitted input scaling on") for line in lines)
    assert torch.allclose(first.state_dict["audio_scale.mean"], train_rows.audio.mean(0))
    assert first.metrics["selection_accuracy"] > 0.6  # it still learns from the raw units
    warm = _model()
    warm.load_state_dict(first.state_dict)
    shifted = train_rows.subset(torch.arange(len(train_rows)))
    shifted.audio = shifted.audio + 7
    again = train(warm, shifted, selection=val, config=_config(tmp_path / "b", epochs=1), log=_quiet())
    assert torch.equal(again.state_dict["audio_scale.mean"], first.state_dict["audio_scale.mean"])


def test_bf16_autocast_trains_on_the_same_code_path(tmp_path: Path):
    train_rows, val = _data()
    result = train(_model(), train_rows, selection=val, config=_config(tmp_path, epochs=1, bf16=True), log=_quiet())
    assert result.status == "finished" and math.isfinite(result.history[0]["train_loss"])
    assert all(v.dtype == torch.float32 for k, v in result.state_dict.items() if not k.endswith("fitted"))
