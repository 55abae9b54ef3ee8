"""Gate functions and the statistics behind them, on numbers whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aivj_assets.policy.evidence import (
    Evidence,
    Outcomes,
    binomial_upper_tail,
    expected_calibration_error,
    paired,
    wilson_interval,
)
from aivj_assets.policy.gates import (
    gate_beats_champion,
    gate_beats_champion_ratio,
    gate_elite_accuracy,
    gate_elite_not_worse,
    gate_weights_finite,
    gate_weights_hash,
    judge,
    warn_calibration,
    warn_loss_oscillation,
    warn_slices,
    warn_val_drop,
    warn_val_loss_rising,
)
from aivj_assets.settings import load_settings


def _outcomes(correct: list[bool] | np.ndarray, sure: float = 0.9) -> Outcomes:
    """Rows of label 1 scored ``sure`` when right and ``1 - sure`` when wrong."""
    correct = np.asarray(correct, bool)
    sure_logit = np.log(sure / (1 - sure))
    return Outcomes(np.where(correct, sure_logit, -sure_logit), np.ones(correct.size))


def _pair(b: int, c: int, both: int = 5, neither: int = 0) -> tuple[Outcomes, Outcomes]:
    """Candidate and champion on the same rows: b rows only the candidate gets right, c only the champion."""
    cand = [True] * b + [False] * c + [True] * both + [False] * neither
    champ = [False] * b + [True] * c + [True] * both + [False] * neither
    return _outcomes(cand), _outcomes(champ)


def _evidence(gate: tuple[Outcomes, Outcomes], elite: tuple[Outcomes, Outcomes] | None = None, **kw) -> Evidence:
    elite = elite or _pair(0, 0, both=20)
    return Evidence(gate[0], elite[0], gate[1], elite[1], **kw)


def test_binomial_tail_and_the_exact_one_sided_mcnemar() -> None:
    # b=10, c=2: P(X >= 10 | n=12, 1/2) = (66 + 12 + 1) / 4096
    result = paired(_pair(10, 2)[0].correct, _pair(10, 2)[1].correct)
    assert (result.candidate_only, result.champion_only, result.rows) == (10, 2, 17)
    assert result.p_better == pytest.approx(79 / 4096, rel=1e-9)
    assert result.p_worse == pytest.approx(1 - 13 / 4096, rel=1e-9)  # P(X >= 2) = 1 - P(X <= 1)
    assert binomial_upper_tail(0, 0) == 1.0 and binomial_upper_tail(1, 0) == 0.0
    assert paired(*(o.correct for o in _pair(4, 4))).p_better == pytest.approx(sum(math.comb(8, k) for k in range(4, 9)) / 256)
    # Thousands of discordant rows stay exact to float precision (no underflow to 0 or NaN).
    exact = sum(math.comb(4000, k) for k in range(3000, 4001)) / 2**4000
    assert binomial_upper_tail(3000, 4000) == pytest.approx(exact, rel=1e-6) and 0 < exact < 1e-200
    with pytest.raises(ValueError, match="same rows"):
        paired(np.ones(3, bool), np.ones(4, bool))


def test_wilson_interval_and_the_paired_gain_interval() -> None:
    lo, hi = wilson_interval(81, 100)  # textbook: 0.7222 - 0.8749
    assert (round(lo, 4), round(hi, 4)) == (0.7222, 0.8749)
    assert wilson_interval(250, 250) == pytest.approx((0.98485, 1.0), abs=1e-4)  # honest at a perfect score
    assert wilson_interval(0, 0) == (0.0, 1.0)
    pair = paired(*(o.correct for o in _pair(60, 40, both=900)))
    assert pair.gain == pytest.approx(0.02)
    lo, hi = pair.gain_interval()
    w_lo, w_hi = wilson_interval(60, 100)
    assert (lo, hi) == pytest.approx((0.1 * (2 * w_lo - 1), 0.1 * (2 * w_hi - 1))) and lo < 0.02 < hi


def test_expected_calibration_error_is_the_binned_gap() -> None:
    # 10 rows at confidence 0.9 of which 9 right: no gap. 10 at 0.8 of which 5 right: 0.3 gap on half the rows.
    p = np.array([0.9] * 10 + [0.8] * 10)
    y = np.array([1] * 9 + [0] + [1] * 5 + [0] * 5)
    assert expected_calibration_error(p, y) == pytest.approx(0.15)
    assert expected_calibration_error(1 - p, 1 - y) == pytest.approx(0.15)  # symmetric in the label
    assert math.isnan(expected_calibration_error(np.zeros(0), np.zeros(0)))


def test_beats_champion_needs_significance_not_any_margin() -> None:
    assert gate_beats_champion(Evidence(_outcomes([True]), _outcomes([True])), 0.05).passed  # no champion
    same = gate_beats_champion(_evidence(_pair(0, 0, both=500)), 0.05)
    assert not same.passed and same.value == 1.0 and same.detail["gain"] == 0.0  # the champion's own weights
    small_gain = gate_beats_champion(_evidence(_pair(9, 1, both=4990)), 0.05)  # +0.16 points of 5,000: p = 0.011
    assert small_gain.passed and small_gain.value == pytest.approx(11 / 1024)
    coin = gate_beats_champion(_evidence(_pair(12, 8, both=4980)), 0.05)
    assert not coin.passed and coin.value == pytest.approx(0.2517, abs=1e-4) and "no evidence" in coin.description
    assert coin.interval[0] < 0 < coin.interval[1] and coin.candidate > coin.champion
    worse = gate_beats_champion(_evidence(_pair(1, 9, both=90)), 1.0)  # alpha 1: still never a loss
    assert not worse.passed
    assert gate_beats_champion(_evidence(_pair(2, 1, both=90)), 1.0).passed


def test_a_minimum_gain_shifts_the_test_to_the_margin() -> None:
    """+0.28 points of 10,000 rows on 140 discordant rows is significant, but not beyond a 0.1-point margin;
    +1 point is, well beyond it."""
    small = _evidence(_pair(84, 56, both=9860))
    assert gate_beats_champion(small, 0.05).passed
    shifted = gate_beats_champion(small, 0.05, min_gain_points=0.1)
    # Under a gain of exactly 0.1 points the candidate wins 1/2 + 10 / (2 x 140) of the discordant rows.
    share = 0.5 + 0.001 * 10_000 / 280
    assert not shifted.passed and shifted.value == pytest.approx(binomial_upper_tail(84, 140, share))
    assert shifted.value == pytest.approx(sum(math.comb(140, k) * share**k * (1 - share) ** (140 - k)
                                              for k in range(84, 141)), rel=1e-9)
    assert "by more than 0.1 points" in shifted.description and shifted.detail["margin_points"] == 0.1
    assert gate_beats_champion(_evidence(_pair(250, 150, both=9600)), 0.05, min_gain_points=0.1).passed
    # A gain no larger than the margin never passes, however many rows agree.
    assert not gate_beats_champion(_evidence(_pair(10, 0, both=9990)), 1.0, min_gain_points=0.1).passed


def test_elite_non_inferiority_blocks_only_a_significant_loss() -> None:
    fine = gate_elite_not_worse(_evidence(_pair(0, 0), elite=_pair(1, 2, both=247)), 0.05)
    assert fine.passed and fine.value == pytest.approx(0.5)
    lost = gate_elite_not_worse(_evidence(_pair(0, 0), elite=_pair(0, 8, both=242)), 0.05)
    assert not lost.passed and lost.value == pytest.approx(1 / 256) and lost.champion > lost.candidate


def test_the_seeds_ratio_rule_stays_an_option() -> None:
    champion_elite = _pair(0, 0, both=96, neither=4)  # 0.96
    better = _evidence(_pair(3, 0, both=90, neither=7), elite=(_outcomes([True] * 98 + [False] * 2), champion_elite[1]))
    gate = gate_beats_champion_ratio(better, 1.01)
    assert gate.passed and gate.bound == pytest.approx(0.9696) and "p_better" in gate.detail
    # A perfect champion: "elite > 1.0 x 1.01" is capped at a perfect score, to be reached.
    capped = Evidence(_outcomes([True] * 99 + [False]), _outcomes([True] * 100), _outcomes([True] * 98 + [False] * 2),
                      _outcomes([True] * 100))
    gate = gate_beats_champion_ratio(capped, 1.01)
    assert gate.passed and gate.bound == 1.0 and gate.detail["elite_bound_capped"]
    assert (gate.candidate, gate.champion) == (1.0, 1.0)  # the elite figures it compared
    # Under this rule no p-value decides, and the owner's line names none.
    ratio = load_settings(env={"AIVJ_BEAT_RULE": "elite_ratio"})
    kept = judge("v4", settings=ratio, integrity=[], history=[],
                 evidence=_evidence(_pair(10, 12, both=978), elite=_pair(0, 0, both=250)))
    assert kept.summary == "kept the champion: failed beats_champion" and "p =" not in kept.summary


def test_absolute_bounds_and_warnings() -> None:
    assert gate_elite_accuracy(Evidence(_outcomes([True]), _outcomes([True] * 95 + [False] * 5)), 0.95).passed
    low = gate_elite_accuracy(Evidence(_outcomes([True]), _outcomes([True] * 94 + [False] * 6)), 0.95)
    assert not low.passed and low.interval == pytest.approx(wilson_interval(94, 100))
    assert not gate_elite_accuracy(Evidence(_outcomes([True]), _outcomes([])), 0.95).passed  # no rows is no pass
    rising = [{"selection_loss": v, "train_loss": 1.0} for v in (0.5, 0.6, 0.7, 0.8)]
    assert not warn_val_loss_rising(rising, 3).passed and warn_val_loss_rising(rising[:3], 3).passed
    assert warn_loss_oscillation([{"selection_loss": v} for v in (1.0, 0.3, 0.1)], 0.5).passed  # learning
    gate = warn_loss_oscillation([{"selection_loss": v} for v in (1.0, 0.4, 0.9)], 0.5)
    assert not gate.passed and gate.value == pytest.approx(0.5 / 0.4)
    drop = _evidence((_outcomes([True] * 80 + [False] * 20), _outcomes([True] * 95 + [False] * 5)))
    assert not warn_val_drop(drop, 0.10).passed
    assert warn_val_drop(Evidence(_outcomes([True] * 5), _outcomes([True])), 0.10).passed  # no champion


def test_calibration_and_slices_warn() -> None:
    sure = _outcomes([True] * 90 + [False] * 10, sure=0.99)  # 90% right at 99% confidence: ECE 0.09
    gate = warn_calibration(Evidence(sure, _outcomes([True])), 0.05)
    assert not gate.passed and gate.value == pytest.approx(0.09)
    assert warn_calibration(Evidence(_outcomes([True] * 9 + [False], sure=0.9), _outcomes([True])), 0.05).passed
    # Two files of 600 gate rows: the candidate gains on one and loses 3 points on the other.
    cand = np.array([True] * 600 + [True] * 570 + [False] * 30)
    champ = np.array([True] * 580 + [False] * 20 + [True] * 588 + [False] * 12)
    group = np.repeat([0, 1], 600)
    ev = _evidence((_outcomes(cand), _outcomes(champ)), sources=["a-1", "b-2"], group=group)
    slices = warn_slices(ev, 500, 2.0)
    assert not slices.passed and slices.detail["worst_file"] == "b-2" and slices.value == pytest.approx(3.0)
    assert "| b-2 | 600 | 0.9500 | 0.9800 | -3.00 |" in slices.detail["table"]
    assert warn_slices(ev, 601, 2.0).passed  # no file big enough to judge on its own
    assert warn_slices(ev, 500, 3.5).passed


def test_judge_collects_blocking_reasons_and_ignores_warnings_for_promotion() -> None:
    settings = load_settings(env={})
    first = Evidence(_outcomes([True] * 95 + [False] * 5), _outcomes([True] * 100))
    ok = judge("v1", settings=settings, integrity=[gate_weights_finite(0, 10), gate_weights_hash("ab", "ab")],
               evidence=first, history=[{"selection_loss": 0.2}, {"selection_loss": 0.5}])
    assert ok.passed and ok.reasons == [] and ok.warnings and "loss_oscillation" in ok.warnings[0]
    assert ok.summary == "passed every blocking gate"
    bad = judge("v2", settings=settings, integrity=[gate_weights_finite(3, 10), gate_weights_hash("ab", "cd")],
                evidence=_evidence((_outcomes([True] * 50 + [False] * 50), _outcomes([True] * 92 + [False] * 8)),
                                   elite=(_outcomes([True] * 50 + [False] * 50), _outcomes([True] * 96 + [False] * 4))),
                history=[])
    names = [r.split(":")[0] for r in bad.reasons]
    assert not bad.passed
    assert names == ["weights_finite", "weights_match_registry", "elite_accuracy", "val_accuracy", "beats_champion",
                     "elite_not_worse"]
    row = bad.as_dict()["gates"]["val_accuracy"]
    assert (row["passed"], row["value"], row["bound"], row["blocking"], row["verdict"]) == (False, 0.5, 0.9, True, "FAIL")
    assert row["champion"] == 0.92 and row["interval"] == pytest.approx(list(wilson_interval(50, 100)))


def test_a_night_without_evidence_says_so_in_one_line() -> None:
    settings = load_settings(env={})
    # Of 5,000 rows the candidate alone gets 6 right and the champion alone 5: +0.02 points.
    champion = _outcomes(np.concatenate([np.ones(4799, bool), np.zeros(201, bool)]))
    cand = _outcomes(np.concatenate([np.ones(4794, bool), np.zeros(5, bool), np.ones(6, bool), np.zeros(195, bool)]))
    kept = judge("v3", settings=settings, integrity=[], history=[],
                 evidence=_evidence((cand, champion), elite=_pair(0, 0, both=250)))
    assert not kept.passed and kept.reasons[0].startswith("beats_champion")
    assert kept.summary == "kept the champion: +0.02 points on 5,000 rows, p = 0.95"  # beyond the 0.1-point margin
