"""retry_watch on a real instance: a retry Dagster announced but could not launch is alerted once."""

from __future__ import annotations

import logging

import dagster as dg
from dagster._core.errors import DagsterUserCodeUnreachableError

from aivj_assets.orchestration import retry_watch as watch
from aivj_assets.orchestration.ops_sensors import run_failure_alert
from aivj_assets_tests.loopback import BotApi
from aivj_assets_tests.orchestration.helpers import failure_context


@dg.op
def crash() -> None:
    raise RuntimeError("disk full (simulated)")


@dg.job(executor_def=dg.in_process_executor)
def crashing():
    crash()


class UnloadableWorkspace:
    """What the retry daemon works with when the code location cannot be reached."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.instance = instance

    def create_request_context(self):
        raise DagsterUserCodeUnreachableError("Could not reach user code server: code location aivj_assets "
                                              "failed to load")


def _failed_run_awaiting_retry(instance: dg.DagsterInstance) -> dg.DagsterRun:
    result = dg.execute_job(dg.reconstructable(crashing), instance=instance, raise_on_error=False)
    run = instance.get_run_by_id(result.run_id)
    assert run.tags["dagster/will_retry"] == "true"
    run_failure_alert(failure_context(instance, run))  # holds its alert back: a retry is announced
    return instance.get_run_by_id(run.run_id)


def _tick(instance: dg.DagsterInstance) -> str:
    return watch.retry_watch(dg.build_sensor_context(instance=instance)).skip_message


def test_a_retry_the_daemon_could_not_launch_is_alerted_once(tg_settings, bot_api: BotApi, dagster_instance) -> None:
    from dagster._daemon.auto_run_reexecution.auto_run_reexecution import (
        consume_new_runs_for_automatic_reexecution,
    )

    instance = dagster_instance
    run = _failed_run_awaiting_retry(instance)
    assert bot_api.sent == [] and run.tags["aivj/retry_expected"] == "true"
    assert _tick(instance) == "1 failed runs expecting a retry, 0 newly found stranded"  # not yet overdue

    # Dagster's own retry daemon tries, and fails to launch (its code location is unreachable).
    records = instance.get_run_records(dg.RunsFilter(run_ids=[run.run_id]))
    list(consume_new_runs_for_automatic_reexecution(UnloadableWorkspace(instance), records, logging.getLogger("t")))
    assert instance.get_run_by_id(run.run_id).tags["dagster/will_retry"] == "false"

    assert _tick(instance) == "1 failed runs expecting a retry, 1 newly found stranded"
    [text] = bot_api.texts()
    assert text.startswith(f"[AIVJ] Run crashing ({run.run_id[:8]}) failed and its automatic retry could not be "
                           f"launched: Failed to retry run: ")
    assert "code location aivj_assets failed to load" in text
    assert _tick(instance) == "1 failed runs expecting a retry, 0 newly found stranded"  # once
    assert len(bot_api.sent) == 1


def test_an_overdue_retry_is_alerted_and_a_launched_one_is_not(tg_settings, bot_api: BotApi, dagster_instance,
                                                                 monkeypatch) -> None:
    instance = dagster_instance
    launched = _failed_run_awaiting_retry(instance)
    retry = dg.execute_job(dg.reconstructable(crashing), instance=instance, raise_on_error=False,
                           tags={"dagster/max_retries": "0"})
    instance.add_run_tags(launched.run_id, {"dagster/auto_retry_run_id": retry.run_id})
    overdue = _failed_run_awaiting_retry(instance)
    monkeypatch.setattr(watch, "LAUNCH_GRACE_SECONDS", 0.0)
    assert _tick(instance) == "2 failed runs expecting a retry, 1 newly found stranded"
    [text] = bot_api.texts()
    assert f"({overdue.run_id[:8]})" in text and "no retry run appeared within 0 s of the failure" in text
