"""When checkpoints are written, which are kept, and which one a restart resumes from.

A folder holds ``step_XXXX.pth`` files (plain dicts of tensors and values, written
atomically) and ``train_state.json``, which names the training (its identity) and its
latest checkpoint. The loop only asks this manager; it never touches the files itself.
"""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from aivj_assets.data.atomic import write_json_atomic
from aivj_assets.training.model import UnsafeWeightsError, atomic_torch_save, safe_load

STATE_FILE = "train_state.json"
_STEP_FILE = re.compile(r"^step_(\d+)\.pth$")


class CheckpointManager:
    """Owns one training's checkpoint folder: save, keep the newest ``keep``, find the latest."""

    def __init__(self, directory: Path, identity: str, keep: int = 5, background: bool = False,
                 every: int = 0) -> None:
        self.directory = Path(directory)
        self.identity = identity
        self.keep = max(1, int(keep))
        self.every = int(every)  # steps between checkpoints inside an epoch (0: only at epoch ends)
        # With ``background``, files are written by one worker thread from a CPU snapshot, so
        # training goes on meanwhile; writes stay in order and each is atomic, so a kill
        # mid-write leaves the previous checkpoint as the latest.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint") if background else None
        self._pending: Future | None = None

    def due(self, step: int) -> bool:
        """Whether a checkpoint is due after optimizer step ``step`` (epoch ends always save)."""
        return self.every > 0 and step % self.every == 0

    @staticmethod
    def name(step: int) -> str:
        return f"step_{step:04d}.pth"

    def steps(self) -> list[int]:
        """Steps of the checkpoint files present, ascending."""
        if not self.directory.is_dir():
            return []
        found = (_STEP_FILE.match(p.name) for p in self.directory.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def state(self) -> dict[str, Any] | None:
        """``train_state.json`` as a dict, or None when absent or unreadable."""
        path = self.directory / STATE_FILE
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def latest(self) -> Path | None:
        """This identity's newest checkpoint file, or None (another identity's never counts)."""
        self.wait()
        state = self.state()
        if not state or state.get("identity") != self.identity:
            return None
        named = self.directory / str(state.get("checkpoint", ""))
        if named.is_file() and _STEP_FILE.match(named.name):
            return named
        # The state file names a file that is gone: fall back to the newest one present.
        steps = self.steps()
        return self.directory / self.name(steps[-1]) if steps else None

    def save(self, step: int, payload: dict[str, Any], status: str = "running", **info: Any) -> Path:
        """Write ``step_XXXX.pth``, then point ``train_state.json`` at it, then prune old ones.

        In background mode this returns once a CPU snapshot is taken; :meth:`wait` joins the write.
        """
        path = self.directory / self.name(step)
        if self._pool is None:
            self._write(path, step, payload, status, info)
            return path
        snapshot = _to_cpu(payload)  # the tensors go on changing as training continues
        self.wait()
        self._pending = self._pool.submit(self._write, path, step, snapshot, status, info)
        return path

    def wait(self) -> None:
        """Block until the checkpoint being written (if any) is on disk; re-raise its error."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        """Finish the pending write and stop the worker thread."""
        self.wait()
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def _write(self, path: Path, step: int, payload: dict[str, Any], status: str, info: dict[str, Any]) -> None:
        atomic_torch_save(path, {**payload, "identity": self.identity, "step": step})
        for old in self.steps()[: -self.keep]:
            if old != step:
                (self.directory / self.name(old)).unlink(missing_ok=True)
        write_json_atomic(
            self.directory / STATE_FILE,
            {
                "identity": self.identity,
                "checkpoint": path.name,
                "step": step,
                "status": status,
                "checkpoints": [self.name(s) for s in self.steps()],
                "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                **info,
            },
        )

    def load(self, path: Path) -> dict[str, Any]:
        """A checkpoint's payload, loaded with ``weights_only=True``."""
        self.wait()
        payload = safe_load(path)
        if not isinstance(payload, dict) or "model" not in payload or "step" not in payload:
            raise UnsafeWeightsError(f"{path}: not a training checkpoint (no model/step entries)")
        return payload

    def clear(self) -> list[str]:
        """Remove every checkpoint file and the state file (a fresh start); returns the names removed."""
        self.wait()
        removed = []
        for step in self.steps():
            (self.directory / self.name(step)).unlink(missing_ok=True)
            removed.append(self.name(step))
        (self.directory / STATE_FILE).unlink(missing_ok=True)
        return removed


def _to_cpu(obj: Any) -> Any:
    """A deep copy with every tensor copied to the CPU (containers rebuilt, plain values shared)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_to_cpu(v) for v in obj)
    return obj
