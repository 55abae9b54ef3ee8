"""Operations sensors on a real instance: resource_watch, telegram_commands, run_failure_alert."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import torch

from aivj_assets.ops.control import PauseFlag
from aivj_assets.ops.monitor import Readings, SystemMonitor
from aivj_assets.orchestration.ops_sensors import (
    resource_watch,
    run_failure_alert,
    run_success_notice,
    telegram_commands,
    training_started_notice,
)
from aivj_assets.orchestration.resources import SystemMonitorResource
from aivj_assets.orchestration.runs import mark_final_outcome
from aivj_assets.registry import Registry
from aivj_assets.settings import load_settings
from aivj_assets_tests.builders import register_state
from aivj_assets_tests.loopback import OWNER, BotApi
from aivj_assets_tests.orchestration.helpers import failure_context, status_context

STRANGER = 666


class InjectedMonitor(SystemMonitorResource):
    """The real resource with readings chosen by the test (JSON of a Readings)."""

    readings: str

    def monitor(self) -> SystemMonitor:
        from aivj_assets.settings import load_settings

        return SystemMonitor(load_settings(), source=lambda: Readings(**json.loads(self.readings)))


def _tick_watch(instance, cursor, ram=40.0, cpu=10.0, disk=100.0):
    readings = json.dumps({"ram_percent": ram, "cpu_percent": cpu, "disk_free_gb": {"data": disk}})
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor,
                                  resources={"system_monitor": InjectedMonitor(readings=readings)})
    result = resource_watch(ctx)
    return ctx.cursor, result


def test_resource_watch_alerts_once_per_episode(tg_settings, bot_api: BotApi, dagster_instance) -> None:
    cursor = None
    for ram in (50, 92, 93, 94, 60, 61):
        cursor, result = _tick_watch(dagster_instance, cursor, ram=ram)
        assert isinstance(result, dg.SkipReason) and "RAM" in result.skip_message
    assert bot_api.texts() == ["[AIVJ] RAM over 85%: 92% used", "[AIVJ] RAM back under 80%: 60% used"]


def _register(registry: Registry, n: int, stage: str = "full") -> list[str]:
    versions = []
    for i in range(n):
        version = register_state(registry, {"w": torch.full((2,), float(i))}, {"stage": stage})
        registry.update(version, measured={"elite_accuracy": 0.9 + i / 100})  # as judged
        versions.append(version)
    return versions


def test_resource_watch_writes_an_export_the_app_held_open(tg_settings, bot_api: BotApi, dagster_instance,
                                                          monkeypatch, tmp_path) -> None:
    from aivj_assets.policy.export import pending_export

    app_file = tmp_path / "app" / "coupling_net_best.pth"
    monkeypatch.setenv("AIVJ_EXPORT_PATH", str(app_file))
    registry = Registry(tg_settings.models_dir)
    champion = _register(registry, 1)[0]
    registry.promote(champion, by="test")
    # What a promotion leaves when the app held the file: a pending export, the old file in place.
    app_file.parent.mkdir()
    app_file.write_bytes(b"the previous champion")
    (tg_settings.state_dir / "export.json").parent.mkdir(parents=True, exist_ok=True)
    (tg_settings.state_dir / "export.json").write_text(json.dumps(
        {"pending": {"version": champion, "since": "2026-12-08T02:40:00+00:00", "error": "PermissionError"}}))
    _tick_watch(dagster_instance, None)
    assert app_file.read_bytes() == registry.weights_path(champion).read_bytes()
    assert pending_export(load_settings()) is None
    assert bot_api.texts() == [f"[AIVJ] champion {champion} exported to {app_file} "
                               f"(pending since 2026-12-08T02:40:00+00:00)"]


def test_low_disk_prunes_old_versions(tg_settings, bot_api: BotApi, dagster_instance) -> None:
    registry = Registry(tg_settings.models_dir)
    versions = _register(registry, 6)
    registry.promote(versions[0], by="test")
    for v in versions[1:]:
        registry.reject(v, ["judged"], by="test")  # decided candidates: nothing still needs them
    _tick_watch(dagster_instance, None, disk=2.5)
    alive = [e["version"] for e in registry.entries() if not e.get("pruned")]
    # The champion stays, plus the 3 best by elite accuracy (keep_versions_low_disk).
    assert alive == [versions[0], *versions[3:]]
    assert bot_api.texts() == [
        "[AIVJ] disk for data: 2.5 GB free, under 5 GB (old model versions will be pruned)"]


def _tick_commands(instance, cursor):
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor)
    result = telegram_commands(ctx)
    return ctx.cursor, result


def test_commands_from_the_owner_take_effect(tg_settings, bot_api: BotApi, dagster_instance) -> None:
    flag = PauseFlag.for_settings(tg_settings)
    bot_api.user_says("/pause", user_id=OWNER, chat_id=OWNER)
    cursor, result = _tick_commands(dagster_instance, None)
    assert flag.state().paused and flag.state().by == "telegram:owner"
    assert result.skip_message == "1 commands obeyed, 0 ignored"
    assert bot_api.sent[-1]["chat_id"] == str(OWNER)
    assert bot_api.sent[-1]["text"].startswith("Training paused by telegram:owner at ")

    bot_api.user_says("/status", user_id=OWNER, chat_id=OWNER)
    cursor, _ = _tick_commands(dagster_instance, cursor)
    status = bot_api.texts()[-1]
    assert "paused: yes (by telegram:owner" in status and "champion: none yet" in status and "resources: RAM" in status

    bot_api.user_says("/resume", user_id=OWNER, chat_id=OWNER)
    bot_api.user_says("/help", user_id=OWNER, chat_id=OWNER)
    cursor, _ = _tick_commands(dagster_instance, cursor)
    assert not flag.state().paused
    assert bot_api.texts()[-1].startswith("/status: current run")

    # The offset in the cursor confirms them: a later tick obeys nothing again.
    sent = len(bot_api.sent)
    cursor, result = _tick_commands(dagster_instance, cursor)
    assert result.skip_message == "0 commands obeyed, 0 ignored" and len(bot_api.sent) == sent
    assert bot_api.offsets[-1] == int(cursor)


def test_rollback_from_the_owner_and_not_from_strangers(tg_settings, bot_api: BotApi, dagster_instance,
                                                        monkeypatch, tmp_path) -> None:
    app_file = tmp_path / "app" / "coupling_net_best.pth"
    monkeypatch.setenv("AIVJ_EXPORT_PATH", str(app_file))
    registry = Registry(tg_settings.models_dir)
    first, second = _register(registry, 2)
    registry.promote(first, by="test")
    registry.promote(second, by="test")
    bot_api.user_says("/rollback", user_id=STRANGER, chat_id=OWNER)  # right chat, wrong user
    bot_api.user_says("/rollback", user_id=OWNER, chat_id=STRANGER)  # right user, wrong chat
    cursor, result = _tick_commands(dagster_instance, None)
    assert result.skip_message == "0 commands obeyed, 2 ignored"
    assert registry.champion()["version"] == second and bot_api.sent == []

    bot_api.user_says("/rollback", user_id=OWNER, chat_id=OWNER)
    cursor, _ = _tick_commands(dagster_instance, cursor)
    assert registry.champion()["version"] == first
    assert app_file.read_bytes() == registry.weights_path(first).read_bytes()
    assert bot_api.texts() == [f"Champion is now {first} (rolled back by telegram:owner)."]
    bot_api.user_says("/rollback v0_nope", user_id=OWNER, chat_id=OWNER)
    _tick_commands(dagster_instance, cursor)
    assert bot_api.texts()[-1] == f"/rollback failed: no model version 'v0_nope' in {registry.registry_path}"


def test_a_tick_cut_off_after_obeying_does_not_obey_again(tg_settings, bot_api: BotApi, dagster_instance) -> None:
    registry = Registry(tg_settings.models_dir)
    versions = _register(registry, 3)
    for v in versions:
        registry.promote(v, by="test")
    bot_api.user_says("/rollback", user_id=OWNER, chat_id=OWNER)
    _tick_commands(dagster_instance, None)
    assert registry.champion()["version"] == versions[1]
    # The tick ran past Dagster's limit (or the daemon restarted): its cursor was never saved,
    # so the next tick starts from the old one. The /rollback is not obeyed a second time.
    _, result = _tick_commands(dagster_instance, None)
    assert result.skip_message == "0 commands obeyed, 0 ignored"
    assert registry.champion()["version"] == versions[1]


def test_strangers_cannot_pause(tg_settings, bot_api: BotApi, dagster_instance, monkeypatch) -> None:
    monkeypatch.setenv("AIVJ_TELEGRAM_ALLOWED_USERS", f"{OWNER},777")
    bot_api.user_says("/pause", user_id=STRANGER, chat_id=STRANGER)
    bot_api.user_says("/pause", user_id=STRANGER, chat_id=OWNER)
    _, result = _tick_commands(dagster_instance, None)
    assert result.skip_message == "0 commands obeyed, 2 ignored"
    assert not PauseFlag.for_settings(tg_settings).state().paused and bot_api.sent == []
    bot_api.user_says("/pause", user_id=777, chat_id=OWNER)  # a second allowed user in the owner's chat
    _tick_commands(dagster_instance, None)
    assert PauseFlag.for_settings(tg_settings).state().by == "telegram:owner"


def test_unconfigured_telegram_skips_with_a_reason(aivj_env, dagster_instance) -> None:
    _, result = _tick_commands(dagster_instance, None)
    assert result.skip_message.startswith("Telegram is not configured")


@dg.op
def explode() -> None:
    raise RuntimeError("CUDA out of memory (simulated)")


@dg.job(executor_def=dg.in_process_executor)
def doomed():
    explode()


@dg.op
def reject(context) -> None:  # noqa: ANN001 (dagster reads the annotation)
    mark_final_outcome(context.instance, context.run_id, "gate_rejected")
    raise RuntimeError("candidate rejected by its gates")


@dg.job(executor_def=dg.in_process_executor)
def rejected():
    reject()


def test_failure_alert_waits_for_the_last_retry(tg_settings, bot_api: BotApi, dagster_instance) -> None:
    """On the project's instance (run retries on), a failed run is marked for retry: no alert."""
    instance = dagster_instance
    result = dg.execute_job(dg.reconstructable(doomed), instance=instance, raise_on_error=False)
    run = instance.get_run_by_id(result.run_id)
    assert run.tags["dagster/will_retry"] == "true"
    run_failure_alert(failure_context(instance, run))
    assert bot_api.sent == []  # a retry is coming: no alert yet

    # The last retry (retry_number 3) fails for good: now the owner hears, once.
    final = dg.execute_job(dg.reconstructable(doomed), instance=instance, raise_on_error=False,
                           tags={"dagster/max_retries": "0", "dagster/retry_number": "3"})
    run_failure_alert(failure_context(instance, instance.get_run_by_id(final.run_id)))
    [text] = bot_api.texts()
    assert text.startswith(f"[AIVJ] Run doomed ({final.run_id[:8]}) failed for good after 3 retries: ")
    assert "explode: RuntimeError: CUDA out of memory (simulated)" in text
    assert f"Logs: {Path(instance.root_directory) / 'storage' / final.run_id / 'compute_logs'}" in text


def test_gate_rejection_is_not_retried_nor_alerted(tg_settings, bot_api: BotApi, dagster_instance) -> None:
    instance = dagster_instance
    result = dg.execute_job(dg.reconstructable(rejected), instance=instance, raise_on_error=False)
    run = instance.get_run_by_id(result.run_id)
    assert run.tags["dagster/will_retry"] == "false" and run.tags["aivj/outcome"] == "gate_rejected"
    run_failure_alert(failure_context(instance, run))
    assert bot_api.sent == []


@dg.op
def fit() -> None:
    pass


@dg.job(executor_def=dg.in_process_executor)
def training_like():
    fit()


@dg.asset(key="raw_pairs", partitions_def=dg.StaticPartitionsDefinition(["songs_2026_03.jsonl"]))
def raw_pairs_like() -> None:
    pass


def test_training_start_and_end_and_new_data_are_announced(tg_settings, bot_api: BotApi, dagster_instance) -> None:
    tags = {"aivj/training": "true", "aivj/plan": "incremental_training", "aivj/deadline": "2026-03-10T06:00:00+08:00"}
    run = dg.execute_job(dg.reconstructable(training_like), instance=dagster_instance, tags=tags)
    training_started_notice(status_context(dagster_instance, run, dg.DagsterEventType.RUN_START, "training_started_notice"))
    run_success_notice(status_context(dagster_instance, run, dg.DagsterEventType.RUN_SUCCESS, "run_success_notice"))
    ingest = dg.materialize([raw_pairs_like], instance=dagster_instance, partition_key="songs_2026_03.jsonl")
    run_success_notice(status_context(dagster_instance, ingest, dg.DagsterEventType.RUN_SUCCESS, "run_success_notice"))
    other = dg.execute_job(dg.reconstructable(training_like), instance=dagster_instance)  # not a training run
    run_success_notice(status_context(dagster_instance, other, dg.DagsterEventType.RUN_SUCCESS, "run_success_notice"))
    short = run.run_id[:8]
    assert bot_api.texts() == [
        f"[AIVJ] Training started: incremental_training (run {short}), window ends 2026-03-10T06:00:00+08:00.",
        f"[AIVJ] Training run ended: incremental_training (run {short}), window ends 2026-03-10T06:00:00+08:00.",
        f"[AIVJ] New data ingested: partition songs_2026_03.jsonl (run {ingest.run_id[:8]}).",
    ]
