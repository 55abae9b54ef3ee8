"""End to end on a real temporary instance: full training, incremental fusion, gates, rejection."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import dagster as dg
import pytest

from aivj_assets.orchestration.resources import build_resources
from aivj_assets.policy.importance import importance_for_version
from aivj_assets.registry import BEST_NAME, Registry
from aivj_assets_tests.builders import write_base_corpus, write_new_file
from aivj_assets_tests.loopback import telegram_env
from aivj_assets_tests.orchestration.helpers import (
    check_results,
    ingest,
    materialisations,
    reexecute_from_failure,
    run_job,
    small_model_settings,
)

GATES = ("weights_finite", "weights_match_registry", "elite_accuracy", "val_accuracy", "beats_champion",
         "elite_not_worse", "val_loss_rising", "loss_oscillation", "val_accuracy_drop", "calibration", "slices")


@pytest.fixture
def model_env(aivj_env, monkeypatch):
    return small_model_settings(monkeypatch)


@pytest.fixture
def owner_env(model_env, bot_api, monkeypatch):
    """Small-model settings whose notifications reach the owner's Telegram, on loopback."""
    return telegram_env(monkeypatch, bot_api)


def _first_champion(settings, instance) -> tuple[dg.ExecuteInProcessResult, int]:
    """The base corpus ingested and full_training run: (the run, the ledger sequence after ingest)."""
    write_base_corpus(settings)
    seq = ingest(settings, instance)
    return run_job(instance, "full_training"), seq


@pytest.mark.timeout(300)
def test_a_first_full_training_promotes_a_champion_with_its_report(owner_env, dagster_instance, bot_api) -> None:
    settings = owner_env
    registry = Registry(settings.models_dir)
    result, _ = _first_champion(settings, dagster_instance)
    assert result.success
    mats = materialisations(result)
    full = mats["full_model"]
    warm_version, full_version = mats["warmed_model"]["version"], full["version"]
    for key in ("selection_accuracy", "selection_f1", "selection_loss", "duration"):
        assert isinstance(full[key], float)
    assert full["samples_trained"] > 0 and "| epoch |" in full["epochs"]
    checks = check_results(result)
    assert all(checks[f"full_model:{g}"].passed for g in GATES[:6])
    assert set(GATES) <= {name.split(":")[1] for name in checks if name.startswith("full_model:")}
    assert checks["full_model:beats_champion"].metadata["value"].value == "no champion"
    assert checks["full_model:elite_accuracy"].metadata["bound"].value == settings.elite_min_accuracy
    assert mats["promoted_model"]["champion"] == full_version and mats["promoted_model"]["promoted"] is True
    champion = registry.champion()
    assert champion["version"] == full_version and registry.get(full_version)["parent"] == warm_version
    assert registry.get(warm_version)["stage"] == "warmup"
    assert registry.latest_version() == full_version
    best = settings.models_dir / BEST_NAME
    assert best.read_bytes() == registry.weights_path(full_version).read_bytes()
    meta = registry.meta(full_version)
    assert meta["data_partitions"] == sorted(meta["data_partitions"]) and len(meta["history"]) == 8
    assert meta["run_id"] == result.run_id and meta["data_hash"]
    assert any(f"model {full_version} is the new champion" in t for t in bot_api.texts())
    report = json.loads(settings.report_path.read_text())
    assert report["version"] == full_version and report["decision"] == "promoted"
    assert report["model_performance"]["cv_accuracy"] >= settings.val_min_accuracy
    assert 0 < report["model_performance"]["f1_score"] <= 1
    # cv_accuracy says how it was measured: one hold-out accuracy on the gate rows, with its interval.
    evaluation = report["evaluation"]
    assert evaluation["method"] == "holdout" and evaluation["split"] == "gate"
    assert evaluation["rows"] == registry.get(full_version)["measured"]["val_rows"] > 0
    assert evaluation["interval"][0] < report["model_performance"]["cv_accuracy"] < evaluation["interval"][1]
    assert 0 <= report["calibration"]["ece"] < 1 and report["calibration"]["bins"] == 15


@pytest.mark.timeout(300)
def test_a_candidate_names_its_top_features_as_the_stage_scored_them(model_env, dagster_instance) -> None:
    settings = model_env
    result, _ = _first_champion(settings, dagster_instance)
    full = materialisations(result)["full_model"]
    # Top-10 permutation importances, named by input column, ranked by accuracy drop.
    ranked = re.findall(r"^\| (\d+) \| `((?:audio|preset)\[\d+\])` \| ([+-]\d\.\d{4}) \|$", full["feature_importance"], re.M)
    assert [int(r[0]) for r in ranked] == list(range(1, 11)) and full["top_feature"] == ranked[0][1]
    drops = [float(r[2]) for r in ranked]
    assert drops == sorted(drops, reverse=True) and drops[0] > 0
    # The stage scored them on the weights it registered and the selection rows it held:
    # the same ranking as scoring the registered version from its files and stored rows.
    recorded = Registry(settings.models_dir).meta(full["version"])["feature_importance"]
    assert [tuple(item) for item in recorded] == importance_for_version(settings, full["version"], seed=settings.seed)
    assert [name for name, _ in recorded] == [r[1] for r in ranked]


@pytest.mark.timeout(300)
def test_new_data_trains_the_champion_on_it_plus_replay_and_is_judged(model_env, dagster_instance) -> None:
    settings = model_env
    registry = Registry(settings.models_dir)
    _, seq = _first_champion(settings, dagster_instance)
    champion = registry.champion()["version"]
    write_new_file(settings, "new_clean", 2000, seed=11)
    ingest(settings, dagster_instance, seq)
    result = run_job(dagster_instance, "incremental_training")
    inc_version = materialisations(result)["incremental_model"]["version"]
    inc_meta = registry.meta(inc_version)
    assert inc_meta["parent"] == champion and len(inc_meta["new_partitions"]) == 1
    assert inc_meta["replay_rows"] == inc_meta["new_rows"]  # AIVJ_REPLAY_RATIO default: 1 old row per new row
    verdict = registry.get(inc_version)
    if verdict["judgement"]["passed"]:
        assert result.success and registry.champion()["version"] == inc_version
    else:  # as the data warrants: a candidate that does not beat the champion is a normal rejection
        assert not result.success and verdict["status"] == "rejected" and verdict["reasons"]
        assert registry.champion()["version"] == champion


@pytest.mark.timeout(300)
def test_shuffled_labels_are_rejected_and_nothing_the_app_reads_moves(owner_env, dagster_instance, bot_api) -> None:
    settings = owner_env
    registry = Registry(settings.models_dir)
    _, seq = _first_champion(settings, dagster_instance)
    champion = registry.champion()["version"]
    best = settings.models_dir / BEST_NAME
    best_before, latest_before = best.read_bytes(), registry.latest_version()
    write_new_file(settings, "shuffled", 4000, seed=12, shuffle_labels=True)
    ingest(settings, dagster_instance, seq)
    result = run_job(dagster_instance, "incremental_training")
    assert not result.success
    bad_version = materialisations(result)["incremental_model"]["version"]
    entry = registry.get(bad_version)
    assert entry["status"] == "rejected" and any("beats_champion" in r for r in entry["reasons"])
    # Shuffled labels teach nothing: no better than the champion on the same gate rows.
    assert entry["measured"]["val_accuracy"] < entry["champion_measured"]["val_accuracy"] + 0.01
    beat = check_results(result)["incremental_model:beats_champion"]
    assert not beat.passed and 0.05 < beat.metadata["p_value"].value <= 1.0
    assert "promoted_model" not in materialisations(result)
    assert best.read_bytes() == best_before and registry.latest_version() == latest_before
    assert registry.champion()["version"] == champion
    run = dagster_instance.get_run_by_id(result.run_id)
    assert run.tags.get("aivj/outcome") == "gate_rejected" and run.tags.get("dagster/max_retries") == "0"
    report = json.loads(settings.report_path.read_text())
    assert report["version"] == bad_version and report["decision"] == "rejected" and report["reasons"]
    assert any(f"model {bad_version} not promoted, kept the champion {champion}: " in t for t in bot_api.texts())

    # Run again with nothing changed: the rejected version is judged again, not trained again.
    versions = [e["version"] for e in registry.entries()]
    result = run_job(dagster_instance, "incremental_training")
    assert not result.success
    again = materialisations(result)["incremental_model"]
    assert again["version"] == bad_version and again["status"] == "reused"
    assert [e["version"] for e in registry.entries()] == versions
    assert registry.get(bad_version)["status"] == "rejected" and registry.get(bad_version)["judged_in_run"] == result.run_id
    assert registry.champion()["version"] == champion


@pytest.mark.timeout(300)
def test_incremental_promotion_mcnemar_and_rollback_job(model_env, dagster_instance, monkeypatch) -> None:
    # A deliberately weak first champion (1 epoch, absolute gates lowered) that new data can beat.
    monkeypatch.setenv("AIVJ_ELITE_MIN_ACCURACY", "0.5")
    monkeypatch.setenv("AIVJ_VAL_MIN_ACCURACY", "0.5")
    settings = model_env
    app_file = settings.home.parent / "app" / "coupling_net_best.pth"
    monkeypatch.setenv("AIVJ_EXPORT_PATH", str(app_file))
    registry = Registry(settings.models_dir)
    write_base_corpus(settings)
    seq = ingest(settings, dagster_instance)
    one_epoch = {"ops": {"full_model": {"config": {"epochs": 1}}}}
    result = run_job(dagster_instance, "full_training", run_config=one_epoch)
    assert result.success
    first = registry.champion()["version"]
    assert len(registry.meta(first)["history"]) == 1  # the launchpad override reached the stage
    first_bytes = (settings.models_dir / BEST_NAME).read_bytes()

    write_new_file(settings, "fresh", 4000, seed=21)
    ingest(settings, dagster_instance, seq)
    # The promotion step fails once (say the disk filled while copying the weights): the run
    # fails after its candidate was trained and judged.
    from aivj_assets.policy import promotion

    real_promote_best = promotion.promote_best

    def fails_once(*args, **kwargs):
        monkeypatch.setattr(promotion, "promote_best", real_promote_best)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(promotion, "promote_best", fails_once)
    six_epochs = {"ops": {"incremental_model": {"config": {"epochs": 6}}}}
    result = run_job(dagster_instance, "incremental_training", run_config=six_epochs)
    assert not result.success
    inc = materialisations(result)["incremental_model"]["version"]
    assert registry.get(inc)["judgement"]["passed"] and registry.champion()["version"] == first
    # The daemon's retry re-executes only the failed step: the candidate is the parent run's.
    success, retry_id = reexecute_from_failure(dagster_instance, "incremental_training", result.run_id, six_epochs)
    assert success
    retry = dagster_instance.get_records_for_run(retry_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    assert [r.event_log_entry.asset_materialization.asset_key.to_user_string() for r in retry] == ["promoted_model"]
    promoted = {k: v.value for k, v in retry[0].event_log_entry.asset_materialization.metadata.items()}
    assert promoted["champion"] == inc and promoted["promoted"] is True
    assert 0.0 <= promoted["p_value"] < 0.05  # a large gain on the gate rows is signal
    assert promoted["gain_points"] > 0
    assert registry.get(inc)["paired"]["candidate_only"] > registry.get(inc)["paired"]["champion_only"]
    assert (settings.models_dir / BEST_NAME).read_bytes() == registry.weights_path(inc).read_bytes()
    assert app_file.read_bytes() == registry.weights_path(inc).read_bytes()  # the app's copy follows

    # The rollback job (default config: the previous champion) restores the first champion's bytes.
    result = run_job(dagster_instance, "rollback")
    assert result.success
    assert registry.champion()["version"] == first and registry.latest_version() == first
    assert (settings.models_dir / BEST_NAME).read_bytes() == first_bytes == app_file.read_bytes()
    assert registry.get(inc)["status"] == "rolled_back"
    assert registry.load()["events"][-1]["action"] == "rollback"
    assert materialisations(result)["promoted_model"]["champion"] == first

    # The same incremental comes up again (same champion, new data and settings): the stage
    # reuses the rolled-back version instead of training its twin, and the rollback stands.
    versions = [e["version"] for e in registry.entries()]
    result = run_job(dagster_instance, "incremental_training", run_config=six_epochs)
    assert result.success
    mats = materialisations(result)
    assert mats["incremental_model"]["version"] == inc and mats["incremental_model"]["status"] == "reused"
    assert [e["version"] for e in registry.entries()] == versions
    assert mats["promoted_model"]["champion"] == first and mats["promoted_model"]["promoted"] is False
    assert mats["promoted_model"]["held_back"] == f"{inc} (rolled_back)"
    assert registry.get(inc)["status"] == "rolled_back" and registry.get(inc)["judged_in_run"] == result.run_id
    assert (settings.models_dir / BEST_NAME).read_bytes() == first_bytes


@pytest.mark.timeout(300)
def test_window_close_leaves_a_resumable_stage_and_no_version(model_env, dagster_instance) -> None:
    settings = model_env
    registry = Registry(settings.models_dir)
    write_base_corpus(settings)
    ingest(settings, dagster_instance)
    closed = {"aivj/deadline": "2000-01-01T02:00:00+08:00"}  # the window closed long ago
    result = run_job(dagster_instance, "full_training", tags=closed)
    assert result.success  # resumable, not failed: no crash alert, no retry
    assert registry.entries() == []
    assert "warmed_model" not in materialisations(result)
    observed = [e for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    meta = {k: v.value for k, v in observed[0].event_specific_data.asset_observation.metadata.items()}
    assert meta["status"] == "stopped" and meta["resumable"] is True and meta["checkpoint"]

    # Without a deadline the same stage resumes from that checkpoint and the run completes.
    result = run_job(dagster_instance, "full_training")
    assert result.success
    warm = registry.meta(materialisations(result)["warmed_model"]["version"])
    assert materialisations(result)["warmed_model"]["resumed_from"]
    assert warm["stage"] == "warmup" and registry.champion() is not None

    # Nothing new since the champion: the incremental stage materialises nothing and the run succeeds.
    result = run_job(dagster_instance, "incremental_training")
    assert result.success and "incremental_model" not in materialisations(result)

    # Lineage, not recency: a newer version that passed its gates elsewhere is not this run's
    # candidate, so materialising promoted_model alone keeps the champion.
    champion = registry.champion()["version"]
    newer = registry.register(registry.weights_path(champion), {"stage": "full", "dims": warm["dims"]})
    registry.update(newer, judgement={"passed": True}, measured={"elite_accuracy": 1.0, "val_accuracy": 1.0},
                    judged_against=champion)
    from aivj_assets.orchestration.definitions import defs

    result = dg.materialize(defs.assets, selection=["promoted_model"], instance=dagster_instance,
                            resources=build_resources())
    promoted = materialisations(result)["promoted_model"]
    assert promoted["champion"] == champion and promoted["promoted"] is False
    assert promoted["candidates"] == "none in this run" and registry.champion()["version"] == champion


@pytest.mark.timeout(300)
def test_a_new_model_shape_starts_a_new_lineage_judged_against_the_old_champion(model_env, dagster_instance,
                                                                                monkeypatch) -> None:
    from aivj_assets.policy.nightly import plan_nightly, read_facts
    from aivj_assets.settings import load_settings

    settings = model_env
    registry = Registry(settings.models_dir)
    write_base_corpus(settings)
    seq = ingest(settings, dagster_instance)
    assert run_job(dagster_instance, "full_training").success
    old = registry.champion()["version"]

    # The owner widens the model. Its weights cannot carry over: the plan says so, an
    # incremental stage has nothing to train, and the warm-up starts from fresh weights.
    monkeypatch.setenv("AIVJ_HIDDEN_DIM", "48")
    wider = load_settings()
    write_new_file(wider, "more", 2000, seed=31)
    ingest(wider, dagster_instance, seq)
    facts = read_facts(wider)
    assert facts.architecture_change == "hidden_dim 64 -> 48"
    plan = plan_nightly(facts, datetime.now(timezone.utc), wider.full_every_days, wider.min_improvement)
    assert plan.job == "full_training" and "architecture changed" in plan.reason
    result = run_job(dagster_instance, "incremental_training")
    assert result.success and "incremental_model" not in materialisations(result)

    result = run_job(dagster_instance, "full_training")
    mats = materialisations(result)
    warm = registry.meta(mats["warmed_model"]["version"])
    assert warm["parent"] is None and warm["lineage_after"] == old and warm["settings"]["hidden_dim"] == 48
    full = mats["full_model"]["version"]
    # Judged against the old champion on the same rows, each model built with its own shape.
    beat = check_results(result)["full_model:beats_champion"]
    assert beat.metadata["value"].value != "no champion" and "p_value" in beat.metadata
    assert registry.get(full)["judged_against"] == old and registry.get(full)["champion_measured"]
    assert result.success == (registry.champion()["version"] == full)
    # Judged: the plan does not train the new shape on the same data again every night.
    facts = read_facts(wider)
    plan = plan_nightly(facts, datetime.now(timezone.utc), wider.full_every_days, wider.min_improvement)
    if registry.champion()["version"] == full:
        assert facts.architecture_change == ""
    else:
        assert facts.new_shape_full[0] == full and plan.job is None and "waiting for new data" in plan.reason
