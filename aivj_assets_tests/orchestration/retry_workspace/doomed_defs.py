"""A code location for test_retries: a job that always fails, and the project's failure alert."""

import dagster as dg

from aivj_assets.orchestration.ops_sensors import run_failure_alert


@dg.op
def always_fails() -> None:
    raise RuntimeError("disk on fire (test)")


@dg.job(executor_def=dg.in_process_executor)
def doomed() -> None:
    always_fails()


defs = dg.Definitions(jobs=[doomed], sensors=[run_failure_alert])
