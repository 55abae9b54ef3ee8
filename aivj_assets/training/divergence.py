"""The per-epoch rules of the owner's plan on the selection rows: rising loss, oscillation, worsening metrics.

Each rule looks at the epoch history and a few counters (kept in the checkpoint so a
resumed run judges the same way) and returns events; the loop acts on ``restore_best``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Counters:
    """Streaks and totals the rules carry from epoch to epoch (and through checkpoints)."""

    rise_streak: int = 0  # epochs in a row whose validation loss rose
    worsen_streak: int = 0  # epochs in a row whose metrics got worse
    nan_recoveries: int = 0
    restored_best: int = 0
    lr_scale: float = 1.0  # halved at each NaN recovery
    best_epoch: int = -1
    best_score: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Counters:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def score(record: dict[str, Any]) -> list[float]:
    """Higher is better: selection accuracy, then lower selection loss (train loss without selection rows)."""
    acc = record.get("selection_accuracy", math.nan)
    loss = record.get("selection_loss", math.nan)
    if math.isnan(acc):
        return [0.0, -record.get("train_loss", math.inf)]
    return [acc, -loss if not math.isnan(loss) else -math.inf]


def _worse(cur: dict[str, Any], prev: dict[str, Any]) -> bool:
    """Both headline metrics fell: accuracy lower and F1 not higher than the epoch before."""
    acc, pacc = cur.get("selection_accuracy", math.nan), prev.get("selection_accuracy", math.nan)
    f1, pf1 = cur.get("selection_f1", math.nan), prev.get("selection_f1", math.nan)
    if math.isnan(acc) or math.isnan(pacc):
        return False
    return acc < pacc and not (f1 > pf1)


def judge_epoch(
    history: list[dict[str, Any]],
    counters: Counters,
    *,
    val_loss_rise_epochs: int,
    loss_change_max: float,
    worsen_epochs: int,
) -> tuple[list[dict[str, Any]], bool]:
    """Events for the newest epoch of ``history`` and whether to restore the best weights."""
    cur = history[-1]
    epoch, step = cur["epoch"], cur.get("step", 0)
    events: list[dict[str, Any]] = []
    if score(cur) > counters.best_score or counters.best_epoch < 0:
        counters.best_epoch, counters.best_score = epoch, score(cur)
    if len(history) < 2:
        return events, False
    prev = history[-2]
    vl, pvl = cur.get("selection_loss", math.nan), prev.get("selection_loss", math.nan)

    counters.rise_streak = counters.rise_streak + 1 if vl > pvl else 0
    if val_loss_rise_epochs > 0 and counters.rise_streak == val_loss_rise_epochs:
        events.append({
            "kind": "val_loss_rising", "epoch": epoch, "step": step,
            "message": f"selection loss rose {counters.rise_streak} epochs in a row (now {vl:.4f})",
        })
    # Only a jump up counts: a large fall is the model learning, not oscillating.
    if pvl > 0 and not math.isnan(vl) and (vl - pvl) / pvl > loss_change_max:
        events.append({
            "kind": "loss_oscillation", "epoch": epoch, "step": step,
            "message": f"selection loss changed {100 * (vl - pvl) / pvl:+.0f}% in one epoch "
            f"({pvl:.4f} -> {vl:.4f}; limit {100 * loss_change_max:.0f}%)",
        })

    counters.worsen_streak = counters.worsen_streak + 1 if _worse(cur, prev) else 0
    restore = worsen_epochs > 0 and counters.worsen_streak >= worsen_epochs and counters.best_epoch != epoch
    if restore:
        counters.worsen_streak = 0
        counters.restored_best += 1
        events.append({
            "kind": "restored_best", "epoch": epoch, "step": step,
            "message": f"metrics worsened {worsen_epochs} epochs in a row; restored the weights of "
            f"epoch {counters.best_epoch} (selection accuracy {counters.best_score[0]:.4f})",
        })
    return events, restore
