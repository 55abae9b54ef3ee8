"""Sensors: the data-folder sensor that turns each new file into a ``raw_pairs`` partition.

Exactly once: the scan records each new file in the ledger (status pending, with a sequence
number) before this tick returns; Dagster then adds the partition and reserves the run
(run key = partition key) before it stores the cursor, the highest sequence it took. A tick
that dies before that leaves pending entries above the cursor, which the next tick requests
again; Dagster skips a run key it already launched. A run whose worker died is marked failed
and requested again under a new run key, up to ``run_retries`` times.
"""


import json

import dagster as dg

from aivj_assets.data.scan import scan_tick
from aivj_assets.orchestration import tags
from aivj_assets.orchestration.assets.raw_pairs import data_files, ingest_job, raw_pairs
from aivj_assets.orchestration.runs import fail_if_orphaned, with_retry_decision
from aivj_assets.settings import load_settings

_ACTIVE = {dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
           dg.DagsterRunStatus.CANCELING}
_DEAD = {dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


def _interval() -> int:
    # The tick interval is part of the sensor's definition, so it is read when the code
    # location loads (the daemon and the webserver load it with the same environment).
    return max(1, load_settings().sensor_interval_seconds)


def run_state(instance: dg.DagsterInstance, run_key: str) -> str | None:
    """'active', 'done', 'dead' or None for the newest run with ``run_key``; marks orphans failed."""
    runs = instance.get_runs(filters=dg.RunsFilter(tags={tags.RUN_KEY: run_key}), limit=1)
    if not runs:
        return None
    run = fail_if_orphaned(instance, runs[0], "aivj: the run's worker process is gone") or runs[0]
    run = with_retry_decision(instance, run)
    if run.status in _DEAD:
        if run.tags.get(tags.WILL_RETRY) == "true" and tags.AUTO_RETRY_RUN_ID not in run.tags:
            return "active"  # Dagster's own run retry comes next, under the same run key
        return "dead"
    if run.status == dg.DagsterRunStatus.SUCCESS:
        return "done"
    return "active"


@dg.sensor(
    name="data_files_sensor",
    job=ingest_job,
    minimum_interval_seconds=_interval(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Registers each new settled file in AIVJ_DATA_DIR as a raw_pairs partition.",
)
def data_files_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    settings = load_settings()
    committed = json.loads(context.cursor)["seq"] if context.cursor else 0
    instance = context.instance
    plan = scan_tick(
        settings,
        committed,
        materialized=lambda: set(instance.get_materialized_partitions(raw_pairs.key)),
        run_state=lambda key: run_state(instance, key),
    )
    cursor = json.dumps({"seq": plan.last_seq})
    context.log.info(f"data folder {settings.data_dir}: {plan.stats}")
    if not plan.requests:
        return dg.SensorResult(skip_reason=dg.SkipReason(f"nothing new ({plan.stats})"), cursor=cursor)
    keys = sorted({r.partition for r in plan.requests})
    return dg.SensorResult(
        dynamic_partitions_requests=[data_files.build_add_request(keys)],
        run_requests=[
            dg.RunRequest(
                run_key=r.run_key,
                partition_key=r.partition,
                tags={
                    tags.SOURCE: r.path[-200:],
                    tags.CONTENT_HASH: r.content_hash,
                    # Data errors are final; only a run that died (not a failed step) is retried.
                    tags.RETRY_ON_STEP_FAILURE: "false",
                },
            )
            for r in plan.requests
        ],
        cursor=cursor,
    )

