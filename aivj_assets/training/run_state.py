"""The run state the loop saves and restores: its position and memory (:class:`RunState`), RNG
states, the epoch's rows, and the loss log."""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aivj_assets.training.dataset import PairTensors
from aivj_assets.training.divergence import Counters


@dataclass
class RunState:
    """The loop's position and memory: with the model, optimizer and generators, what a checkpoint
    holds. A new piece of state is a new field here, and :meth:`state_dict` carries it."""

    step: int = 0
    epoch: int = 0
    pos: int = 0  # batches done in the current epoch
    samples: int = 0
    seconds: float = 0.0  # training seconds before this process
    epoch_seconds: float = 0.0  # of the current epoch, before this process
    epoch_loss_sum: float = 0.0
    epoch_loss_count: int = 0
    finished: bool = False
    counters: Counters = field(default_factory=Counters)
    history: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    best_model: dict[str, torch.Tensor] | None = None
    rows: EpochRows = field(default_factory=lambda: EpochRows())

    def state_dict(self) -> dict[str, Any]:
        """Plain values and tensors only: a checkpoint loads with ``weights_only=True``."""
        return {
            "epoch": self.epoch, "pos": self.pos, "samples": self.samples, "seconds": self.seconds,
            "epoch_seconds": self.epoch_seconds, "epoch_loss_sum": self.epoch_loss_sum,
            "epoch_loss_count": self.epoch_loss_count, "finished": self.finished,
            "counters": self.counters.to_dict(), "history": self.history, "events": self.events,
            "best_model": self.best_model, "epoch_rows": self.rows.to_payload(),
        }

    def load_state_dict(self, d: dict[str, Any]) -> None:
        """Put back what :meth:`state_dict` returned (``step`` is the checkpoint's own)."""
        self.step, self.epoch, self.pos, self.samples = int(d["step"]), int(d["epoch"]), int(d["pos"]), int(d["samples"])
        self.seconds, self.epoch_seconds = float(d["seconds"]), float(d["epoch_seconds"])
        self.epoch_loss_sum, self.epoch_loss_count = float(d["epoch_loss_sum"]), int(d["epoch_loss_count"])
        self.finished = bool(d["finished"])
        self.counters = Counters.from_dict(d["counters"])
        self.history, self.events, self.best_model = list(d["history"]), list(d["events"]), d["best_model"]
        self.rows = EpochRows.from_payload(d["epoch_rows"])

    def forget_best(self) -> None:
        """Scores from other selection rows are not comparable with the coming ones: the best epoch
        so far and the rules' streaks start again on the current data."""
        self.counters.best_epoch, self.counters.best_score = -1, []
        self.counters.rise_streak = self.counters.worsen_streak = 0
        self.best_model = None

    def new_epoch(self) -> None:
        """Move to the next epoch's start."""
        self.epoch, self.pos = self.epoch + 1, 0
        self.epoch_loss_sum, self.epoch_loss_count, self.epoch_seconds = 0.0, 0, 0.0


def clone_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A CPU copy of a state dict that later training steps cannot change."""
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) from one run seed: a model's initial weights
    and every later draw then follow from the settings alone."""
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


def get_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch and CUDA generator states as tensors and plain values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [str(kind), torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss),
                  float(cached)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Put back what :func:`get_rng_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _align(data: PairTensors, ids: np.ndarray) -> PairTensors | None:
    """``data``'s rows in the order of ``ids``, or None when some of those rows are gone."""
    current = data.row_ids()
    order = np.argsort(current, kind="stable")
    ordered = current[order]
    at = np.searchsorted(ordered, ids)
    at_clipped = np.minimum(at, len(ordered) - 1)
    if len(ordered) == 0 or not bool((ordered[at_clipped] == ids).all()):
        return None
    return data.subset(order[at_clipped])


class EpochRows:
    """Which rows the current epoch trains on, so a resumed epoch sees exactly them.

    New rows join at the next epoch boundary: when a run resumes mid-epoch and the data
    has grown meanwhile, the epoch continues over its original rows, in their order.
    """

    def __init__(self, fingerprint: str = "", ids: np.ndarray | None = None) -> None:
        self.fingerprint, self.ids = fingerprint, ids
        self._cache: PairTensors | None = None
        self._cache_fp = ""

    def to_payload(self) -> dict[str, Any]:
        ids = None if self.ids is None else torch.from_numpy(self.ids.view(np.int64).copy())
        return {"fingerprint": self.fingerprint, "ids": ids}

    @classmethod
    def from_payload(cls, p: dict[str, Any]) -> EpochRows:
        ids = None if p.get("ids") is None else p["ids"].numpy().view(np.uint64)
        return cls(str(p.get("fingerprint", "")), ids)

    def epoch_data(self, get_data: Callable[[], PairTensors], run: Any, log: Callable[[str], None],
                   device: torch.device, *, realign: bool = True) -> PairTensors:
        """This epoch's rows on ``device``: fresh data at an epoch start, the same rows mid-epoch."""
        if run.pos > 0 and self._cache is not None and self._cache_fp == self.fingerprint:
            return self._cache
        data = get_data()
        ids = data.row_ids()
        fp = data.fingerprint(ids)
        if run.pos > 0 and fp != self.fingerprint:
            aligned = _align(data, self.ids) if self.ids is not None and realign else None
            if aligned is None:
                log(f"rows of epoch {run.epoch + 1} changed since the checkpoint; restarting the epoch on the current data")
                run.pos, run.epoch_loss_sum, run.epoch_loss_count = 0, 0.0, 0
            else:
                log(f"data changed since the checkpoint: finishing epoch {run.epoch + 1} on its rows; new rows join next epoch")
                data = aligned
                ids = data.row_ids()
                fp = data.fingerprint(ids)
        if fp != self._cache_fp or self._cache is None:
            self._cache, self._cache_fp = data.to(device), fp
        self.fingerprint, self.ids = fp, ids
        return self._cache


class LossLog:
    """``step loss`` lines, one per optimizer step, of the trajectory that survived."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def append(self, steps: list[int], values: list[float]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write("".join(f"{s} {v!r}\n" for s, v in zip(steps, values, strict=True)))

    def truncate_after(self, step: int) -> None:
        """Drop lines past ``step`` (written before a crash or a NaN, then replayed)."""
        if not self.path.exists():
            return
        keep = [ln for ln in self.path.read_text(encoding="utf-8").splitlines() if ln and int(ln.split()[0]) <= step]
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("".join(ln + "\n" for ln in keep))
        os.replace(tmp, self.path)

    def read(self) -> list[tuple[int, float]]:
        """Every logged (step, loss)."""
        if not self.path.exists():
            return []
        return [(int(a), float(b)) for a, b in (ln.split() for ln in self.path.read_text().splitlines() if ln)]


def progress_line(p: dict[str, Any], loss: float) -> str:
    """One human line: step, epoch, samples done/total, loss, rate and ETA."""
    eta = "?" if p.get("eta_seconds") is None else str(timedelta(seconds=int(p["eta_seconds"])))
    return (
        f"step {p['step']}/{p['total_steps']} | epoch {p['epoch'] + 1}/{p['epochs']} | "
        f"samples {p['samples']:,}/{p['samples_total']:,} | loss {loss:.4f} | lr {p['lr']:.2e} | "
        f"{p['rate']:,.0f} samples/s | ETA {eta}"
    )
