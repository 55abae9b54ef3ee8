"""Test-then-train: every new file scores the champion before any model trains on it."""

from __future__ import annotations

import pytest

from aivj_assets.data.scan import scan_tick
from aivj_assets.policy.out_of_time import records
from aivj_assets.registry import Registry
from aivj_assets_tests.builders import write_base_corpus, write_new_file
from aivj_assets_tests.loopback import BotApi, telegram_env
from aivj_assets_tests.orchestration.helpers import (
    check_results,
    ingest,
    materialisations,
    materialize_partition,
    run_job,
    small_model_settings,
)


@pytest.mark.timeout(300)
def test_each_new_file_scores_the_champion_and_a_drop_warns_once(aivj_env, dagster_instance, monkeypatch,
                                                                 bot_api: BotApi) -> None:
    small_model_settings(monkeypatch)
    settings = telegram_env(monkeypatch, bot_api)
    write_base_corpus(settings)
    seq = ingest(settings, dagster_instance)
    assert not records(settings)  # no champion yet: nothing to score
    assert run_job(dagster_instance, "full_training").success
    champion = Registry(settings.models_dir).champion()["version"]

    # Three files of the same world: each scored, recorded per partition, no warning.
    for i in range(3):
        write_new_file(settings, f"night_{i}", 1500, seed=40 + i)
        seq = ingest(settings, dagster_instance, seq)
    scored = records(settings)
    assert len(scored) == 3 and {r["champion"] for r in scored.values()} == {champion}
    assert all(0.85 < r["accuracy"] < 1.0 and r["rows"] == 1500 for r in scored.values())
    assert all(r["interval"][0] < r["accuracy"] < r["interval"][1] for r in scored.values())
    assert scored[max(scored, key=lambda k: scored[k]["scored_at"])]["trailing_mean"] is None  # 2 earlier files
    texts_before = len(bot_api.texts())

    # The world changed (the labels no longer follow the features): a warning check and one alert.
    write_new_file(settings, "changed", 1500, seed=50, shuffle_labels=True)
    plan = scan_tick(settings, seq)
    [key] = [r.partition for r in plan.requests]
    dagster_instance.add_dynamic_partitions("data_files", [key])
    result = materialize_partition(dagster_instance, key)
    check = check_results(result)["raw_pairs:champion_out_of_time"]
    record = records(settings)[key]
    mean = sum(r["accuracy"] for r in scored.values()) / 3
    assert not check.passed and check.metadata["drop_points"].value == pytest.approx(100 * (mean - record["accuracy"]))
    assert record["accuracy"] < mean - 0.03 and record["trailing_mean"] == pytest.approx(mean)
    # The score is the partition's asset metadata: the UI plots it across partitions.
    assert materialisations(result)["raw_pairs"]["champion_accuracy"] == pytest.approx(record["accuracy"])
    alerts = [t for t in bot_api.texts()[texts_before:] if f"new file {key}" in t]
    assert len(alerts) == 1 and "points under the trailing mean of the last 3 files" in alerts[0]

    # Stored again (a retry, a re-run): warned again in the UI, not alerted again.
    result = materialize_partition(dagster_instance, key)
    assert not check_results(result)["raw_pairs:champion_out_of_time"].passed
    assert len([t for t in bot_api.texts() if f"new file {key}" in t]) == 1
