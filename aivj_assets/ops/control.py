"""Pause flag and the training loop's go-on/pause/stop decision (no Dagster).

The pause flag is a durable JSON file in ``settings.state_dir``: ``aivj pause``, the
Telegram ``/pause`` command and the schedule all read and write the same file, so a
pause survives restarts and reaches a running loop within one control poll.
"""

from __future__ import annotations

import gc
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from aivj_assets.data.atomic import read_json, write_json_atomic
from aivj_assets.ops.monitor import SystemMonitor, gpu_pressure
from aivj_assets.ops.notifier import notify
from aivj_assets.settings import Settings
from aivj_assets.settings.window import utc_now

log = logging.getLogger("aivj.control")

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class PauseState:
    paused: bool
    by: str
    at: str  # ISO-8601 with offset; "" when never set

    def line(self) -> str:
        """``paused: yes (by X at T)`` or ``paused: no``: the line ``aivj status`` shows."""
        if self.paused:
            return f"paused: yes (by {self.by} at {self.at})"
        return "paused: no" + (f" (resumed by {self.by} at {self.at})" if self.at else "")


class PauseFlag:
    """The durable pause flag shared by the CLI, Telegram, the schedule and the loop."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def for_settings(cls, settings: Settings) -> PauseFlag:
        """The flag of this platform home."""
        return cls(settings.state_dir / "pause.json")

    def state(self) -> PauseState:
        """Current state; a missing or damaged file reads as not paused."""
        raw = read_json(self.path, {})
        if not isinstance(raw, dict):
            raw = {}
        return PauseState(bool(raw.get("paused", False)), str(raw.get("by", "")), str(raw.get("at", "")))

    def _set(self, paused: bool, by: str) -> PauseState:
        state = PauseState(paused, by, utc_now().isoformat(timespec="seconds"))
        write_json_atomic(self.path, asdict(state))
        return state

    def pause(self, by: str) -> PauseState:
        """Pause training; the loop checkpoints within one control poll."""
        return self._set(True, by)

    def resume(self, by: str) -> PauseState:
        """Let training go on."""
        return self._set(False, by)


def progress_path(settings: Settings) -> Path:
    """Where the running loop's latest progress is kept for ``/status``."""
    return settings.state_dir / "progress.json"


def read_progress(settings: Settings) -> dict[str, Any]:
    """The last progress a training loop reported (empty if none)."""
    raw = read_json(progress_path(settings), {})
    return raw if isinstance(raw, dict) else {}


def describe_progress(progress: dict[str, Any]) -> str:
    """``step 120/400, 61,440 samples, ETA 12 min``: the words every message uses."""
    step, total = progress.get("step"), progress.get("total_steps")
    parts = [f"step {step}/{total}" if step is not None else "step ?"]
    if progress.get("samples") is not None:
        parts.append(f"{int(progress['samples']):,} samples")
    eta = progress.get("eta_seconds")
    if eta is not None:
        parts.append(f"ETA {float(eta) / 60:.0f} min")
    return ", ".join(parts)


class TrainingControl:
    """The callable the training loop polls: "continue", "pause" or "stop".

    "stop" at or after ``deadline`` (the window closed: checkpoint, end resumable);
    "pause" when the pause flag is set or the GPU runs hot or nearly out of memory.
    ``reason`` says why the last non-"continue" answer was given.
    """

    def __init__(self, settings: Settings, deadline: datetime | None, *, monitor: SystemMonitor | None = None,
                 clock: Clock = utc_now, progress_every: float = 10.0) -> None:
        self.settings = settings
        self.deadline = deadline
        self.monitor = monitor or SystemMonitor(settings)
        self.clock = clock
        self.flag = PauseFlag.for_settings(settings)
        self.reason = ""
        self.last_progress: dict[str, Any] = {}
        self._progress_every = progress_every
        self._progress_written = 0.0

    def __call__(self, progress: dict[str, Any]) -> str:
        self.last_progress = dict(progress)
        self._save_progress(progress)
        if self.deadline is not None and self.clock() >= self.deadline:
            self.reason = f"window closed at {self.deadline.isoformat(timespec='minutes')}"
            notify(self.settings, "window_closed",
                   f"Training window closed: checkpointed at {describe_progress(progress)}; resumes next night.")
            return "stop"
        state = self.flag.state()
        if state.paused:
            self.reason = f"paused by {state.by} at {state.at}"
        else:
            hot = gpu_pressure(self.settings, self.monitor.read_gpus_only(), was_hot=False)
            if hot is None:
                return "continue"
            self.reason = hot
        notify(self.settings, "paused", f"Training paused ({self.reason}) at {describe_progress(progress)}.")
        return "pause"

    def _save_progress(self, progress: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - self._progress_written < self._progress_every:
            return
        self._progress_written = now
        try:
            write_json_atomic(progress_path(self.settings),
                              {**_plain(progress), "at": self.clock().isoformat(timespec="seconds")})
        except OSError as exc:  # progress is informative only; never stop training for it
            log.warning("could not record training progress: %s", exc)


def _plain(progress: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in progress.items() if isinstance(v, (int, float, str, bool)) or v is None}


def training_control(settings: Settings, deadline: datetime | None = None) -> Callable[[dict[str, Any]], str]:
    """The callable the training loop polls: returns "continue", "pause" or "stop"."""
    return TrainingControl(settings, deadline)


def _release_gpu_memory() -> None:
    """Hand the paused training's cached GPU memory back to the driver: PyTorch keeps what it
    freed, so a pause for GPU memory would otherwise count this process's own cache and never
    see the memory fall under the limit."""
    torch = sys.modules.get("torch")  # only a process that trained has anything cached
    if torch is not None and torch.cuda.is_available():
        gc.collect()  # the stopped loop's model and optimizer tensors
        torch.cuda.empty_cache()


def wait_while_paused(settings: Settings, deadline: datetime | None, *, poll: float = 5.0,
                      clock: Clock = utc_now, sleep: Callable[[float], None] = time.sleep,
                      monitor: SystemMonitor | None = None, checkpoint: str | None = None) -> str:
    """Block while training must stay paused; returns "resume" or "deadline".

    Resumes when the flag is clear and the GPU is back under the cool thresholds
    (hysteresis), and tells the owner so, naming the ``checkpoint`` it goes on from: a second
    pause and resume minutes later is news too, not a duplicate the notifier would hold back.
    """
    monitor = monitor or SystemMonitor(settings)
    flag = PauseFlag.for_settings(settings)
    _release_gpu_memory()
    while True:
        if deadline is not None and clock() >= deadline:
            return "deadline"
        state = flag.state()
        if not state.paused and gpu_pressure(settings, monitor.read_gpus_only(), was_hot=True) is None:
            notify(settings, "resumed", f"Training resumed from checkpoint {checkpoint}." if checkpoint
                   else "Training resumed from its checkpoint.")
            return "resume"
        sleep(poll)
