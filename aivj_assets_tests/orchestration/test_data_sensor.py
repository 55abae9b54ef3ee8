"""data_files_sensor on a real instance: partitions and run keys, crashed ticks, dead runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import dagster as dg
from dagster._core.events import EngineEventData

from aivj_assets.data.ledger import Ledger
from aivj_assets.orchestration.assets.raw_pairs import data_files, raw_pairs
from aivj_assets.orchestration.data_sensor import data_files_sensor, run_state
from aivj_assets.orchestration.ops_sensors import orphaned_training_runs
from aivj_assets.orchestration.resources import build_resources
from aivj_assets_tests.builders import rows, write_jsonl


def _tick(instance, cursor=None):
    result = data_files_sensor(dg.build_sensor_context(instance=instance, cursor=cursor))
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result


@dg.asset
def _placeholder() -> None:
    """Stands in for a run that carries a raw_pairs run key."""


def _run_with_key(instance, run_key, **tags):
    job = dg.define_asset_job("placeholder_job", selection=[_placeholder]).resolve(
        asset_graph=dg.Definitions(assets=[_placeholder]).resolve_asset_graph())
    return instance.create_run_for_job(job_def=job, tags={"dagster/run_key": run_key, **tags})


def test_sensor_registers_partitions_with_idempotent_run_keys(aivj_env, dagster_instance):
    from aivj_assets.orchestration.definitions import defs

    assert data_files_sensor in defs.sensors
    assert data_files_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    write_jsonl(aivj_env.data_dir / "a.jsonl", rows(5, seed=1))
    write_jsonl(aivj_env.data_dir / "sub" / "b.jsonl", rows(5, seed=2))
    result = _tick(dagster_instance)
    keys = sorted(dagster_instance.get_dynamic_partitions(data_files.name))
    assert len(keys) == 2 and sorted(r.partition_key for r in result.run_requests) == keys
    assert all(r.run_key == r.partition_key for r in result.run_requests)
    # The tick "died" before Dagster stored its cursor: the same run keys are asked again.
    again = _tick(dagster_instance, cursor=None)
    assert sorted(r.run_key for r in again.run_requests) == keys
    # Dagster creates the runs before it stores the cursor; from then on nothing is asked
    # again while those runs live, and nothing was registered twice.
    for key in keys:
        _run_with_key(dagster_instance, key)
    after = _tick(dagster_instance, cursor=result.cursor)
    assert not after.run_requests and sorted(dagster_instance.get_dynamic_partitions(data_files.name)) == keys
    assert len(Ledger(aivj_env).load()) == 2


def test_materialised_partitions_are_recorded_as_ingested(aivj_env, dagster_instance):
    write_jsonl(aivj_env.data_dir / "a.jsonl", rows(5))
    result = _tick(dagster_instance)
    key = result.run_requests[0].partition_key
    assert dg.materialize([raw_pairs], instance=dagster_instance, partition_key=key,
                          resources=build_resources()).success
    _tick(dagster_instance, cursor=result.cursor)
    [entry] = Ledger(aivj_env).load()
    assert (entry["status"], entry["rows"], entry["partition"]) == ("ingested", 5, key)
    assert json.loads(result.cursor)["seq"] == entry["seq"]


def test_a_dead_run_is_requested_again_under_a_new_run_key(aivj_env, dagster_instance):
    write_jsonl(aivj_env.data_dir / "a.jsonl", rows(5))
    first = _tick(dagster_instance)
    key = first.run_requests[0].partition_key
    # A run that died and that Dagster's own run retries will not take again (retries spent).
    run = _run_with_key(dagster_instance, key, **{"dagster/max_retries": "0"})
    dagster_instance.report_run_failed(run)
    retry = _tick(dagster_instance, cursor=first.cursor)
    assert [(r.partition_key, r.run_key) for r in retry.run_requests] == [(key, f"{key}.r1")]
    assert dagster_instance.get_dynamic_partitions(data_files.name) == [key]


def test_a_started_run_whose_worker_is_gone_counts_as_dead(aivj_env, dagster_instance):
    run = _run_with_key(dagster_instance, "k-1", **{"dagster/max_retries": "0"})
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    dagster_instance.report_engine_event("Started process for run", run, EngineEventData.in_process(dead.pid))
    dagster_instance.report_dagster_event(dg.DagsterEvent(dg.DagsterEventType.RUN_START.value, job_name=run.job_name),
                                          run_id=run.run_id)
    assert dagster_instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED
    assert run_state(dagster_instance, "k-1") == "dead"
    assert dagster_instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
    alive = _run_with_key(dagster_instance, "k-2")
    dagster_instance.report_engine_event("Started process for run", alive, EngineEventData.in_process(os.getpid()))
    dagster_instance.report_dagster_event(dg.DagsterEvent(dg.DagsterEventType.RUN_START.value, job_name=alive.job_name),
                                          run_id=alive.run_id)
    assert run_state(dagster_instance, "k-2") == "active"
    # While Dagster's run retries will take a failed run again, the sensor leaves it to them.
    retried = _run_with_key(dagster_instance, "k-3")
    dagster_instance.report_run_failed(retried)
    assert dagster_instance.get_run_by_id(retried.run_id).tags.get("dagster/will_retry") == "true"
    assert run_state(dagster_instance, "k-3") == "active"


def _fail_without_retry_decision(instance, run) -> None:
    """What Dagster's run storage holds between its two writes of a failure: the FAILURE
    status (and end time), not yet the will_retry tag."""
    instance.run_storage.handle_run_event(
        run.run_id, dg.DagsterEvent(dg.DagsterEventType.RUN_FAILURE.value, job_name=run.job_name))


def test_a_failure_is_judged_once_dagster_has_decided_on_its_retry(aivj_env, dagster_instance, monkeypatch):
    import threading

    import aivj_assets.orchestration.runs as run_helpers

    # Caught between the status and the tag: the sensor waits for the tag, and leaves a run
    # that Dagster retries to Dagster (without the wait it would request it again itself).
    run = _run_with_key(dagster_instance, "k-6")
    _fail_without_retry_decision(dagster_instance, run)
    assert "dagster/will_retry" not in dagster_instance.get_run_by_id(run.run_id).tags
    tagger = threading.Timer(0.3, dagster_instance.add_run_tags, (run.run_id, {"dagster/will_retry": "true"}))
    tagger.start()
    assert run_state(dagster_instance, "k-6") == "active"
    tagger.join()
    # A failure that never gets the tag is dead once the decision time has passed.
    monkeypatch.setattr(run_helpers, "RETRY_DECISION_SECONDS", 0.3)
    lost = _run_with_key(dagster_instance, "k-7")
    _fail_without_retry_decision(dagster_instance, lost)
    assert run_state(dagster_instance, "k-7") == "dead"


def test_a_run_that_never_reported_its_worker_is_dead_after_the_grace(aivj_env, dagster_instance, monkeypatch):
    import aivj_assets.orchestration.runs as run_helpers

    run = _run_with_key(dagster_instance, "k-4", **{"dagster/max_retries": "0"})
    dagster_instance.report_dagster_event(
        dg.DagsterEvent(dg.DagsterEventType.RUN_STARTING.value, job_name=run.job_name), run_id=run.run_id)
    assert run_state(dagster_instance, "k-4") == "active"  # within the grace: still launching
    monkeypatch.setattr(run_helpers, "STARTING_GRACE_SECONDS", 0.0)
    assert run_state(dagster_instance, "k-4") == "dead"


def test_a_training_run_orphaned_by_a_killed_daemon_is_failed_so_the_slot_frees(aivj_env, dagster_instance):

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    runs = {}
    for name, pid in (("orphan", dead.pid), ("running", os.getpid())):
        run = _run_with_key(dagster_instance, name, **{"aivj/training": "true"})
        dagster_instance.report_engine_event("Started process for run", run, EngineEventData.in_process(pid))
        dagster_instance.report_dagster_event(
            dg.DagsterEvent(dg.DagsterEventType.RUN_START.value, job_name=run.job_name), run_id=run.run_id)
        runs[name] = run.run_id
    ingest = _run_with_key(dagster_instance, "ingest-1")  # not a training run: the data sensor's business
    dagster_instance.report_engine_event("Started process for run", ingest, EngineEventData.in_process(dead.pid))
    dagster_instance.report_dagster_event(
        dg.DagsterEvent(dg.DagsterEventType.RUN_START.value, job_name=ingest.job_name), run_id=ingest.run_id)
    result = orphaned_training_runs(dg.build_sensor_context(instance=dagster_instance))
    assert "2 training runs in progress, 1 orphaned" in result.skip_message
    status = {name: dagster_instance.get_run_by_id(run_id).status for name, run_id in runs.items()}
    assert status == {"orphan": dg.DagsterRunStatus.FAILURE, "running": dg.DagsterRunStatus.STARTED}
    assert dagster_instance.get_run_by_id(ingest.run_id).status == dg.DagsterRunStatus.STARTED


def test_a_training_run_that_finished_meanwhile_is_not_taken_for_an_orphan(aivj_env, dagster_instance, monkeypatch):
    import aivj_assets.orchestration.runs as run_helpers

    run = _run_with_key(dagster_instance, "t-1", **{"aivj/training": "true"})
    dagster_instance.report_dagster_event(
        dg.DagsterEvent(dg.DagsterEventType.RUN_START.value, job_name=run.job_name), run_id=run.run_id)

    def finished_then_exited(instance, listed_run):  # it ended between the listing and the check
        instance.report_dagster_event(
            dg.DagsterEvent(dg.DagsterEventType.RUN_SUCCESS.value, job_name=listed_run.job_name), run_id=listed_run.run_id)
        return False

    monkeypatch.setattr(run_helpers, "worker_alive", finished_then_exited)
    result = orphaned_training_runs(dg.build_sensor_context(instance=dagster_instance))
    assert "0 orphaned" in result.skip_message
    assert dagster_instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.SUCCESS
