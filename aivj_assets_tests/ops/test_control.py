"""Pause flag, the loop's go-on/pause/stop decision, and waiting while paused."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone

from aivj_assets.ops.control import PauseFlag, TrainingControl, read_progress, wait_while_paused
from aivj_assets.ops.monitor import GpuReading, Readings, SystemMonitor
from aivj_assets_tests.loopback import BotApi

T0 = datetime(2026, 3, 1, 18, 0, tzinfo=timezone.utc)
PROGRESS = {"step": 120, "total_steps": 400, "epoch": 1, "samples": 61440, "samples_total": 204800,
            "rate": 900.0, "eta_seconds": 720.0}


class Clock:
    """A settable clock for deadlines."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _gpu_monitor(settings, temps: list[float]) -> SystemMonitor:
    """A monitor that reports the next temperature from ``temps`` at each read (the last one repeats)."""

    def read() -> Readings:
        temp = temps.pop(0) if len(temps) > 1 else temps[0]
        gpu = GpuReading(0, "Test GPU", 1 << 30, 24 << 30, temp, 99.0)
        return Readings(0.0, 0.0, {}, [gpu])

    return SystemMonitor(settings, source=read)


def test_pause_flag_is_durable_and_shared_with_the_cli(aivj_env) -> None:
    flag = PauseFlag.for_settings(aivj_env)
    assert flag.state().paused is False and flag.state().line() == "paused: no"
    state = flag.pause(by="telegram:owner")
    assert state.paused and PauseFlag.for_settings(aivj_env).state() == state
    assert flag.state().line() == f"paused: yes (by telegram:owner at {state.at})"
    # The CLI sees and clears the same flag, in another process.
    out = subprocess.run([sys.executable, "-m", "aivj_assets", "resume", "--by", "cli-test"],
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith("paused: no (by cli-test at ")
    assert flag.state().paused is False and flag.state().by == "cli-test"
    assert json.loads(flag.path.read_text())["paused"] is False


def test_damaged_flag_reads_as_not_paused(aivj_env) -> None:
    flag = PauseFlag.for_settings(aivj_env)
    flag.path.parent.mkdir(parents=True, exist_ok=True)
    flag.path.write_text("{half a file")
    assert flag.state().paused is False


def test_stop_at_the_deadline_with_the_window_closed_message(tg_settings, bot_api: BotApi) -> None:
    clock = Clock(T0)
    control = TrainingControl(tg_settings, deadline=T0 + timedelta(hours=1), clock=clock,
                              monitor=_gpu_monitor(tg_settings, [60.0]))
    assert control(PROGRESS) == "continue"
    clock.now = T0 + timedelta(hours=1)
    assert control(PROGRESS) == "stop"
    assert control.reason.startswith("window closed at")
    assert bot_api.texts() == [
        "[AIVJ] Training window closed: checkpointed at step 120/400, 61,440 samples, ETA 12 min; resumes next night."
    ]
    assert read_progress(tg_settings)["step"] == 120  # /status and `aivj status` read it


def test_no_deadline_means_train_to_the_end(aivj_env) -> None:
    control = TrainingControl(aivj_env, deadline=None, clock=Clock(T0 + timedelta(days=400)),
                              monitor=_gpu_monitor(aivj_env, [60.0]))
    assert control(PROGRESS) == "continue"


def test_pause_flag_and_hot_gpu_pause_the_loop(tg_settings, bot_api: BotApi) -> None:
    control = TrainingControl(tg_settings, deadline=None, monitor=_gpu_monitor(tg_settings, [60.0, 90.0]))
    PauseFlag.for_settings(tg_settings).pause(by="cli")
    assert control(PROGRESS) == "pause" and control.reason.startswith("paused by cli at")
    PauseFlag.for_settings(tg_settings).resume(by="cli")
    assert control(PROGRESS) == "continue"  # GPU at 60°C
    assert control(PROGRESS) == "pause" and "GPU0 at 90°C" in control.reason
    assert len(bot_api.texts()) == 2 and all(t.startswith("[AIVJ] Training paused (") for t in bot_api.texts())


def test_wait_resumes_once_the_gpu_is_under_the_cool_threshold(tg_settings, bot_api: BotApi) -> None:
    temps = [90.0, 82.0, 78.0, 74.0]  # hot, still over cool (75), ..., cool
    sleeps: list[float] = []
    result = wait_while_paused(tg_settings, None, poll=3.0, sleep=sleeps.append,
                               monitor=_gpu_monitor(tg_settings, temps))
    assert result == "resume" and sleeps == [3.0, 3.0, 3.0]
    assert bot_api.texts() == ["[AIVJ] Training resumed from its checkpoint."]
    # Paused and resumed again minutes later, from a later checkpoint: told again, not held back
    # as a duplicate (which would leave "paused" as the owner's last word while training runs).
    for step in ("step_0040", "step_0080"):
        assert wait_while_paused(tg_settings, None, poll=3.0, sleep=sleeps.append,
                                 monitor=_gpu_monitor(tg_settings, [74.0]), checkpoint=step) == "resume"
    assert bot_api.texts()[1:] == ["[AIVJ] Training resumed from checkpoint step_0040.",
                                   "[AIVJ] Training resumed from checkpoint step_0080."]


def test_a_pause_hands_the_cached_gpu_memory_back(aivj_env, monkeypatch) -> None:
    import torch

    emptied = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    # Otherwise the paused process's own cache keeps the GPU memory reading over the limit.
    assert wait_while_paused(aivj_env, None, poll=1.0, sleep=lambda s: None,
                             monitor=_gpu_monitor(aivj_env, [50.0])) == "resume"
    assert emptied == [True]


def test_wait_until_the_flag_is_cleared(aivj_env) -> None:
    flag = PauseFlag.for_settings(aivj_env)
    flag.pause(by="telegram:owner")
    polls = []

    def sleep(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 4:
            flag.resume(by="telegram:owner")

    assert wait_while_paused(aivj_env, None, poll=1.0, sleep=sleep, monitor=_gpu_monitor(aivj_env, [50.0])) == "resume"
    assert len(polls) == 4


def test_wait_ends_at_the_deadline(aivj_env) -> None:
    PauseFlag.for_settings(aivj_env).pause(by="cli")
    clock = Clock(T0)

    def sleep(seconds: float) -> None:
        clock.now += timedelta(seconds=seconds)

    deadline = T0 + timedelta(minutes=10)
    assert wait_while_paused(aivj_env, deadline, poll=60.0, clock=clock, sleep=sleep) == "deadline"
    assert clock.now == deadline
