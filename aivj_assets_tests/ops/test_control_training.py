"""The window and the pause flag driving B's real training loop with a tiny model."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import torch

from aivj_assets.ops.control import PauseFlag, TrainingControl, wait_while_paused
from aivj_assets.ops.monitor import Readings, SystemMonitor
from aivj_assets.training.dataset import split_parts, tensors_from_table
from aivj_assets.training.loop import TrainConfig, train
from aivj_assets.training.model import CouplingNet
from aivj_assets_tests.builders import pair_table
from aivj_assets_tests.loopback import BotApi

T0 = datetime(2026, 3, 1, 18, 0, tzinfo=timezone.utc)  # 02:00 in the owner's GMT+8


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Real training here runs with one torch thread (the root conftest's fixture)."""


class StepClock:
    """Advances one minute each time it is read: one control poll per training step."""

    def __init__(self, start: datetime, on_read=None) -> None:
        self.now, self.reads, self.on_read = start, 0, on_read

    def __call__(self) -> datetime:
        self.reads += 1
        if self.on_read:
            self.on_read(self.reads)
        self.now += timedelta(minutes=1)
        return self.now


def _cool(settings) -> SystemMonitor:
    return SystemMonitor(settings, source=lambda: Readings(0.0, 0.0, {}, []))


def _setup(settings):
    data, val = split_parts(tensors_from_table(pair_table(n=600, audio_dim=8, preset_dim=4)), 0.15, 0.05)[:2]
    config = TrainConfig(epochs=3, batch_size=64, learning_rate=1e-2, weight_decay=0.0, seed=1,
                         checkpoint_every=1000, checkpoint_keep=2, checkpoint_dir=settings.checkpoints_dir,
                         identity="nightly-test", device="cpu", control_poll_seconds=0.0)

    def model():
        torch.manual_seed(0)
        return CouplingNet(8, 4, hidden_dim=16, embed_dim=8)

    return data, val, config, model


def test_window_closes_resumably_and_the_next_night_finishes(tg_settings, bot_api: BotApi) -> None:
    data, val, config, model = _setup(tg_settings)
    tonight = TrainingControl(tg_settings, deadline=T0 + timedelta(minutes=10), clock=StepClock(T0),
                              monitor=_cool(tg_settings))
    first = train(model(), data, selection=val, config=config, control=tonight, log=lambda *_: None)
    assert first.status == "stopped" and 0 < first.steps < 24  # 8 steps an epoch, 3 epochs
    assert first.checkpoint and (tg_settings.checkpoints_dir / "train_state.json").exists()
    assert bot_api.texts()[0].startswith(f"[AIVJ] Training window closed: checkpointed at step {first.steps}/24")

    tomorrow = T0 + timedelta(days=1)
    next_night = TrainingControl(tg_settings, deadline=tomorrow + timedelta(hours=4), clock=StepClock(tomorrow),
                                 monitor=_cool(tg_settings))
    second = train(model(), data, selection=val, config=config, control=next_night, log=lambda *_: None)
    assert second.status == "finished" and second.resumed_from is not None
    assert second.steps == 24

    # Bit for bit what one uninterrupted night would have produced.
    config.checkpoint_dir = tg_settings.home / "uninterrupted"
    whole = train(model(), data, selection=val, config=config, control=None, log=lambda *_: None)
    assert all(torch.equal(whole.state_dict[k], second.state_dict[k]) for k in whole.state_dict)


def test_pause_checkpoints_waits_and_resumes(tg_settings, bot_api: BotApi) -> None:
    data, val, config, model = _setup(tg_settings)
    flag = PauseFlag.for_settings(tg_settings)

    def owner_pauses_at_step_5(reads: int) -> None:
        if reads == 5:
            flag.pause(by="telegram:owner")

    control = TrainingControl(tg_settings, deadline=T0 + timedelta(hours=4), clock=StepClock(T0, owner_pauses_at_step_5),
                              monitor=_cool(tg_settings))
    first = train(model(), data, selection=val, config=config, control=control, log=lambda *_: None)
    assert first.status == "paused" and first.checkpoint
    assert control.reason.startswith("paused by telegram:owner")

    polls = []

    def sleep(seconds: float) -> None:  # the owner sends /resume after three polls
        polls.append(seconds)
        if len(polls) == 3:
            flag.resume(by="telegram:owner")

    assert wait_while_paused(tg_settings, control.deadline, poll=5.0, clock=lambda: T0, sleep=sleep,
                             monitor=_cool(tg_settings), checkpoint=first.checkpoint) == "resume"
    second = train(model(), data, selection=val, config=config, control=control, log=lambda *_: None)
    assert second.status == "finished" and second.resumed_from == first.checkpoint and second.steps == 24
    texts = bot_api.texts()
    assert texts[0].startswith("[AIVJ] Training paused (paused by telegram:owner at ") and "/24" in texts[0]
    assert texts[1] == f"[AIVJ] Training resumed from checkpoint {first.checkpoint}."
