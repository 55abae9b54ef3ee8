"""Every run tag the platform sets or reads, in one place.

Ours (``aivj/...``) say what a run is and how it should end; Dagster's (``dagster/...``) are
the ones its run queue, retries and sensors act on.
"""

# --- ours ---------------------------------------------------------------------------------
TRAINING = "aivj/training"  # "true" on every training run: one at a time, and its notices
TRAINING_TAGS = {TRAINING: "true"}
DEADLINE = "aivj/deadline"  # the window's end (ISO-8601 with offset): the run stops resumably then
PLAN = "aivj/plan"  # full_training | incremental_training: what the nightly schedule chose
REASON = "aivj/reason"  # why it chose it
OUTCOME = "aivj/outcome"  # a failure that is a normal outcome ("gate_rejected"): not retried, not alerted
SOURCE = "aivj/source"  # the data file an ingest run stores
CONTENT_HASH = "aivj/content_hash"  # that file's sha256
LAUNCHED_BY = "aivj/launched_by"  # who launched a run by hand ("aivj demo")
RETRY_EXPECTED = "aivj/retry_expected"  # the failure alert held back: Dagster said it retries this run
RETRY_ALERTED = "aivj/retry_alerted"  # the owner was told this run's retry never launched

# --- Dagster's ------------------------------------------------------------------------------
RUN_KEY = "dagster/run_key"
MAX_RETRIES = "dagster/max_retries"
RETRY_NUMBER = "dagster/retry_number"
WILL_RETRY = "dagster/will_retry"
AUTO_RETRY_RUN_ID = "dagster/auto_retry_run_id"
RETRY_ON_STEP_FAILURE = "dagster/retry_on_asset_or_op_failure"
