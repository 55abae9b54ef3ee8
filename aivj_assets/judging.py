"""Quality gates as plain functions: each returns what it measured, its bound and whether it passed.

The Dagster checks (``checks.py``) only wrap these. Blocking gates decide promotion; warning
gates only alert. This module imports no Dagster.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aivj_assets.settings import Settings


@dataclass(frozen=True)
class Gate:
    """One gate's verdict: ``value`` compared with ``bound``."""

    name: str
    passed: bool
    value: Any
    bound: Any
    blocking: bool
    description: str
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def reason(self) -> str:
        """One line for the registry and the owner's notification."""
        return f"{self.name}: {self.description} (value {_short(self.value)}, bound {_short(self.bound)})"


def _short(x: Any) -> str:
    return f"{x:.4f}" if isinstance(x, float) else str(x)


def gate_weights_finite(nonfinite: int, total: int) -> Gate:
    """Blocking: every weight is a finite number."""
    return Gate("weights_finite", nonfinite == 0, nonfinite, 0, True,
                f"{nonfinite} of {total} weights are NaN or Inf")


def gate_weights_hash(actual: str, expected: str) -> Gate:
    """Blocking: the weights file on disk is the one the registry recorded."""
    ok = actual == expected
    return Gate("weights_match_registry", ok, actual[:16], expected[:16], True,
                "weights file matches the registry's sha256" if ok else "weights file differs from the registry")


def gate_elite_accuracy(accuracy: float, minimum: float, n: int) -> Gate:
    """Blocking: accuracy on the held-out elite judging part is at least ``minimum``."""
    return Gate("elite_accuracy", accuracy >= minimum, float(accuracy), float(minimum), True,
                f"elite judging accuracy on {n} held-out rows must be >= the bound", {"rows": n})


def gate_val_accuracy(accuracy: float, minimum: float, n: int) -> Gate:
    """Blocking: validation accuracy is at least ``minimum``."""
    return Gate("val_accuracy", accuracy >= minimum, float(accuracy), float(minimum), True,
                f"validation accuracy on {n} rows must be >= the bound", {"rows": n})


def mcnemar_exact(candidate_correct: np.ndarray, champion_correct: np.ndarray) -> dict[str, Any]:
    """Exact (binomial) McNemar test on paired correctness; two-sided p-value.

    ``b``: rows only the candidate gets right; ``c``: rows only the champion gets right.
    """
    cand = np.asarray(candidate_correct, dtype=bool)
    champ = np.asarray(champion_correct, dtype=bool)
    if cand.shape != champ.shape:
        raise ValueError(f"paired test needs the same rows: {cand.shape} vs {champ.shape}")
    b = int(np.sum(cand & ~champ))
    c = int(np.sum(~cand & champ))
    n = b + c
    if n == 0:
        p = 1.0
    else:  # exact integer arithmetic: no float underflow for a few thousand discordant rows
        tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
        p = min(1.0, 2 * tail / 2**n)
    return {"candidate_only": b, "champion_only": c, "discordant": n, "rows": int(cand.size), "p_value": p}


def gate_beats_champion(candidate: Mapping[str, float], champion: Mapping[str, float] | None,
                        factor: float, paired: Mapping[str, Any] | None = None) -> Gate:
    """Blocking: elite accuracy above champion x ``factor`` and validation accuracy above the champion's.

    Both sides are measured on the same rows now; with no champion the gate passes.
    """
    if champion is None:
        return Gate("beats_champion", True, "no champion", "absolute gates only", True,
                    "first model: no champion to beat")
    # A champion at 0.99 or more would make "above champion x 1.01" unreachable for ever, so the
    # bound is capped at a perfect score, which a candidate then has to reach (>=, not >).
    elite_bound = float(champion["elite_accuracy"]) * factor
    capped = elite_bound >= 1.0
    if capped:
        elite_bound = 1.0
    val_bound = float(champion["val_accuracy"])
    elite = float(candidate["elite_accuracy"])
    elite_ok = elite >= elite_bound if capped else elite > elite_bound
    val_ok = float(candidate["val_accuracy"]) > val_bound
    detail = {"champion_elite_accuracy": float(champion["elite_accuracy"]),
              "champion_val_accuracy": val_bound, "elite_bound": elite_bound, "elite_bound_capped": capped,
              "val_bound": val_bound}
    if paired:
        detail.update({f"mcnemar_{k}": v for k, v in paired.items()})
    why = []
    if not elite_ok:
        why.append(f"elite {elite:.4f} < 1.0 (champion x {factor} capped at a perfect score)" if capped
                   else f"elite {elite:.4f} <= champion x {factor} = {elite_bound:.4f}")
    if not val_ok:
        why.append(f"val {candidate['val_accuracy']:.4f} <= champion {val_bound:.4f}")
    return Gate("beats_champion", elite_ok and val_ok, float(candidate["elite_accuracy"]), elite_bound, True,
                "; ".join(why) or "beats the champion on elite and validation accuracy", detail)


def warn_val_loss_rising(history: Sequence[Mapping[str, Any]], epochs: int) -> Gate:
    """Warning: validation loss rose ``epochs`` epochs in a row."""
    losses = [float(h["val_loss"]) for h in history if h.get("val_loss") is not None]
    run = longest = 0
    for prev, cur in zip(losses, losses[1:], strict=False):
        run = run + 1 if cur > prev else 0
        longest = max(longest, run)
    return Gate("val_loss_rising", longest < epochs, longest, epochs, False,
                f"validation loss rose {longest} epochs in a row")


def warn_loss_oscillation(history: Sequence[Mapping[str, Any]], max_change: float) -> Gate:
    """Warning: some epoch's validation loss jumped up by more than ``max_change`` (relative).

    Only a rise counts, as in the training loop's own rule: a large fall is the model learning.
    """
    losses = [float(h["val_loss"]) for h in history if h.get("val_loss") is not None]
    worst = 0.0
    for prev, cur in zip(losses, losses[1:], strict=False):
        if prev > 0 and math.isfinite(prev) and math.isfinite(cur):
            worst = max(worst, (cur - prev) / prev)
    return Gate("loss_oscillation", worst <= max_change, worst, float(max_change), False,
                f"largest epoch-to-epoch validation loss rise {worst:.1%}")


def warn_val_drop(current: float, previous: float | None, max_drop: float) -> Gate:
    """Warning: validation accuracy more than ``max_drop`` (relative) below the previous version's."""
    if previous is None or previous <= 0:
        return Gate("val_accuracy_drop", True, 0.0, float(max_drop), False, "no previous version to compare")
    drop = (previous - current) / previous
    return Gate("val_accuracy_drop", drop <= max_drop, float(drop), float(max_drop), False,
                f"validation accuracy {current:.4f} vs previous version's {previous:.4f}")


@dataclass(frozen=True)
class Judgement:
    """Every gate for one candidate; ``passed`` when all blocking gates pass."""

    version: str
    gates: list[Gate]

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates if g.blocking)

    @property
    def reasons(self) -> list[str]:
        """The failed blocking gates, one line each."""
        return [g.reason for g in self.gates if g.blocking and not g.passed]

    @property
    def warnings(self) -> list[str]:
        return [g.reason for g in self.gates if not g.blocking and not g.passed]

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "gates": {g.name: {"passed": g.passed, "value": g.value, "bound": g.bound,
                                                          "blocking": g.blocking} for g in self.gates}}


def judge(version: str, *, settings: Settings, integrity: Sequence[Gate], candidate: Mapping[str, Any],
          champion: Mapping[str, Any] | None, history: Sequence[Mapping[str, Any]],
          previous_val_accuracy: float | None, paired: Mapping[str, Any] | None = None) -> Judgement:
    """Every gate of one candidate: the ``integrity`` gates (finite weights, hash) plus those from measured
    numbers (``candidate``/``champion``: elite_accuracy, val_accuracy, elite_rows, val_rows on the same rows)."""
    gates = [
        *integrity,
        gate_elite_accuracy(float(candidate["elite_accuracy"]), settings.elite_min_accuracy,
                            int(candidate.get("elite_rows", 0))),
        gate_val_accuracy(float(candidate["val_accuracy"]), settings.val_min_accuracy,
                          int(candidate.get("val_rows", 0))),
        gate_beats_champion(candidate, champion, settings.beat_elite_factor, paired),
        warn_val_loss_rising(history, settings.val_loss_rise_epochs),
        warn_loss_oscillation(history, settings.loss_change_max),
        warn_val_drop(float(candidate["val_accuracy"]), previous_val_accuracy, settings.val_drop_alert),
    ]
    return Judgement(version, gates)
