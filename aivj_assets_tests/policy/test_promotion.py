"""Promotions that rest on evidence: reproducible versions, gate rows that training never reads,
and the paired test deciding, trained and judged through the stage functions on real files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from aivj_assets.data.generate import REFINED_DIR
from aivj_assets.data.split import GATE, corpus_part, row_hashes
from aivj_assets.ops.notifier import Notifier
from aivj_assets.policy.evidence import Evidence, Outcomes
from aivj_assets.policy.gates import Judgement, gate_elite_accuracy
from aivj_assets.policy.promotion import Verdict, judge_candidate, promote_best, record_verdict
from aivj_assets.policy.rows import gate_rows
from aivj_assets.policy.stages import train_full, train_warmup
from aivj_assets.registry import Registry
from aivj_assets_tests.builders import home_settings, ingest_plainly, register_state, write_base_corpus


def _trained(settings, **changes) -> tuple[Registry, str, str]:
    """Warm-up and full stage on the home's ingested data: (registry, warm version, full version)."""
    settings = settings.replace(**changes) if changes else settings
    registry = Registry(settings.models_dir)
    warm = train_warmup(settings, registry, log=lambda line: None)
    full = train_full(settings, registry, warm.version, log=lambda line: None)
    return registry, warm.version, full.version


@pytest.mark.timeout(300)
def test_same_data_settings_and_seed_give_bit_identical_versions(tmp_path: Path, one_torch_thread) -> None:
    """Two fresh homes, the same files and settings: the same weight files, initial weights included."""
    homes = [home_settings(tmp_path / name) for name in ("a", "b")]
    results = []
    for settings in homes:
        write_base_corpus(settings, pairs=3000, elite=200)
        ingest_plainly(settings)
        results.append(_trained(settings))
    (reg_a, warm_a, full_a), (reg_b, warm_b, full_b) = results
    for a, b in ((warm_a, warm_b), (full_a, full_b)):
        assert reg_a.weights_path(a).read_bytes() == reg_b.weights_path(b).read_bytes()
        assert reg_a.get(a)["model_hash"] == reg_b.get(b)["model_hash"]
    # A different seed is a different model: the seed, not luck, made them equal.
    other = home_settings(tmp_path / "c", AIVJ_SEED="1")
    write_base_corpus(other, pairs=3000, elite=200)
    ingest_plainly(other)
    reg_c, warm_c, _ = _trained(other)
    assert reg_c.weights_path(warm_c).read_bytes() != reg_a.weights_path(warm_a).read_bytes()


def _poison_gate_labels(path: Path, settings) -> int:
    """Flip the label of every row that is a gate row both before and after the flip (the row hash
    covers the label, so only those stay gate rows); how many were flipped."""
    table = pq.read_table(path)
    audio = np.asarray(table.column("audio").combine_chunks().flatten()).reshape(table.num_rows, -1)
    preset = np.asarray(table.column("preset").combine_chunks().flatten()).reshape(table.num_rows, -1)
    labels = table.column("label").to_numpy().astype(np.int8)
    flipped = 1 - labels

    def on_gate(lab):
        return corpus_part(row_hashes(audio, preset, lab), settings.selection_fraction, settings.gate_fraction) == GATE

    poison = on_gate(labels) & on_gate(flipped)
    new = np.where(poison, flipped, labels)
    pq.write_table(table.set_column(table.schema.get_field_index("label"), "label", [new.astype(np.int8)]), path)
    return int(poison.sum())


@pytest.mark.timeout(300)
def test_the_best_epoch_is_chosen_without_reading_gate_rows(tmp_path: Path, one_torch_thread) -> None:
    """Poisoned gate labels change what the gates see and nothing that training sees or chooses."""
    clean, poisoned = home_settings(tmp_path / "clean"), home_settings(tmp_path / "poisoned")
    for settings in (clean, poisoned):
        write_base_corpus(settings, pairs=6000, elite=200)
    flipped = _poison_gate_labels(poisoned.data_dir / REFINED_DIR / "base.parquet", poisoned)
    assert flipped > 30
    runs = []
    for settings in (clean, poisoned):
        ingest_plainly(settings)
        runs.append(_trained(settings))
    (reg_c, _, full_c), (reg_p, _, full_p) = runs
    meta_c, meta_p = reg_c.meta(full_c), reg_p.meta(full_p)
    assert meta_c["metrics"]["best_epoch"] == meta_p["metrics"]["best_epoch"]
    assert meta_c["history"] == [{**h, "seconds": c["seconds"]} for h, c in zip(meta_p["history"], meta_c["history"],
                                                                                strict=True)]
    assert reg_c.weights_path(full_c).read_bytes() == reg_p.weights_path(full_p).read_bytes()
    # The poison is there for the gates to see.
    gate_c, gate_p = gate_rows(clean).rows, gate_rows(poisoned).rows
    assert len(gate_c) == len(gate_p) and int((gate_c.label != gate_p.label).sum()) == flipped


@pytest.mark.timeout(300)
def test_the_champions_own_weights_are_rejected_and_a_clearly_better_model_promoted(tmp_path: Path,
                                                                                  one_torch_thread) -> None:
    settings = home_settings(tmp_path / "h", AIVJ_ELITE_MIN_ACCURACY="0.5", AIVJ_VAL_MIN_ACCURACY="0.5")
    write_base_corpus(settings, pairs=8000, elite=300)
    ingest_plainly(settings)
    registry, _, weak = _trained(settings, full_epochs=1)
    registry.promote(weak, by="test")
    logs: list[str] = []

    # The champion's own weights as a candidate: no row differs, so p = 1 and it is not promoted.
    twin = registry.register(registry.weights_path(weak), {**registry.meta(weak), "identity": "twin"})
    verdict = judge_candidate(settings, registry, twin, log=logs.append)
    beat = verdict.judgement.gate("beats_champion")
    assert not verdict.judgement.passed and [r.split(":")[0] for r in verdict.judgement.reasons] == ["beats_champion"]
    assert beat.value == 1.0 and beat.detail["gain"] == 0.0 and beat.detail["candidate_only"] == 0
    assert verdict.judgement.summary == f"kept the champion: +0.00 points on {beat.detail['rows']:,} rows, p = 1"
    assert any(f"champion {weak} has no recorded measurement: measured on today's" in line for line in logs)

    # Eight epochs against one: a large gain on the gate rows is signal, and it is promoted.
    _, _, strong = _trained(settings)
    verdict = judge_candidate(settings, registry, strong, log=logs.append)
    beat = verdict.judgement.gate("beats_champion")
    assert verdict.judgement.passed and beat.value < 1e-6 and beat.detail["gain"] > 0.02
    assert beat.interval[0] > 0 and verdict.paired["candidate_only"] > verdict.paired["champion_only"]
    notify = Notifier(settings)
    record_verdict(settings, registry, verdict, run_id="r1", notify=notify)
    assert promote_best(settings, registry, [strong], run_id="r1", notify=notify)["promoted"] == strong
    assert registry.champion()["version"] == strong


def test_judging_sizes_and_alpha_are_refused_when_settings_load(tmp_path: Path) -> None:
    from aivj_assets.settings import load_settings

    for env, message in (({"AIVJ_PROMOTE_ALPHA": "0"}, "AIVJ_PROMOTE_ALPHA=0.0: must be in \\(0, 1\\]"),
                         ({"AIVJ_PROMOTE_ALPHA": "1.5"}, "AIVJ_PROMOTE_ALPHA"),
                         ({"AIVJ_GATE_FRACTION": "0"}, "AIVJ_GATE_FRACTION=0.0: must be between 0 and 1"),
                         ({"AIVJ_SELECTION_FRACTION": "0.6", "AIVJ_GATE_FRACTION": "0.4"}, "leave no training rows"),
                         ({"AIVJ_ELITE_JUDGE_FRACTION": "1"}, "AIVJ_ELITE_JUDGE_FRACTION"),
                         ({"AIVJ_BEAT_RULE": "vibes"}, "AIVJ_BEAT_RULE='vibes': expected one of paired, elite_ratio")):
        with pytest.raises(ValueError, match=message):
            load_settings(env=env, env_file=tmp_path / "none")
    assert load_settings(env={"AIVJ_PROMOTE_ALPHA": "1"}, env_file=tmp_path / "none").promote_alpha == 1.0


def _verdict(version: str, passed: bool, champion: str | None) -> Verdict:
    """A verdict with one elite-accuracy gate that passes or fails."""
    right = [True] * 99 + [False] if passed else [True] * 50 + [False] * 50
    elite = Outcomes(np.where(right, 2.0, -2.0), np.ones(len(right)))  # logits: right when positive
    gate = gate_elite_accuracy(Evidence(Outcomes(np.array([2.0]), np.ones(1)), elite), 0.95)
    metrics = {"elite_accuracy": gate.value, "val_accuracy": 0.93}
    return Verdict(Judgement(version, [gate]), champion, metrics, None, None)


def test_a_version_judged_again_keeps_the_decisions_already_made_about_it(aivj_env, tmp_path) -> None:
    from aivj_assets.policy.promotion import promote_best, record_verdict
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
    notify = Notifier(settings)
    record_verdict(settings, registry, _verdict(second, False, first), run_id="r1", notify=notify)
    assert registry.get(second)["status"] == "rejected"
    record_verdict(settings, registry, _verdict(second, True, first), run_id="r2", notify=notify)
    assert registry.get(second)["status"] == "candidate" and "reasons" not in registry.get(second)
    assert registry.load()["events"][-1]["action"] == "reopen"
    outcome = promote_best(settings, registry, [second], run_id="r2", notify=notify)
    assert outcome["promoted"] == second and outcome["held"] == []

    # The owner rolls it back. The same recipe, reused and judged again, passes its gates but
    # is not promoted again; a failing verdict does not turn the rollback into a rejection.
    registry.rollback(by="owner")
    assert registry.champion()["version"] == first and registry.get(second)["status"] == "rolled_back"
    judged_before = registry.get(second)["judged_at"]
    record_verdict(settings, registry, _verdict(second, True, first), run_id="r3", notify=notify)
    assert registry.get(second)["status"] == "rolled_back" and registry.get(second)["judged_in_run"] == "r3"
    assert registry.get(second)["judged_at"] >= judged_before
    outcome = promote_best(settings, registry, [second], run_id="r3", notify=notify)
    assert outcome["promoted"] is None and outcome["held"] == [f"{second} (rolled_back)"]
    assert registry.champion()["version"] == first
    record_verdict(settings, registry, _verdict(second, False, first), run_id="r4", notify=notify)
    assert registry.get(second)["status"] == "rolled_back"

    # A fresh candidate is judged as before.
    record_verdict(settings, registry, _verdict(third, False, first), run_id="r5", notify=notify)
    assert registry.get(third)["status"] == "rejected"
    with pytest.raises(ValueError, match="not rejected"):
        registry.reopen(first, by="test", reason="x")


def test_a_warm_up_failing_its_integrity_gates_is_rejected_and_the_owner_told(aivj_env, tmp_path, monkeypatch,
                                                                                bot_api) -> None:
    from aivj_assets.policy.promotion import record_integrity, weight_integrity
    from aivj_assets.registry import Registry
    from aivj_assets_tests.loopback import telegram_env

    settings = telegram_env(monkeypatch, bot_api)
    registry = Registry(settings.models_dir)
    import torch

    version = register_state(registry, {"w": torch.ones(4)}, {"stage": "warmup", "identity": "w", "metrics": {}})
    notify = Notifier(settings)
    assert record_integrity(settings, registry, version, weight_integrity(registry, version), run_id="r0",
                            notify=notify)
    torch.save({"w": torch.zeros(4)}, registry.weights_path(version))  # the file changed after registration
    gates = weight_integrity(registry, version)
    assert not record_integrity(settings, registry, version, gates, run_id="r1", notify=notify)
    assert registry.get(version)["status"] == "rejected"
    assert any(f"warmup version {version} rejected: weights_match_registry: weights file differs" in t
               for t in bot_api.texts())
