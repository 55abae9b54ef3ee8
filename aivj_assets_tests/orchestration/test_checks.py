"""The gate step in real runs: email reports built from the run, and a crash that blocks promotion."""

from __future__ import annotations

import re

import dagster as dg
import pytest

from aivj_assets.ops.email import cell
from aivj_assets.registry import Registry
from aivj_assets_tests.builders import write_base_corpus, write_new_file
from aivj_assets_tests.loopback import SMTP_PASSWORD, smtp_env
from aivj_assets_tests.orchestration.helpers import (
    failure_context,
    ingest,
    materialisations,
    run_job,
    small_model_settings,
)


@pytest.fixture
def mail_env(aivj_env, smtp_sink, monkeypatch):
    """Small-model settings whose email reports go to the loopback SMTP server."""
    small_model_settings(monkeypatch)
    return smtp_env(monkeypatch, smtp_sink, SMTP_PASSWORD)


def _mail(sink, event: str):
    """The one message of ``event`` the server received: (subject, plain text)."""
    found = [m for m in sink.messages if m["Subject"].startswith(f"[AIVJ] {event}: ")]
    assert len(found) == 1, [m["Subject"] for m in sink.messages]
    return found[0]["Subject"], found[0].get_body(("plain",)).get_content()


def _row(plain: str, gate: str) -> list[str]:
    """The cells of ``gate``'s row in the plain-text gate table."""
    line = next(ln for ln in plain.splitlines() if ln.startswith(gate + " "))
    return re.split(r"\s{2,}", line.strip())


@pytest.mark.timeout(300)
def test_promotion_and_rejection_emails_carry_the_gate_table_of_the_run(mail_env, smtp_sink,
                                                                        dagster_instance) -> None:
    settings = mail_env
    registry = Registry(settings.models_dir)
    write_base_corpus(settings)
    seq = ingest(settings, dagster_instance)
    assert run_job(dagster_instance, "full_training").success
    champion = registry.champion()
    subject, plain = _mail(smtp_sink, "promoted")
    assert subject.startswith(f"[AIVJ] promoted: model {champion['version']} is the new champion")
    gates = champion["judgement"]["gates"]
    val = _row(plain, "val_accuracy")
    lo, hi = gates["val_accuracy"]["interval"]
    acc = f"{champion['measured']['val_accuracy']:.4f}"
    assert val == ["val_accuracy", acc, f"[{lo:.4f}, {hi:.4f}]", acc, f"{settings.val_min_accuracy:.4f}", "pass"]
    assert _row(plain, "beats_champion")[-1] == "pass"
    assert "Log excerpt:" in plain and "full_model: epoch 8/8 done" in plain  # the run's own log

    # Shuffled labels: the candidate is not promoted, and the email says why, with the numbers.
    write_new_file(settings, "shuffled", 4000, seed=12, shuffle_labels=True)
    ingest(settings, dagster_instance, seq)
    assert not run_job(dagster_instance, "incremental_training").success
    rejected = next(e for e in registry.entries() if e["status"] == "rejected")
    subject, plain = _mail(smtp_sink, "gate_rejected")
    assert subject.startswith(f"[AIVJ] gate_rejected: model {rejected['version']} not promoted, kept the champion "
                              f"{champion['version']}")
    pair = rejected["paired"]
    beat = _row(plain, "beats_champion")
    assert beat[1:3] == [f"{rejected['measured']['val_accuracy']:.4f}",
                         f"{rejected['champion_measured']['val_accuracy']:.4f}"]
    assert beat[3] == f"[{pair['gain_low']:.4f}, {pair['gain_high']:.4f}]" and beat[-1] == "FAIL"
    assert beat[4:6] == [cell(pair["p_value"]), f"{settings.promote_alpha:.4f}"]  # p against alpha
    assert "- beats_champion: no evidence that it beats the champion by more than 0.1 points on the gate rows" in plain
    assert "incremental_model: epoch 4/4 done" in plain


@pytest.mark.timeout(300)
def test_a_gate_step_that_crashes_blocks_promotion_and_the_failure_email_has_the_log(mail_env, smtp_sink,
                                                                                    dagster_instance,
                                                                                    monkeypatch) -> None:
    from aivj_assets.orchestration.ops_sensors import run_failure_alert
    from aivj_assets.policy import promotion

    settings = mail_env
    registry = Registry(settings.models_dir)
    write_base_corpus(settings)
    ingest(settings, dagster_instance)

    def crash(*args, **kwargs):
        raise RuntimeError("the gate rows could not be read (simulated)")

    monkeypatch.setattr(promotion, "judge_candidate", crash)
    result = run_job(dagster_instance, "full_training", tags={"dagster/max_retries": "0"})
    assert not result.success
    # No verdict is never a pass: nothing promoted, the candidate stays undecided.
    assert "promoted_model" not in materialisations(result) and registry.champion() is None
    full = materialisations(result)["full_model"]["version"]
    assert registry.get(full)["status"] == "candidate" and "judgement" not in registry.get(full)
    assert not (settings.models_dir / "coupling_net_best.pth").exists()

    run_failure_alert(failure_context(dagster_instance, dagster_instance.get_run_by_id(result.run_id)))
    subject, plain = _mail(smtp_sink, "run_failed")
    assert subject.startswith(f"[AIVJ] run_failed: Run full_training ({result.run_id[:8]}) failed for good")
    assert "RuntimeError: the gate rows could not be read (simulated)" in plain
    assert "full_model: epoch 8/8 done" in plain  # the log excerpt of the run that failed


def test_a_check_without_any_result_still_blocks_promotion(mail_env, dagster_instance) -> None:
    """promoted_model refuses a candidate whose gates never ran (Dagster would let it through)."""
    from aivj_assets.orchestration.definitions import defs
    from aivj_assets.orchestration.resources import build_resources

    settings = mail_env
    registry = Registry(settings.models_dir)
    weights = settings.home / "w.bin"
    weights.parent.mkdir(parents=True, exist_ok=True)
    weights.write_bytes(b"weights")
    version = registry.register(weights, {"stage": "full", "dims": {"audio_dim": 1, "preset_dim": 1}})

    @dg.asset(name="full_model", group_name="models")
    def full_model_without_gates() -> dg.Output:
        return dg.Output(version, metadata={"version": version})

    promoted = next(a for a in defs.assets if a.key == dg.AssetKey("promoted_model"))
    result = dg.materialize([full_model_without_gates, promoted], instance=dagster_instance, raise_on_error=False,
                            resources=build_resources(), selection=["full_model", "promoted_model"])
    assert not result.success and registry.champion() is None
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert f"candidates ['{version}'] have no verdict" in failure.event_specific_data.error.message
