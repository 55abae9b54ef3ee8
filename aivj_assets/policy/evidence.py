"""The statistics a promotion rests on: intervals, the paired test, calibration, per-file slices,
and the per-row outcomes they are computed from (:class:`Evidence`).

Pure functions of per-row outcomes (numpy arrays), so each is tested against hand-worked
numbers and the gates in ``gates.py`` only compare their results with bounds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054  # two-sided 95% normal quantile
ECE_BINS = 15


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion; (0, 1) when there are no trials.

    Unlike the normal interval it stays inside [0, 1] and is honest near 0 and 1, where the
    owner's accuracies live (elite accuracy is often 1.0 on a few hundred rows).
    """
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def binomial_upper_tail(k: int, n: int, p: float = 0.5) -> float:
    """P(X >= k) for X ~ Binomial(n, p), exact to float precision for any n."""
    if k <= 0:
        return 1.0
    if k > n or p <= 0:
        return 0.0
    if p >= 1:
        return 1.0
    j = np.arange(n, dtype=np.float64)
    # log C(n, i) for i = 0..n by the ratio C(n, i+1) / C(n, i) = (n - i) / (i + 1)
    log_comb = np.concatenate(([0.0], np.cumsum(np.log(n - j) - np.log(j + 1))))
    i = np.arange(k, n + 1, dtype=np.float64)
    tail = log_comb[k:] + i * math.log(p) + (n - i) * math.log1p(-p)
    top = float(tail.max())
    return min(1.0, math.exp(top + math.log(float(np.exp(tail - top).sum()))))


@dataclass(frozen=True)
class Paired:
    """Candidate against champion on the same rows: the exact McNemar test, one-sided each way."""

    rows: int
    candidate_only: int  # rows only the candidate gets right (b)
    champion_only: int  # rows only the champion gets right (c)

    @property
    def discordant(self) -> int:
        return self.candidate_only + self.champion_only

    @property
    def gain(self) -> float:
        """Candidate accuracy minus champion accuracy (a fraction; x100 for points)."""
        return (self.candidate_only - self.champion_only) / self.rows if self.rows else 0.0

    @property
    def p_better(self) -> float:
        """One-sided p-value of "the candidate is better": P(b or more of the discordant rows | no difference)."""
        return binomial_upper_tail(self.candidate_only, self.discordant)

    def p_better_by(self, margin: float) -> float:
        """One-sided p-value of "the candidate is better by more than ``margin``" (a fraction, 0.001 =
        0.1 points): the exact binomial test on the discordant rows at the share of them a gain of
        exactly ``margin`` gives the candidate, 1/2 + margin x rows / (2 x discordant)."""
        if margin <= 0:
            return self.p_better
        d = self.discordant
        share = 0.5 + margin * self.rows / (2 * d) if d else 1.0
        return binomial_upper_tail(self.candidate_only, d, share) if share < 1 else 1.0

    @property
    def p_worse(self) -> float:
        """One-sided p-value of "the candidate is worse"."""
        return binomial_upper_tail(self.champion_only, self.discordant)

    def gain_interval(self, z: float = Z95) -> tuple[float, float]:
        """95% interval of :attr:`gain`: the Wilson interval of the candidate's share of the
        discordant rows, scaled to a difference of accuracies (given the discordant count)."""
        d = self.discordant
        if d == 0 or self.rows == 0:
            return 0.0, 0.0
        lo, hi = wilson_interval(self.candidate_only, d, z)
        return d / self.rows * (2 * lo - 1), d / self.rows * (2 * hi - 1)

    def as_dict(self) -> dict[str, float | int]:
        lo, hi = self.gain_interval()
        return {"rows": self.rows, "candidate_only": self.candidate_only, "champion_only": self.champion_only,
                "gain": self.gain, "gain_low": lo, "gain_high": hi, "p_better": self.p_better,
                "p_worse": self.p_worse}


def paired(candidate_correct: np.ndarray, champion_correct: np.ndarray) -> Paired:
    """:class:`Paired` counts of two models' per-row correctness on the same rows."""
    cand = np.asarray(candidate_correct, dtype=bool)
    champ = np.asarray(champion_correct, dtype=bool)
    if cand.shape != champ.shape:
        raise ValueError(f"a paired test needs the same rows: {cand.shape} vs {champ.shape}")
    return Paired(rows=int(cand.size), candidate_only=int(np.sum(cand & ~champ)),
                  champion_only=int(np.sum(~cand & champ)))


def expected_calibration_error(probability: np.ndarray, label: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-label expected calibration error: rows binned by confidence max(p, 1 - p) into ``bins``
    equal-width bins of [0, 1]; the row-weighted mean gap between confidence and accuracy."""
    p = np.asarray(probability, dtype=np.float64)
    y = np.asarray(label) > 0.5
    if p.size == 0:
        return math.nan
    confidence = np.maximum(p, 1 - p)
    correct = (p > 0.5) == y
    which = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    gap = np.bincount(which, weights=confidence, minlength=bins) - np.bincount(which, weights=correct, minlength=bins)
    return float(np.abs(gap).sum() / p.size)


@dataclass(frozen=True)
class Slice:
    """One source file's gate rows: both models' accuracy on them."""

    name: str
    rows: int
    candidate: float
    champion: float

    @property
    def drop_points(self) -> float:
        """How many points the candidate is below the champion on this file (negative: above)."""
        return 100.0 * (self.champion - self.candidate)


def slices(names: Sequence[str], group: np.ndarray, candidate_correct: np.ndarray,
           champion_correct: np.ndarray) -> list[Slice]:
    """Per-group accuracies: ``group[i]`` is row i's index into ``names``."""
    group = np.asarray(group, dtype=np.int64)
    n = np.bincount(group, minlength=len(names))
    cand = np.bincount(group, weights=np.asarray(candidate_correct, bool), minlength=len(names))
    champ = np.bincount(group, weights=np.asarray(champion_correct, bool), minlength=len(names))
    return [Slice(name, int(n[i]), float(cand[i] / n[i]), float(champ[i] / n[i]))
            for i, name in enumerate(names) if n[i]]


@dataclass(frozen=True)
class Outcomes:
    """One model's per-row results on a set of rows: its logit (the model's own output, whose sign
    is its prediction, as everywhere in the platform), and the labels."""

    logit: np.ndarray
    label: np.ndarray

    @property
    def probability(self) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-np.asarray(self.logit, np.float64)))

    @property
    def correct(self) -> np.ndarray:
        return (self.logit > 0) == (self.label > 0.5)

    @property
    def rows(self) -> int:
        return int(self.label.size)

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean()) if self.rows else math.nan

    @property
    def ece(self) -> float:
        return expected_calibration_error(self.probability, self.label, ECE_BINS)


@dataclass(frozen=True)
class Evidence:
    """Candidate and champion (None for a first model) on the gate rows and the elite judging rows.

    ``sources[group[i]]`` names the source file of gate row i (the slices).
    """

    gate: Outcomes
    elite: Outcomes
    champion_gate: Outcomes | None = None
    champion_elite: Outcomes | None = None
    sources: Sequence[str] = ()
    group: np.ndarray | None = None

    @property
    def gate_paired(self) -> Paired | None:
        return paired(self.gate.correct, self.champion_gate.correct) if self.champion_gate else None

    @property
    def elite_paired(self) -> Paired | None:
        return paired(self.elite.correct, self.champion_elite.correct) if self.champion_elite else None
