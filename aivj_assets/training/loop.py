"""The training loop: AdamW, warm-up plus cosine schedule, checkpoints that resume exactly.

Everything a resumed run needs to continue as if never stopped (weights, optimizer,
schedule, RNG states, epoch and position, rule counters, the epoch's rows) lives in each
checkpoint. A NaN/Inf loss restores the last healthy checkpoint with half the learning rate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aivj_assets.training.checkpoints import CheckpointManager
from aivj_assets.training.config import TrainConfig, TrainError, TrainResult, resolve_device
from aivj_assets.training.dataset import PairTensors
from aivj_assets.training.divergence import Counters, judge_epoch
from aivj_assets.training.metrics import evaluate, weighted_bce
from aivj_assets.training.run_state import (
    EpochRows,
    LossLog,
    clone_state,
    get_rng_state,
    progress_line,
    seed_everything,
    set_rng_state,
)

__all__ = ["TrainConfig", "TrainError", "TrainResult", "resolve_device", "train"]

_FLUSH_STEPS = 32  # losses are read back (one device sync) every this many steps


@dataclass
class _Run:
    """The loop's mutable position; with the model and optimizer, what a checkpoint holds."""

    step: int = 0
    epoch: int = 0
    pos: int = 0  # batches done in the current epoch
    samples: int = 0
    seconds: float = 0.0  # training seconds before this process
    epoch_seconds: float = 0.0
    epoch_loss_sum: float = 0.0
    epoch_loss_count: int = 0
    finished: bool = False
    counters: Counters = field(default_factory=Counters)
    history: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    best_model: dict[str, torch.Tensor] | None = None


def _schedule(cfg: TrainConfig, run: _Run, n_batches: int) -> float:
    """Learning rate now: linear warm-up by step, cosine by progress through the epochs."""
    warm = min(1.0, (run.step + 1) / cfg.warmup_steps) if cfg.warmup_steps > 0 else 1.0
    progress = min(1.0, (run.epoch + run.pos / max(n_batches, 1)) / max(cfg.epochs, 1))
    cosine = cfg.min_lr_fraction + (1 - cfg.min_lr_fraction) * 0.5 * (1 + math.cos(math.pi * progress))
    return cfg.learning_rate * run.counters.lr_scale * warm * cosine


def train(
    model: nn.Module,
    data: PairTensors | Callable[[], PairTensors],
    *,
    selection: PairTensors,
    config: TrainConfig,
    control: Callable[[dict[str, Any]], str] | None = None,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train ``model`` for ``config.epochs``, resuming this identity's latest checkpoint if any.

    ``selection`` rows pick the best epoch and drive the per-epoch rules; the rows that judge
    the result (gate rows, elite judging rows) are never handed to training.
    """
    return _Trainer(model, data, selection, config, control, log).run()


class _Trainer:
    def __init__(self, model, data, selection, cfg: TrainConfig, control, log) -> None:
        self.cfg, self.log, self.control = cfg, log, control
        self.device = resolve_device(cfg.device)
        self.model = model.to(self.device)
        self.get_data = data if callable(data) else (lambda: data)
        self.selection = selection.to(self.device)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        self.ckpt = CheckpointManager(cfg.checkpoint_dir, cfg.identity, cfg.checkpoint_keep,
                                      background=cfg.checkpoint_background)
        self.loss_log = LossLog(cfg.loss_log) if cfg.loss_log else None
        self.run_ = _Run()
        self.rows = EpochRows()
        self.pending: list[tuple[int, torch.Tensor]] = []
        self.faults_fired: set[int] = set()
        self.last_checkpoint: str | None = None
        self.resumed_from: str | None = None
        # bf16 autocast where asked; otherwise no context at all (it costs time on every step).
        self.autocast = (lambda: torch.autocast(self.device.type, dtype=torch.bfloat16)) if cfg.bf16 else nullcontext

    # --- checkpoints -------------------------------------------------------------------
    def _payload(self) -> dict[str, Any]:
        r = self.run_
        return {
            "format": 1,
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": {"kind": "warmup_cosine", "lr_scale": r.counters.lr_scale, "base_lr": self.cfg.learning_rate},
            "rng": get_rng_state(),
            "epoch": r.epoch, "pos": r.pos, "samples": r.samples,
            "seconds": r.seconds + (time.monotonic() - self.t0),
            "epoch_seconds": r.epoch_seconds + (time.monotonic() - self.epoch_t0),
            "epoch_loss_sum": r.epoch_loss_sum, "epoch_loss_count": r.epoch_loss_count,
            "finished": r.finished,
            "counters": r.counters.to_dict(),
            "history": r.history, "events": r.events,
            "best_model": r.best_model,
            "epoch_rows": self.rows.to_payload(),
            "manifest_hash": self.cfg.manifest_hash,
        }

    def _save(self, status: str = "running") -> None:
        path = self.ckpt.save(self.run_.step, self._payload(), status=status, epoch=self.run_.epoch,
                              manifest_hash=self.cfg.manifest_hash)
        self.last_checkpoint = path.stem

    def _restore(self, path: Path) -> None:
        p = self.ckpt.load(path)
        try:
            self.model.load_state_dict(p["model"])
        except RuntimeError as exc:
            raise ValueError(f"{path}: checkpoint does not fit this model: {str(exc).splitlines()[0]}") from None
        self.opt.load_state_dict(p["optimizer"])
        set_rng_state(p["rng"])
        r = self.run_
        r.step, r.epoch, r.pos, r.samples = int(p["step"]), int(p["epoch"]), int(p["pos"]), int(p["samples"])
        r.seconds, r.epoch_seconds = float(p["seconds"]), float(p["epoch_seconds"])
        r.epoch_loss_sum, r.epoch_loss_count = float(p["epoch_loss_sum"]), int(p["epoch_loss_count"])
        r.finished = bool(p["finished"])
        r.counters = Counters.from_dict(p["counters"])
        r.history, r.events, r.best_model = list(p["history"]), list(p["events"]), p["best_model"]
        self.rows = EpochRows.from_payload(p["epoch_rows"])
        if p.get("manifest_hash", "") != self.cfg.manifest_hash:
            # Scores from other validation rows are not comparable with the coming ones: the
            # best epoch so far and the rules' streaks start again on the current data.
            r.counters.best_epoch, r.counters.best_score = -1, []
            r.counters.rise_streak = r.counters.worsen_streak = 0
            r.best_model = None
            self.log("data changed since the checkpoint: the best epoch is chosen again on the current data")
        self.t0 = self.epoch_t0 = time.monotonic()
        self.samples0 = r.samples
        self.last_checkpoint = path.stem
        if self.loss_log:
            self.loss_log.truncate_after(r.step)

    def _start(self) -> None:
        cfg = self.cfg
        source: Path | None = None
        if isinstance(cfg.resume, Path | str) and not isinstance(cfg.resume, bool):
            source = Path(cfg.resume)
            if not source.is_file():
                raise FileNotFoundError(f"resume checkpoint {source} does not exist")
        elif cfg.resume:
            source = self.ckpt.latest()
            state = self.ckpt.state() or {}
            if source is not None and state.get("status") == "finished" and \
                    state.get("manifest_hash", "") != cfg.manifest_hash:
                source = None  # a training that finished on other data is done: this data starts afresh
        if source is not None:
            self._restore(source)
            self.resumed_from = source.stem
            r = self.run_
            where = "finished" if r.epoch >= cfg.epochs else f"epoch {r.epoch + 1}/{cfg.epochs}, batch {r.pos}"
            self.log(f"resumed from {source.stem} (step {r.step}, {where})")
            return
        removed = self.ckpt.clear()
        if removed:
            self.log(f"fresh start for {cfg.identity!r}: removed {len(removed)} checkpoints of another training")
        if self.loss_log:
            self.loss_log.truncate_after(0)
        seed_everything(cfg.seed)
        self._save()  # step_0000: the first healthy point a NaN can fall back to

    # --- losses and divergence ---------------------------------------------------------
    def _flush(self) -> int | None:
        """Read pending losses back; the first step whose loss is NaN/Inf, or None."""
        if not self.pending:
            return None
        values = torch.stack([v for _, v in self.pending]).float().cpu().tolist()
        steps = [s for s, _ in self.pending]
        self.pending.clear()
        for s, v in zip(steps, values, strict=True):
            if not math.isfinite(v):
                return s
        self.run_.epoch_loss_sum += sum(values)
        self.run_.epoch_loss_count += len(values)
        if self.loss_log:
            self.loss_log.append(steps, values)
        return None

    def _recover(self, bad_step: int) -> None:
        """Back to the last healthy checkpoint with half the learning rate, or fail."""
        c = self.run_.counters
        if c.nan_recoveries >= self.cfg.nan_max_recoveries:
            raise TrainError(
                f"training {self.cfg.identity!r} diverged: loss NaN/Inf at step {bad_step} after "
                f"{c.nan_recoveries} recoveries (limit nan_max_recoveries={self.cfg.nan_max_recoveries}); "
                f"learning rate already scaled to {c.lr_scale:g}x; last healthy checkpoint: {self.last_checkpoint}"
            )
        counters, events, history = Counters.from_dict(c.to_dict()), self.run_.events, self.run_.history
        target = self.ckpt.latest()
        if target is None:
            raise TrainError(f"loss NaN/Inf at step {bad_step} and no healthy checkpoint in {self.ckpt.directory}")
        self._restore(target)
        counters.nan_recoveries += 1
        counters.lr_scale /= 2
        self.run_.counters, self.run_.events, self.run_.history = counters, events, history
        msg = (f"loss was NaN/Inf at step {bad_step}; restored {target.stem} and halved the learning rate "
               f"(now {counters.lr_scale:g}x), recovery {counters.nan_recoveries}/{self.cfg.nan_max_recoveries}")
        events.append({"kind": "nan_recovered", "epoch": self.run_.epoch, "step": bad_step, "message": msg})
        self.log(msg)
        self._save()  # the counters and halved rate must survive a crash right after

    # --- control -------------------------------------------------------------------------
    def _progress(self, n: int, n_batches: int) -> dict[str, Any]:
        r, cfg = self.run_, self.cfg
        elapsed = max(time.monotonic() - self.t0, 1e-9)
        rate = (r.samples - self.samples0) / elapsed
        left_epochs = max(cfg.epochs - r.epoch - 1, 0)
        samples_total = r.samples + max(n - r.pos * cfg.batch_size, 0) + left_epochs * n
        return {
            "step": r.step, "total_steps": r.step + (n_batches - r.pos) + left_epochs * n_batches,
            "epoch": r.epoch, "epochs": cfg.epochs, "samples": r.samples, "samples_total": samples_total,
            "rate": rate, "eta_seconds": (samples_total - r.samples) / rate if rate > 0 else None,
            "lr": self.opt.param_groups[0]["lr"],
        }

    def _ask(self, progress: dict[str, Any]) -> str:
        self.next_poll = time.monotonic() + self.cfg.control_poll_seconds
        if self.control is None:
            return "continue"
        decision = self.control(progress)
        if decision not in ("continue", "pause", "stop"):
            raise ValueError(f"training control returned {decision!r}; expected 'continue', 'pause' or 'stop'")
        return decision

    # --- the loop --------------------------------------------------------------------------
    def run(self) -> TrainResult:
        try:
            return self._run()
        finally:
            self.ckpt.close()  # every checkpoint is on disk when train() returns or raises

    def _run(self) -> TrainResult:
        cfg, r = self.cfg, self.run_
        self.t0 = self.epoch_t0 = time.monotonic()
        self.next_poll = self.next_log = self.t0
        self.samples0 = 0
        self._start()
        decision = self._ask(self._progress(0, 0))
        while decision == "continue" and r.epoch < cfg.epochs:
            data = self.rows.epoch_data(self.get_data, r, self.log, self.device,
                                        realign=not self.cfg.restart_epoch_on_new_data)
            n, bs = len(data), cfg.batch_size
            n_batches = math.ceil(n / bs)
            if n == 0:
                raise ValueError(f"training {cfg.identity!r}: no training rows for epoch {r.epoch + 1}")
            if r.step == 0 and hasattr(self.model, "fit_input_scaling"):
                # A fresh model learns its input scaling from the first epoch's rows; a
                # warm-started one keeps its own (fit_input_scaling then does nothing).
                if self.model.fit_input_scaling(data.audio, data.preset):
                    self.log(f"fitted input scaling on {n:,} training rows")
            g = torch.Generator().manual_seed((cfg.seed * 1_000_003 + r.epoch) % (1 << 63))
            perm = torch.randperm(n, generator=g).to(self.device)
            restarted = False
            while r.pos < n_batches:
                idx = perm[r.pos * bs : (r.pos + 1) * bs]
                lr = _schedule(cfg, r, n_batches)
                for group in self.opt.param_groups:
                    group["lr"] = lr
                with self.autocast():
                    logits = self.model(data.audio[idx], data.preset[idx])
                loss = weighted_bce(logits, data.label[idx], data.weight[idx])
                if r.step + 1 in cfg.fault_nan_at_steps and (cfg.fault_nan_repeat or r.step + 1 not in self.faults_fired):
                    self.faults_fired.add(r.step + 1)
                    loss = loss * float("nan")
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                self.opt.step()
                r.step += 1
                r.pos += 1
                r.samples += int(idx.shape[0])
                self.pending.append((r.step, loss.detach()))
                checkpoint_due = cfg.checkpoint_every > 0 and r.step % cfg.checkpoint_every == 0
                now = time.monotonic()
                poll_due, log_due = now >= self.next_poll, now >= self.next_log
                if checkpoint_due or poll_due or log_due or len(self.pending) >= _FLUSH_STEPS:
                    bad = self._flush()
                    if bad is not None:
                        self._recover(bad)
                        restarted = True
                        break
                if checkpoint_due:
                    self._save()
                if log_due:
                    self.next_log = now + cfg.progress_seconds
                    self.log(progress_line(self._progress(n, n_batches), self.run_epoch_loss()))
                if poll_due:
                    decision = self._ask(self._progress(n, n_batches))
                    if decision != "continue":
                        break
            if restarted:
                continue
            if decision != "continue":
                bad = self._flush()
                if bad is not None:
                    self._recover(bad)
                self._save(status=decision)
                self.log(f"{decision} at step {r.step} (epoch {r.epoch + 1}); checkpoint {self.last_checkpoint}")
                break
            bad = self._flush()
            if bad is not None:
                self._recover(bad)
                continue
            self._end_epoch(n, n_batches)
            decision = self._ask(self._progress(n, n_batches))
            if decision != "continue" and r.epoch < cfg.epochs:
                self._save(status=decision)
                self.log(f"{decision} at the end of epoch {r.epoch}; checkpoint {self.last_checkpoint}")
        if r.epoch >= cfg.epochs:
            if not r.finished:
                r.finished = True
                self._save(status="finished")
            return self._result("finished")
        return self._result("paused" if decision == "pause" else "stopped")

    def run_epoch_loss(self) -> float:
        r = self.run_
        return r.epoch_loss_sum / r.epoch_loss_count if r.epoch_loss_count else math.nan

    def _end_epoch(self, n: int, n_batches: int) -> None:
        r, cfg = self.run_, self.cfg
        v = evaluate(self.model, self.selection, device=self.device)
        record = {
            "epoch": r.epoch + 1, "step": r.step, "train_loss": self.run_epoch_loss(),
            "selection_loss": v["loss"], "selection_accuracy": v["accuracy"], "selection_f1": v["f1"],
            "selection_precision": v["precision"], "selection_recall": v["recall"],
            "lr": self.opt.param_groups[0]["lr"], "rows": n,
            "seconds": r.epoch_seconds + (time.monotonic() - self.epoch_t0),
        }
        r.history.append(record)
        best_before = r.counters.best_epoch
        events, restore = judge_epoch(r.history, r.counters, val_loss_rise_epochs=cfg.val_loss_rise_epochs,
                                      loss_change_max=cfg.loss_change_max, worsen_epochs=cfg.worsen_epochs)
        if r.counters.best_epoch != best_before:
            r.best_model = clone_state(self.model.state_dict())
        if restore and r.best_model is not None:
            self.model.load_state_dict(r.best_model)
        for ev in events:
            self.log(f"[{ev['kind']}] epoch {ev['epoch']}: {ev['message']}")
        r.events.extend(events)
        self.log(
            f"epoch {r.epoch + 1}/{cfg.epochs} done: train loss {record['train_loss']:.4f}, selection loss "
            f"{record['selection_loss']:.4f}, selection acc {record['selection_accuracy']:.4f}, "
            f"selection F1 {record['selection_f1']:.4f}, {record['seconds']:.1f}s"
        )
        r.epoch, r.pos = r.epoch + 1, 0
        r.finished = r.epoch >= cfg.epochs  # the last epoch's checkpoint is also the final one
        r.epoch_loss_sum, r.epoch_loss_count, r.epoch_seconds = 0.0, 0, 0.0
        self.epoch_t0 = time.monotonic()
        self._save(status="finished" if r.finished else "running")

    def _result(self, status: str) -> TrainResult:
        r = self.run_
        best = r.counters.best_epoch
        if status == "finished" and r.best_model is not None:
            state = clone_state(r.best_model)
        else:
            state = clone_state(self.model.state_dict())
        record = next((h for h in r.history if h["epoch"] == best), r.history[-1] if r.history else {})
        metrics = {k: record[k] for k in ("selection_loss", "selection_accuracy", "selection_f1",
                                          "selection_precision", "selection_recall", "train_loss") if k in record}
        metrics.update(epoch=record.get("epoch"), epochs_done=r.epoch, nan_recoveries=r.counters.nan_recoveries,
                       restored_best=r.counters.restored_best, lr_scale=r.counters.lr_scale,
                       config={k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self.cfg).items()})
        return TrainResult(
            status=status, state_dict=state, history=list(r.history), events=list(r.events), metrics=metrics,
            steps=r.step, samples=r.samples, seconds=r.seconds + (time.monotonic() - self.t0),
            resumed_from=self.resumed_from, checkpoint=self.last_checkpoint, best_epoch=best,
        )
