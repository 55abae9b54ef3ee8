"""The training loop: AdamW, warm-up plus cosine schedule, checkpoints that resume exactly.

Everything a resumed run needs to continue as if never stopped (weights, optimizer,
schedule, RNG states, epoch and position, rule counters, the epoch's rows) lives in each
checkpoint. A NaN/Inf loss restores the last healthy checkpoint with half the learning rate.
The checkpoint manager decides when to save; the control (window, pause, owner) when to stop.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict
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
    LossLog,
    RunState,
    clone_state,
    get_rng_state,
    progress_line,
    seed_everything,
    set_rng_state,
)

__all__ = ["TrainConfig", "TrainError", "TrainResult", "resolve_device", "train"]

_FLUSH_STEPS = 32  # losses are read back (one device sync) every this many steps
_RESTARTED = "restarted"  # an epoch's outcome when a NaN recovery moved the run back


def _schedule(cfg: TrainConfig, run: RunState, n_batches: int) -> float:
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
                                      background=cfg.checkpoint_background, every=cfg.checkpoint_every)
        self.loss_log = LossLog(cfg.loss_log) if cfg.loss_log else None
        self.run_ = RunState()
        self.pending: list[tuple[int, torch.Tensor]] = []
        self.last_checkpoint: str | None = None
        self.resumed_from: str | None = None
        # bf16 autocast where asked; otherwise no context at all (it costs time on every step).
        self.autocast = (lambda: torch.autocast(self.device.type, dtype=torch.bfloat16)) if cfg.bf16 else nullcontext
        self.t0 = self.epoch_t0 = self.next_poll = self.next_log = time.monotonic()
        self.samples0 = 0

    # --- the loop --------------------------------------------------------------------------
    def run(self) -> TrainResult:
        try:
            self._start()
            decision = self._ask(self._progress(0, 0))
            while decision == "continue" and self.run_.epoch < self.cfg.epochs:
                decision = self._epoch()
            return self._finish(decision)
        finally:
            self.ckpt.close()  # every checkpoint is on disk when train() returns or raises

    def _epoch(self) -> str:
        """Train from the current position to the epoch's end; the control's decision then
        ("continue" also after a NaN recovery moved the run back to a checkpoint)."""
        r, cfg = self.run_, self.cfg
        data = r.rows.epoch_data(self.get_data, r, self.log, self.device, realign=not cfg.restart_epoch_on_new_data)
        n, n_batches = len(data), math.ceil(len(data) / cfg.batch_size)
        if n == 0:
            raise ValueError(f"training {cfg.identity!r}: no training rows for epoch {r.epoch + 1}")
        self._fit_scaling(data)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed((cfg.seed * 1_000_003 + r.epoch) % (1 << 63)))
        perm = perm.to(self.device)
        decision = "continue"
        while decision == "continue" and r.pos < n_batches:
            self._step(data, perm[r.pos * cfg.batch_size : (r.pos + 1) * cfg.batch_size], n_batches)
            decision = self._after_step(n, n_batches)
        if decision == _RESTARTED:
            return "continue"
        if decision != "continue":  # paused or stopped mid-epoch
            self._recovered()  # a NaN still pending goes back to the healthy checkpoint, which is kept
            where = f"step {r.step} (epoch {r.epoch + 1})"
        elif self._recovered():
            return "continue"
        else:
            self._end_epoch(n)
            decision = self._ask(self._progress(n, n_batches))
            if decision == "continue" or r.epoch >= cfg.epochs:
                return decision
            where = f"the end of epoch {r.epoch}"
        self._save(status=decision)
        self.log(f"{decision} at {where}; checkpoint {self.last_checkpoint}")
        return decision

    def _step(self, data: PairTensors, idx: torch.Tensor, n_batches: int) -> None:
        """One optimizer step on the rows ``idx``; its loss is read back later, in a batch."""
        r = self.run_
        for group in self.opt.param_groups:
            group["lr"] = _schedule(self.cfg, r, n_batches)
        with self.autocast():
            logits = self.model(data.audio[idx], data.preset[idx])
        loss = weighted_bce(logits, data.label[idx], data.weight[idx])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.opt.step()
        r.step, r.pos, r.samples = r.step + 1, r.pos + 1, r.samples + int(idx.shape[0])
        self.pending.append((r.step, loss.detach()))

    def _after_step(self, n: int, n_batches: int) -> str:
        """Losses, checkpoint, progress line and control, each when due: "continue", the
        control's "pause"/"stop", or a restart after a NaN recovery."""
        r = self.run_
        checkpoint_due = self.ckpt.due(r.step)
        now = time.monotonic()
        poll_due, log_due = now >= self.next_poll, now >= self.next_log
        if (checkpoint_due or poll_due or log_due or len(self.pending) >= _FLUSH_STEPS) and self._recovered():
            return _RESTARTED
        if checkpoint_due:
            self._save()
        if log_due:
            self.next_log = now + self.cfg.progress_seconds
            self.log(progress_line(self._progress(n, n_batches), self._epoch_loss()))
        return self._ask(self._progress(n, n_batches)) if poll_due else "continue"

    def _fit_scaling(self, data: PairTensors) -> None:
        # A fresh model learns its input scaling from the first epoch's rows; a warm-started one
        # keeps its own (fit_input_scaling then does nothing).
        if self.run_.step == 0 and hasattr(self.model, "fit_input_scaling"):
            if self.model.fit_input_scaling(data.audio, data.preset):
                self.log(f"fitted input scaling on {len(data):,} training rows")

    def _finish(self, decision: str) -> TrainResult:
        r = self.run_
        if r.epoch < self.cfg.epochs:
            return self._result("paused" if decision == "pause" else "stopped")
        if not r.finished:
            r.finished = True
            self._save(status="finished")
        return self._result("finished")

    # --- checkpoints -------------------------------------------------------------------------
    def _payload(self) -> dict[str, Any]:
        r = self.run_
        now = time.monotonic()
        return {
            "format": 1,
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": {"kind": "warmup_cosine", "lr_scale": r.counters.lr_scale, "base_lr": self.cfg.learning_rate},
            "rng": get_rng_state(),
            "manifest_hash": self.cfg.manifest_hash,
            **r.state_dict(),
            "seconds": r.seconds + (now - self.t0),
            "epoch_seconds": r.epoch_seconds + (now - self.epoch_t0),
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
        self.run_.load_state_dict(p)
        if p.get("manifest_hash", "") != self.cfg.manifest_hash:
            self.run_.forget_best()
            self.log("data changed since the checkpoint: the best epoch is chosen again on the current data")
        self.t0 = self.epoch_t0 = time.monotonic()
        self.samples0 = self.run_.samples
        self.last_checkpoint = path.stem
        if self.loss_log:
            self.loss_log.truncate_after(self.run_.step)

    def _resume_source(self) -> Path | None:
        """The checkpoint to go on from: the one asked for, or this identity's latest, unless that
        training finished on other data (then this data starts afresh)."""
        cfg = self.cfg
        if isinstance(cfg.resume, Path | str) and not isinstance(cfg.resume, bool):
            source = Path(cfg.resume)
            if not source.is_file():
                raise FileNotFoundError(f"resume checkpoint {source} does not exist")
            return source
        if not cfg.resume:
            return None
        state = self.ckpt.state() or {}
        if state.get("status") == "finished" and state.get("manifest_hash", "") != cfg.manifest_hash:
            return None
        return self.ckpt.latest()

    def _start(self) -> None:
        cfg = self.cfg
        source = self._resume_source()
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

    # --- losses and divergence -----------------------------------------------------------------
    def _recovered(self) -> bool:
        """Read the pending losses back; on a NaN/Inf one, restore the last healthy checkpoint with
        half the learning rate and say True (the run moved back), or fail past the limit."""
        if not self.pending:
            return False
        values = torch.stack([v for _, v in self.pending]).float().cpu().tolist()
        steps = [s for s, _ in self.pending]
        self.pending.clear()
        bad = next((s for s, v in zip(steps, values, strict=True) if not math.isfinite(v)), None)
        if bad is None:
            self.run_.epoch_loss_sum += sum(values)
            self.run_.epoch_loss_count += len(values)
            if self.loss_log:
                self.loss_log.append(steps, values)
            return False
        self._recover(bad)
        return True

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

    # --- control -------------------------------------------------------------------------------
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

    # --- epochs and the result -----------------------------------------------------------------
    def _epoch_loss(self) -> float:
        r = self.run_
        return r.epoch_loss_sum / r.epoch_loss_count if r.epoch_loss_count else math.nan

    def _end_epoch(self, n: int) -> None:
        r, cfg = self.run_, self.cfg
        v = evaluate(self.model, self.selection, device=self.device)
        record = {
            "epoch": r.epoch + 1, "step": r.step, "train_loss": self._epoch_loss(),
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
        r.new_epoch()
        r.finished = r.epoch >= cfg.epochs  # the last epoch's checkpoint is also the final one
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
