"""Running the project's Dagster definitions in tests: ingest through raw_pairs, run jobs, read events."""

from __future__ import annotations

import dagster as dg
import pytest
import torch

from aivj_assets.data.scan import scan_tick
from aivj_assets.orchestration.assets.raw_pairs import raw_pairs
from aivj_assets.orchestration.definitions import defs
from aivj_assets.orchestration.resources import build_resources
from aivj_assets.settings import Settings, load_settings
from aivj_assets_tests.builders import TRAINING_ENV


def small_model_settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings with small-model training values in the environment, where runs read them (call
    after the ``aivj_env`` fixture)."""
    torch.set_num_threads(1)
    for key, value in TRAINING_ENV.items():
        monkeypatch.setenv(key, value)
    return load_settings()


def ingest(settings: Settings, instance: dg.DagsterInstance, committed_seq: int = 0) -> int:
    """Register new files as partitions and materialise each through the real raw_pairs asset."""
    plan = scan_tick(settings, committed_seq)
    keys = [r.partition for r in plan.requests]
    instance.add_dynamic_partitions("data_files", keys)
    for key in keys:
        assert materialize_partition(instance, key).success
    return plan.last_seq


def materialize_partition(instance: dg.DagsterInstance, key: str) -> dg.ExecuteInProcessResult:
    """One raw_pairs partition through the real asset (its checks included)."""
    return dg.materialize([raw_pairs], partition_key=key, instance=instance, resources=build_resources(),
                          raise_on_error=False)


def run_job(instance: dg.DagsterInstance, name: str, **kwargs) -> dg.ExecuteInProcessResult:
    """Execute one of the project's jobs on the real instance, failures returned, not raised."""
    return defs.resolve_job_def(name).execute_in_process(instance=instance, raise_on_error=False, **kwargs)


def project_job(name: str) -> dg.JobDefinition:
    """One of the project's jobs, by name: what :func:`reexecute_from_failure` reconstructs."""
    return defs.resolve_job_def(name)


def reexecute_from_failure(instance: dg.DagsterInstance, name: str, parent_run_id: str,
                           run_config: dict | None = None) -> tuple[bool, str]:
    """Re-execute a failed run's failed steps, in this process, as the daemon's retries do;
    returns (success, run id)."""
    job = dg.build_reconstructable_job("aivj_assets_tests.orchestration.helpers", "project_job", reconstructable_args=(name,))
    config = {**(run_config or {}), "execution": {"config": {"in_process": {}}}}
    options = dg.ReexecutionOptions.from_failure(parent_run_id, instance)
    with dg.execute_job(job, instance, run_config=config, reexecution_options=options) as result:
        return result.success, result.run_id


def status_context(instance: dg.DagsterInstance, run: dg.DagsterRun, event_type: dg.DagsterEventType,
                   name: str) -> dg.RunStatusSensorContext:
    """The context a run-status sensor named ``name`` gets for ``run``'s last event of ``event_type``."""
    records = instance.get_records_for_run(run.run_id, of_type=event_type).records
    return dg.build_run_status_sensor_context(
        sensor_name=name, dagster_instance=instance, dagster_run=instance.get_run_by_id(run.run_id),
        dagster_event=records[-1].event_log_entry.dagster_event,
    )


def failure_context(instance: dg.DagsterInstance, run: dg.DagsterRun) -> dg.RunFailureSensorContext:
    """What ``run_failure_alert`` gets for a failed ``run``."""
    return status_context(instance, run, dg.DagsterEventType.RUN_FAILURE, "run_failure_alert").for_run_failure()


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    """This run's check evaluations by ``asset:check`` name."""
    out = {}
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            ev = event.event_specific_data
            out[f"{ev.asset_key.to_user_string()}:{ev.check_name}"] = ev
    return out


def materialisations(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    """This run's materialisation metadata by asset key."""
    out = {}
    for event in result.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            mat = event.event_specific_data.materialization
            out[mat.asset_key.to_user_string()] = {k: v.value for k, v in mat.metadata.items()}
    return out
