"""Gate functions and the exact McNemar test, on numbers whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from aivj_assets.judging import (
    gate_beats_champion,
    gate_elite_accuracy,
    gate_weights_finite,
    gate_weights_hash,
    judge,
    mcnemar_exact,
    warn_loss_oscillation,
    warn_val_drop,
    warn_val_loss_rising,
)
from aivj_assets.settings import load_settings


def _paired(b: int, c: int, both: int = 5) -> tuple[np.ndarray, np.ndarray]:
    cand = np.array([True] * b + [False] * c + [True] * both)
    champ = np.array([False] * b + [True] * c + [True] * both)
    return cand, champ


def test_mcnemar_exact_matches_the_binomial_tail() -> None:
    # b=10, c=2: p = 2 * P(X <= 2 | n=12, 1/2) = 2 * (1 + 12 + 66) / 4096
    result = mcnemar_exact(*_paired(10, 2))
    assert result["candidate_only"] == 10 and result["champion_only"] == 2 and result["rows"] == 17
    assert result["p_value"] == pytest.approx(2 * 79 / 4096, rel=1e-12)
    assert mcnemar_exact(*_paired(4, 4))["p_value"] == 1.0
    assert mcnemar_exact(*_paired(0, 0))["p_value"] == 1.0
    # Thousands of discordant rows stay exact (no float underflow to 0 or NaN).
    tiny = mcnemar_exact(*_paired(3000, 1000))["p_value"]
    assert 0.0 < tiny < 1e-100
    with pytest.raises(ValueError, match="same rows"):
        mcnemar_exact(np.ones(3, bool), np.ones(4, bool))


def test_beats_champion_needs_both_margins() -> None:
    champ = {"elite_accuracy": 0.96, "val_accuracy": 0.92}
    assert gate_beats_champion({"elite_accuracy": 0.5, "val_accuracy": 0.5}, None, 1.01).passed
    good = gate_beats_champion({"elite_accuracy": 0.97, "val_accuracy": 0.921}, champ, 1.01, {"p_value": 0.2})
    assert good.passed and good.bound == pytest.approx(0.9696) and good.detail["mcnemar_p_value"] == 0.2
    small = gate_beats_champion({"elite_accuracy": 0.965, "val_accuracy": 0.95}, champ, 1.01)
    assert not small.passed and "elite 0.9650 <= champion" in small.description
    val_tie = gate_beats_champion({"elite_accuracy": 0.99, "val_accuracy": 0.92}, champ, 1.01)
    assert not val_tie.passed and "val 0.9200 <= champion" in val_tie.description



def test_beats_champion_caps_an_unreachable_elite_bound_at_a_perfect_score() -> None:
    """A champion at 0.996 elite would need 1.00596: the bound becomes 1.0, to be reached."""
    champ = {"elite_accuracy": 0.996, "val_accuracy": 0.95}
    perfect = gate_beats_champion({"elite_accuracy": 1.0, "val_accuracy": 0.951}, champ, 1.01)
    assert perfect.passed and perfect.bound == 1.0 and perfect.detail["elite_bound_capped"] is True
    not_perfect = gate_beats_champion({"elite_accuracy": 0.998, "val_accuracy": 0.99}, champ, 1.01)
    assert not not_perfect.passed and "capped at a perfect score" in not_perfect.description
    # A perfect champion is beaten only by a perfect candidate with better validation accuracy.
    top = {"elite_accuracy": 1.0, "val_accuracy": 0.95}
    assert gate_beats_champion({"elite_accuracy": 1.0, "val_accuracy": 0.952}, top, 1.01).passed
    assert not gate_beats_champion({"elite_accuracy": 1.0, "val_accuracy": 0.95}, top, 1.01).passed
    assert gate_beats_champion({"elite_accuracy": 0.97, "val_accuracy": 0.93}, {"elite_accuracy": 0.96, "val_accuracy": 0.92}, 1.01).detail["elite_bound_capped"] is False

def test_absolute_bounds_and_warnings() -> None:
    assert gate_elite_accuracy(0.95, 0.95, 10).passed and not gate_elite_accuracy(0.949, 0.95, 10).passed
    rising = [{"val_loss": v, "train_loss": 1.0} for v in (0.5, 0.6, 0.7, 0.8)]
    assert not warn_val_loss_rising(rising, 3).passed and warn_val_loss_rising(rising[:3], 3).passed
    assert warn_loss_oscillation([{"val_loss": v} for v in (1.0, 0.3, 0.1)], 0.5).passed  # learning, not oscillating
    gate = warn_loss_oscillation([{"val_loss": v} for v in (1.0, 0.4, 0.9)], 0.5)
    assert not gate.passed and gate.value == pytest.approx(0.5 / 0.4)
    assert warn_val_drop(0.80, 0.95, 0.10).passed is False and warn_val_drop(0.90, 0.95, 0.10).passed
    assert warn_val_drop(0.5, None, 0.10).passed


def test_judge_collects_blocking_reasons_and_ignores_warnings_for_promotion() -> None:
    settings = load_settings(env={})
    ok = judge("v1", settings=settings, integrity=[gate_weights_finite(0, 10), gate_weights_hash("ab", "ab")],
               candidate={"elite_accuracy": 0.97, "val_accuracy": 0.93}, champion=None,
               history=[{"val_loss": 0.2}, {"val_loss": 0.5}], previous_val_accuracy=None)
    assert ok.passed and ok.reasons == [] and ok.warnings and "loss_oscillation" in ok.warnings[0]
    bad = judge("v2", settings=settings, integrity=[gate_weights_finite(3, 10), gate_weights_hash("ab", "cd")],
                candidate={"elite_accuracy": 0.5, "val_accuracy": 0.5},
                champion={"elite_accuracy": 0.96, "val_accuracy": 0.92}, history=[], previous_val_accuracy=0.92)
    names = [r.split(":")[0] for r in bad.reasons]
    assert not bad.passed
    assert names == ["weights_finite", "weights_match_registry", "elite_accuracy", "val_accuracy", "beats_champion"]
    assert bad.as_dict()["gates"]["val_accuracy"] == {"passed": False, "value": 0.5, "bound": 0.9, "blocking": True}


def _verdict(version: str, passed: bool, champion: str | None):
    from aivj_assets.judging import Judgement
    from aivj_assets.promotion import Verdict

    gate = gate_elite_accuracy(0.99 if passed else 0.5, 0.95, 100)
    metrics = {"elite_accuracy": gate.value, "val_accuracy": 0.93}
    return Verdict(Judgement(version, [gate]), champion, metrics, None, None)


def test_a_version_judged_again_keeps_the_decisions_already_made_about_it(aivj_env, tmp_path) -> None:
    from aivj_assets.promotion import promote_best, record_verdict
    from aivj_assets.registry import Registry

    settings = aivj_env
    registry = Registry(settings.models_dir)

    def register(name: str) -> str:
        weights = tmp_path / f"{name}.bin"
        weights.write_bytes(name.encode() * 512)
        return registry.register(weights, {"stage": "incremental", "identity": f"id-{name}", "metrics": {}})

    first, second, third = register("first"), register("second"), register("third")
    registry.promote(first, by="test")

    # Rejected, then judged again after the gates changed: a candidate again, and promotable.
    record_verdict(settings, registry, _verdict(second, False, first), run_id="r1")
    assert registry.get(second)["status"] == "rejected"
    record_verdict(settings, registry, _verdict(second, True, first), run_id="r2")
    assert registry.get(second)["status"] == "candidate" and "reasons" not in registry.get(second)
    assert registry.load()["events"][-1]["action"] == "reopen"
    outcome = promote_best(settings, registry, [second], run_id="r2")
    assert outcome["promoted"] == second and outcome["held"] == []

    # The owner rolls it back. The same recipe, reused and judged again, passes its gates but
    # is not promoted again; a failing verdict does not turn the rollback into a rejection.
    registry.rollback(by="owner")
    assert registry.champion()["version"] == first and registry.get(second)["status"] == "rolled_back"
    judged_before = registry.get(second)["judged_at"]
    record_verdict(settings, registry, _verdict(second, True, first), run_id="r3")
    assert registry.get(second)["status"] == "rolled_back" and registry.get(second)["judged_in_run"] == "r3"
    assert registry.get(second)["judged_at"] >= judged_before
    outcome = promote_best(settings, registry, [second], run_id="r3")
    assert outcome["promoted"] is None and outcome["held"] == [f"{second} (rolled_back)"]
    assert registry.champion()["version"] == first
    record_verdict(settings, registry, _verdict(second, False, first), run_id="r4")
    assert registry.get(second)["status"] == "rolled_back"

    # A fresh candidate is judged as before.
    record_verdict(settings, registry, _verdict(third, False, first), run_id="r5")
    assert registry.get(third)["status"] == "rejected"
    with pytest.raises(ValueError, match="not rejected"):
        registry.reopen(first, by="test", reason="x")


def test_a_warm_up_failing_its_integrity_gates_is_rejected_and_the_owner_told(aivj_env, tmp_path, monkeypatch,
                                                                                bot_api) -> None:
    from aivj_assets.promotion import record_integrity, weight_integrity
    from aivj_assets.registry import Registry
    from aivj_assets_tests.resources.loopback import telegram_env

    settings = telegram_env(monkeypatch, bot_api)
    registry = Registry(settings.models_dir)
    import torch

    version = registry.register({"w": torch.ones(4)}, {"stage": "warmup", "identity": "w", "metrics": {}})
    assert record_integrity(settings, registry, version, weight_integrity(registry, version), run_id="r0")
    torch.save({"w": torch.zeros(4)}, registry.weights_path(version))  # the file changed after registration
    gates = weight_integrity(registry, version)
    assert not record_integrity(settings, registry, version, gates, run_id="r1")
    assert registry.get(version)["status"] == "rejected"
    assert any(f"warmup version {version} rejected: weights_match_registry: weights file differs" in t
               for t in bot_api.texts())
