"""raw_pairs: one dynamic partition per ingested data file, validated into the store.

The asset is thin: :func:`aivj_assets.data.ingest.ingest_partition` does the work; here
its report becomes metadata and asset checks, emitted with the materialisation so that
they judge exactly the file just stored. Then the champion is scored on the new rows
(test-then-train, :mod:`aivj_assets.policy.out_of_time`) before any model trains on them.
"""


import dagster as dg

from aivj_assets.data.contract import DataFileError
from aivj_assets.data.ingest import ingest_partition
from aivj_assets.orchestration.checks import gate_result
from aivj_assets.orchestration.resources import NotifierResource
from aivj_assets.policy.data_gates import DATA_GATES, OUT_OF_TIME, data_gates
from aivj_assets.policy.gates import Gate
from aivj_assets.registry import Registry
from aivj_assets.settings import Settings, load_settings

data_files = dg.DynamicPartitionsDefinition(name="data_files")

_SPECS = [dg.AssetCheckSpec(name, asset="raw_pairs", blocking=blocking, description=description)
          for name, blocking, description in DATA_GATES]


def score_out_of_time(context: dg.AssetExecutionContext, settings: Settings,
                      notifier: NotifierResource) -> tuple[dict, dg.AssetCheckResult]:
    """The champion scored on the partition just stored: its metadata (plotted per partition in the
    UI) and the warning check. A scoring error warns with its reason and never fails the ingest."""
    registry = Registry(settings.models_dir)
    if registry.champion() is None:
        context.log.info(f"{context.partition_key}: no champion yet, nothing to score out of time")
        return {}, gate_result(Gate(OUT_OF_TIME, True, "not scored", settings.drift_drop, False, "no champion yet"))
    # torch: imported when there is a champion to score, not when the code location loads
    from aivj_assets.policy.out_of_time import gate_out_of_time, score_partition

    key = context.partition_key
    try:
        result = score_partition(settings, registry, key, notify=notifier.notify, log=context.log.info)
    except Exception as exc:  # the rows are stored; the owner still learns the score is missing, and why
        context.log.warning(f"{key}: could not score the champion on it: {exc}")
        return {}, gate_result(gate_out_of_time(None, settings, error=str(exc)))
    metadata = {} if result is None else {
        "champion_accuracy": result.accuracy, "champion_version": result.champion,
        "champion_accuracy_low": result.interval[0], "champion_accuracy_high": result.interval[1]}
    return metadata, gate_result(gate_out_of_time(result, settings))


@dg.asset(
    partitions_def=data_files,
    group_name="data",
    check_specs=_SPECS,
    description="The good rows of one data file, validated and normalised into the store.",
)
def raw_pairs(context: dg.AssetExecutionContext, notifier: NotifierResource) -> dg.MaterializeResult:
    settings = load_settings()
    try:
        report = ingest_partition(settings, context.partition_key)
    except DataFileError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    context.log.info(f"{report.source_path}: {report.rows} rows stored, {report.bad_rows} kept aside")
    scores, out_of_time = score_out_of_time(context, settings, notifier)
    return dg.MaterializeResult(
        metadata={
            "rows": report.rows,
            "bad_rows": report.bad_rows,
            "content_hash": report.content_hash,
            "source_path": dg.MetadataValue.path(report.source_path),
            "audio_dim": report.audio_dim if report.audio_dim is not None else -1,
            "preset_dim": report.preset_dim if report.preset_dim is not None else -1,
            "label_positive_share": report.positive_share if report.positive_share is not None else -1.0,
            "quarantine": dg.MetadataValue.path(report.quarantine_path or "none"),
            "bytes": report.bytes,
            "drift_psi_mean": report.drift.get("mean", 0.0),
            **scores,
        },
        check_results=[*(gate_result(g) for g in data_gates(report, settings)), out_of_time],
    )


# Ingest runs execute in the run worker itself: one short step gains nothing from a step
# subprocess, which would load the code location a second time per file.
ingest_job = dg.define_asset_job(
    "ingest_raw_pairs",
    selection=[raw_pairs],
    executor_def=dg.in_process_executor,
    description="Ingest one data file (a raw_pairs partition); requested by data_files_sensor.",
)
