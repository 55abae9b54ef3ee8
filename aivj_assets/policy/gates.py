"""Quality gates as plain functions: each returns what it measured, its bound and whether it passed.

The Dagster checks (``orchestration/checks.py``) only wrap these. Blocking gates decide promotion; warning
gates only alert. Every gate that compares candidate and champion does so on the same rows,
measured now: ``Evidence`` carries those per-row outcomes. This module imports no Dagster.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aivj_assets.policy.evidence import ECE_BINS, Evidence, Outcomes, Paired, Slice, slices, wilson_interval
from aivj_assets.settings import Settings

# (name, blocking, description) of every model gate, in the order judge() returns them.
MODEL_GATES = (
    ("weights_finite", True, "every weight is a finite number"),
    ("weights_match_registry", True, "the weights file has the sha256 the registry recorded"),
    ("elite_accuracy", True, "accuracy on the held-out elite judging part >= elite_min_accuracy (Wilson 95% "
                             "interval in the metadata)"),
    ("val_accuracy", True, "accuracy on the gate rows >= val_min_accuracy (Wilson 95% interval in the metadata)"),
    ("beats_champion", True, "significantly better than the champion on the gate rows, by more than "
                             "promote_min_gain points: exact one-sided test, p <= promote_alpha "
                             "(beat_rule=elite_ratio: the seed's elite x factor rule)"),
    ("elite_not_worse", True, "not significantly worse than the champion on the elite judging rows"),
    ("val_loss_rising", False, "the selection rows' loss rose val_loss_rise_epochs epochs in a row"),
    ("loss_oscillation", False, "an epoch's selection loss rose more than loss_change_max"),
    ("val_accuracy_drop", False, "gate accuracy more than val_drop_alert below the champion's on the same rows"),
    ("calibration", False, f"expected calibration error ({ECE_BINS} bins) on the gate rows <= max_ece"),
    ("slices", False, "no source file with slice_min_rows gate rows loses more than slice_max_drop points"),
)


@dataclass(frozen=True)
class Gate:
    """One gate's verdict: ``value`` compared with ``bound``.

    ``candidate`` and ``champion`` are the two models' figures on the gate's rows (for the
    owner's table), ``interval`` the 95% interval of the gate's estimate.
    """

    name: str
    passed: bool
    value: Any
    bound: Any
    blocking: bool
    description: str
    candidate: Any = None
    champion: Any = None
    interval: tuple[float, float] | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def reason(self) -> str:
        """One line for the registry and the owner's notification."""
        return f"{self.name}: {self.description} (value {_short(self.value)}, bound {_short(self.bound)})"

    @property
    def verdict(self) -> str:
        return "pass" if self.passed else ("FAIL" if self.blocking else "warn")

    def row(self) -> dict[str, Any]:
        """The gate as one row of the owner's table: candidate, champion, interval, what was compared
        with the bound, the bound, verdict."""
        return {"gate": self.name, "candidate": self.candidate, "champion": self.champion,
                "interval": list(self.interval) if self.interval else None, "value": self.value,
                "bound": self.bound, "verdict": self.verdict, "blocking": self.blocking}


def _short(x: Any) -> str:
    return f"{x:.4f}" if isinstance(x, float) else str(x)


# --- blocking gates ---------------------------------------------------------------------------
def gate_weights_finite(nonfinite: int, total: int) -> Gate:
    """Blocking: every weight is a finite number."""
    return Gate("weights_finite", nonfinite == 0, nonfinite, 0, True,
                f"{nonfinite} of {total} weights are NaN or Inf", candidate=nonfinite)


def gate_weights_hash(actual: str, expected: str) -> Gate:
    """Blocking: the weights file on disk is the one the registry recorded."""
    ok = actual == expected
    return Gate("weights_match_registry", ok, actual[:16], expected[:16], True,
                "weights file matches the registry's sha256" if ok else "weights file differs from the registry",
                candidate=actual[:16])


def _accuracy_gate(name: str, what: str, outcomes: Outcomes, champion: Outcomes | None, minimum: float,
                   pair: Paired | None) -> Gate:
    acc, n = outcomes.accuracy, outcomes.rows
    lo, hi = wilson_interval(int(outcomes.correct.sum()), n)
    detail: dict[str, Any] = {"rows": n, "correct": int(outcomes.correct.sum()), "estimate": acc,
                              "interval_low": lo, "interval_high": hi}
    if pair is not None:
        detail.update(_paired_detail(pair))
    passed = n > 0 and acc >= minimum
    return Gate(name, passed, acc, float(minimum), True,
                f"{what} on {n} rows must be >= the bound" if n else f"no {what} rows to judge on",
                candidate=acc, champion=champion.accuracy if champion else None, interval=(lo, hi), detail=detail)


def gate_elite_accuracy(evidence: Evidence, minimum: float) -> Gate:
    """Blocking: accuracy on the held-out elite judging part is at least ``minimum``."""
    return _accuracy_gate("elite_accuracy", "elite judging accuracy", evidence.elite, evidence.champion_elite,
                          minimum, evidence.elite_paired)


def gate_val_accuracy(evidence: Evidence, minimum: float) -> Gate:
    """Blocking: accuracy on the gate rows (the owner's validation accuracy) is at least ``minimum``."""
    return _accuracy_gate("val_accuracy", "validation accuracy (gate rows)", evidence.gate,
                          evidence.champion_gate, minimum, evidence.gate_paired)


def _paired_detail(pair: Paired, prefix: str = "") -> dict[str, Any]:
    return {f"{prefix}{k}": v for k, v in pair.as_dict().items()}


def points(gain: float) -> str:
    """A difference of accuracies in points, signed: ``+0.02 points``."""
    return f"{100 * gain:+.2f} points"


def gate_beats_champion(evidence: Evidence, alpha: float, min_gain_points: float = 0.0) -> Gate:
    """Blocking: significantly more accurate than the champion on the gate rows, by more than
    ``min_gain_points``.

    An exact one-sided test on the rows only one of the two gets right (McNemar's; with a margin,
    the same binomial test shifted to it): the candidate passes when its gain exceeds the margin
    and the chance of a gain this large without a real one beyond the margin is at most ``alpha``.
    """
    pair = evidence.gate_paired
    if pair is None:
        return Gate("beats_champion", True, "no champion", "absolute gates only", True,
                    "first model: no champion to beat")
    margin = min_gain_points / 100.0
    p = pair.p_better_by(margin)
    passed = pair.gain > margin and p <= alpha
    by = f" by more than {min_gain_points:g} points" if margin > 0 else ""
    verdict = "significantly better than" if passed else "no evidence that it beats"
    return Gate("beats_champion", passed, p, float(alpha), True,
                f"{verdict} the champion{by} on the gate rows: {points(pair.gain)} on {pair.rows:,} rows, "
                f"p = {p:.3g} (exact one-sided test of the discordant rows, alpha {alpha:g})",
                candidate=evidence.gate.accuracy, champion=evidence.champion_gate.accuracy,
                interval=pair.gain_interval(),
                detail={"estimate": pair.gain, "p_value": p, "margin_points": min_gain_points, **_paired_detail(pair)})


def gate_beats_champion_ratio(evidence: Evidence, factor: float) -> Gate:
    """Blocking (the seed's rule, ``AIVJ_BEAT_RULE=elite_ratio``): elite accuracy above champion x
    ``factor`` and gate accuracy above the champion's, by any margin.

    A champion at 0.99 or more would make "above champion x 1.01" unreachable for ever, so the
    bound is capped at a perfect score, which a candidate then has to reach (>=, not >).
    """
    pair = evidence.gate_paired
    if pair is None:
        return Gate("beats_champion", True, "no champion", "absolute gates only", True,
                    "first model: no champion to beat")
    champ_elite, champ_val = evidence.champion_elite.accuracy, evidence.champion_gate.accuracy
    elite, val = evidence.elite.accuracy, evidence.gate.accuracy
    elite_bound = champ_elite * factor
    capped = elite_bound >= 1.0
    elite_bound = min(elite_bound, 1.0)
    elite_ok = elite >= elite_bound if capped else elite > elite_bound
    val_ok = val > champ_val
    why = []
    if not elite_ok:
        why.append(f"elite {elite:.4f} < 1.0 (champion x {factor} capped at a perfect score)" if capped
                   else f"elite {elite:.4f} <= champion x {factor} = {elite_bound:.4f}")
    if not val_ok:
        why.append(f"val {val:.4f} <= champion {champ_val:.4f}")
    return Gate("beats_champion", elite_ok and val_ok, elite, elite_bound, True,
                "; ".join(why) or "beats the champion on elite and validation accuracy",
                candidate=elite, champion=champ_elite,
                detail={"elite_bound_capped": capped, "val_accuracy": val, "champion_val_accuracy": champ_val,
                        **_paired_detail(pair)})


def gate_elite_not_worse(evidence: Evidence, alpha: float) -> Gate:
    """Blocking: not significantly worse than the champion on the elite judging rows (the same
    exact test, the other way round): the owner's hand-picked pairs are never traded away."""
    pair = evidence.elite_paired
    if pair is None:
        return Gate("elite_not_worse", True, "no champion", "absolute gates only", True,
                    "first model: no champion to compare with")
    passed = pair.p_worse > alpha
    return Gate("elite_not_worse", passed, pair.p_worse, float(alpha), True,
                f"{'not ' if passed else ''}significantly worse than the champion on the elite judging rows: "
                f"{points(pair.gain)} on {pair.rows:,} rows, p = {pair.p_worse:.3g}",
                candidate=evidence.elite.accuracy, champion=evidence.champion_elite.accuracy,
                interval=pair.gain_interval(), detail={"estimate": pair.gain, **_paired_detail(pair)})


# --- warnings -----------------------------------------------------------------------------------
def warn_val_loss_rising(history: Sequence[Mapping[str, Any]], epochs: int) -> Gate:
    """Warning: the selection rows' loss rose ``epochs`` epochs in a row during training."""
    losses = _selection_losses(history)
    run = longest = 0
    for prev, cur in zip(losses, losses[1:], strict=False):
        run = run + 1 if cur > prev else 0
        longest = max(longest, run)
    return Gate("val_loss_rising", longest < epochs, longest, epochs, False,
                f"validation (selection rows) loss rose {longest} epochs in a row", candidate=longest)


def warn_loss_oscillation(history: Sequence[Mapping[str, Any]], max_change: float) -> Gate:
    """Warning: some epoch's selection loss jumped up by more than ``max_change`` (relative).

    Only a rise counts, as in the training loop's own rule: a large fall is the model learning.
    """
    losses = _selection_losses(history)
    worst = 0.0
    for prev, cur in zip(losses, losses[1:], strict=False):
        if prev > 0 and math.isfinite(prev) and math.isfinite(cur):
            worst = max(worst, (cur - prev) / prev)
    return Gate("loss_oscillation", worst <= max_change, worst, float(max_change), False,
                f"largest epoch-to-epoch validation (selection rows) loss rise {worst:.1%}", candidate=worst)


def _selection_losses(history: Sequence[Mapping[str, Any]]) -> list[float]:
    return [float(h["selection_loss"]) for h in history if h.get("selection_loss") is not None]


def warn_val_drop(evidence: Evidence, max_drop: float) -> Gate:
    """Warning: gate accuracy more than ``max_drop`` (relative) below the champion's on the same rows."""
    current = evidence.gate.accuracy
    previous = evidence.champion_gate.accuracy if evidence.champion_gate else None
    if previous is None or not previous > 0:
        return Gate("val_accuracy_drop", True, 0.0, float(max_drop), False, "no champion to compare with",
                    candidate=current)
    drop = (previous - current) / previous
    return Gate("val_accuracy_drop", drop <= max_drop, float(drop), float(max_drop), False,
                f"validation accuracy {current:.4f} vs the champion's {previous:.4f} on the same rows",
                candidate=current, champion=previous)


def warn_calibration(evidence: Evidence, max_ece: float) -> Gate:
    """Warning: the candidate's expected calibration error on the gate rows is at most ``max_ece``:
    the app reads the score as a probability, not only its side of 0.5."""
    ece = evidence.gate.ece
    champ = evidence.champion_gate.ece if evidence.champion_gate else None
    ok = not math.isfinite(ece) or ece <= max_ece
    return Gate("calibration", ok, ece, float(max_ece), False,
                f"expected calibration error ({ECE_BINS} bins) on {evidence.gate.rows:,} gate rows",
                candidate=ece, champion=champ, detail={"estimate": ece, "champion_ece": champ})


def warn_slices(evidence: Evidence, min_rows: int, max_drop_points: float) -> Gate:
    """Warning: no source file with at least ``min_rows`` gate rows loses more than ``max_drop_points``
    points against the champion on those rows: a gain overall must not hide one file going bad."""
    if evidence.champion_gate is None or evidence.group is None:
        return Gate("slices", True, 0.0, float(max_drop_points), False, "no champion to compare with")
    parts = [s for s in slices(evidence.sources, evidence.group, evidence.gate.correct,
                               evidence.champion_gate.correct) if s.rows >= min_rows]
    if not parts:
        return Gate("slices", True, 0.0, float(max_drop_points), False,
                    f"no source file has {min_rows} gate rows to judge on its own")
    worst = max(parts, key=lambda s: s.drop_points)
    bad = [s for s in parts if s.drop_points > max_drop_points]
    description = (f"{len(bad)} of {len(parts)} files lose more than {max_drop_points:g} points against the champion "
                   f"(worst {worst.name}: {worst.drop_points:+.2f})" if bad else
                   f"no file of {len(parts)} loses more than {max_drop_points:g} points against the champion")
    return Gate("slices", not bad, worst.drop_points, float(max_drop_points), False, description,
                candidate=worst.candidate, champion=worst.champion,
                detail={"worst_file": worst.name, "files_judged": len(parts), "table": slice_table(parts)})


def slice_table(parts: Sequence[Slice]) -> str:
    """Per-file accuracies as a Markdown table."""
    lines = ["| file | gate rows | candidate | champion | change (points) |", "|---|---|---|---|---|"]
    lines += [f"| {s.name} | {s.rows} | {s.candidate:.4f} | {s.champion:.4f} | {-s.drop_points:+.2f} |" for s in parts]
    return "\n".join(lines)


# --- the judgement ---------------------------------------------------------------------------------
_PASSED = "passed every blocking gate"


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

    def gate(self, name: str) -> Gate | None:
        return next((g for g in self.gates if g.name == name), None)

    @property
    def evidence(self) -> str:
        """Why it passed or not, in a few words: "+0.02 points on 5,000 rows, p = 0.81" when the only
        failed gate is the comparison with the champion, else the failed gates' names."""
        failed = [g for g in self.gates if g.blocking and not g.passed]
        beat = self.gate("beats_champion")
        if beat is not None and "p_value" in beat.detail and [g.name for g in failed] in ([], ["beats_champion"]):
            return (f"{points(beat.detail['gain'])} on {beat.detail['rows']:,} rows, "
                    f"p = {beat.value:.2g}")
        return "failed " + ", ".join(g.name for g in failed) if failed else _PASSED

    @property
    def summary(self) -> str:
        """One line for the owner, e.g. "kept the champion: +0.02 points on 5,000 rows, p = 0.81"."""
        evidence = self.evidence
        if not self.passed:
            return "kept the champion: " + evidence
        return evidence if evidence == _PASSED else f"{_PASSED}: {evidence}"

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "gates": {g.name: {"passed": g.passed, **g.row()} for g in self.gates}}

    def table(self) -> list[dict[str, Any]]:
        """Every gate as a row of the owner's table (:meth:`Gate.row`)."""
        return [g.row() for g in self.gates]


def judge(version: str, *, settings: Settings, integrity: Sequence[Gate], evidence: Evidence,
          history: Sequence[Mapping[str, Any]]) -> Judgement:
    """Every gate of one candidate: the ``integrity`` gates (finite weights, hash) plus those
    computed from ``evidence`` (candidate and champion on the same rows) and the training history."""
    beats = (gate_beats_champion(evidence, settings.promote_alpha, settings.promote_min_gain)
             if settings.beat_rule == "paired"
             else gate_beats_champion_ratio(evidence, settings.beat_elite_factor))
    gates = [
        *integrity,
        gate_elite_accuracy(evidence, settings.elite_min_accuracy),
        gate_val_accuracy(evidence, settings.val_min_accuracy),
        beats,
        gate_elite_not_worse(evidence, settings.promote_alpha),
        warn_val_loss_rising(history, settings.val_loss_rise_epochs),
        warn_loss_oscillation(history, settings.loss_change_max),
        warn_val_drop(evidence, settings.val_drop_alert),
        warn_calibration(evidence, settings.max_ece),
        warn_slices(evidence, settings.slice_min_rows, settings.slice_max_drop),
    ]
    return Judgement(version, gates)
