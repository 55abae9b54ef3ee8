"""raw_pairs: one dynamic partition per ingested data file, validated into the store.

The asset is thin: :func:`aivj_assets.data.ingest.ingest_partition` does the work; here
its report becomes metadata and asset checks, emitted with the materialisation so that
they judge exactly the file just stored. Then the champion is scored on the new rows
(test-then-train, :mod:`aivj_assets.out_of_time`) before any model trains on them.
"""


import dagster as dg

from aivj_assets.data.contract import DataFileError
from aivj_assets.data.ingest import IngestReport, ingest_partition
from aivj_assets.out_of_time import score_partition
from aivj_assets.registry import Registry
from aivj_assets.resources.wiring import NotifierResource
from aivj_assets.settings import Settings, load_settings

data_files = dg.DynamicPartitionsDefinition(name="data_files")

CHECK_VECTOR_LENGTHS = "vector_lengths_match_lineage"
CHECK_BAD_ROWS = "bad_row_share"
CHECK_LABEL_BALANCE = "label_balance"
CHECK_DRIFT = "feature_drift"
CHECK_OUT_OF_TIME = "champion_out_of_time"

_SPECS = [
    dg.AssetCheckSpec(CHECK_VECTOR_LENGTHS, asset="raw_pairs", blocking=True,
                      description="Rows with vector lengths other than the lineage's stay under the bad-row bound."),
    dg.AssetCheckSpec(CHECK_BAD_ROWS, asset="raw_pairs", description="Share of rows kept aside is small."),
    dg.AssetCheckSpec(CHECK_LABEL_BALANCE, asset="raw_pairs", description="Both labels are present in fair share."),
    dg.AssetCheckSpec(CHECK_DRIFT, asset="raw_pairs",
                      description="Feature distribution (PSI of binned features) matches the corpus so far."),
    dg.AssetCheckSpec(CHECK_OUT_OF_TIME, asset="raw_pairs",
                      description="Test-then-train: the champion's accuracy on this new file, before any model "
                                  "trains on it, is within drift_drop points of the recent files' trailing mean."),
]


def check_vector_lengths(report: IngestReport, settings: Settings) -> dg.AssetCheckResult:
    """Blocking: a file whose rows mostly have other vector lengths comes from a broken exporter."""
    share = report.wrong_length_rows / max(report.total_rows, 1)
    return dg.AssetCheckResult(
        check_name=CHECK_VECTOR_LENGTHS,
        passed=share <= settings.bad_row_share_max and (report.rows > 0 or report.total_rows == 0),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"wrong_length_rows": report.wrong_length_rows, "wrong_length_share": share,
                  "bound": settings.bad_row_share_max, "lineage_audio_dim": report.lineage.get("audio_dim"),
                  "lineage_preset_dim": report.lineage.get("preset_dim")},
    )


def check_bad_row_share(report: IngestReport, settings: Settings) -> dg.AssetCheckResult:
    """Warning: the share of rows kept aside in quarantine stays under the bound."""
    share = report.bad_rows / max(report.total_rows, 1)
    return dg.AssetCheckResult(
        check_name=CHECK_BAD_ROWS,
        passed=share <= settings.bad_row_share_max,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"bad_rows": report.bad_rows, "bad_row_share": share, "bound": settings.bad_row_share_max,
                  "examples": "\n".join(report.bad_examples) or "none"},
    )


def check_label_balance(report: IngestReport, settings: Settings) -> dg.AssetCheckResult:
    """Warning: the minority label's share is at least the bound."""
    positive = report.positive_share
    minority = min(positive, 1 - positive) if positive is not None else 0.0
    return dg.AssetCheckResult(
        check_name=CHECK_LABEL_BALANCE,
        passed=minority >= settings.label_balance_min,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"positive_share": positive if positive is not None else -1.0, "minority_share": minority,
                  "bound": settings.label_balance_min},
    )


def check_feature_drift(report: IngestReport, settings: Settings) -> dg.AssetCheckResult:
    """Warning: mean PSI over features against the corpus so far stays under the bound."""
    d = report.drift
    return dg.AssetCheckResult(
        check_name=CHECK_DRIFT,
        passed=d.get("mean", 0.0) <= settings.drift_psi_max,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"psi_mean": d.get("mean", 0.0), "psi_max": d.get("max", 0.0),
                  "worst_feature": d.get("worst_feature") if d.get("worst_feature") is not None else -1,
                  "reference_rows": d.get("reference_rows", 0), "bound": settings.drift_psi_max},
    )


def score_out_of_time(context: dg.AssetExecutionContext, settings: Settings,
                      notifier: NotifierResource) -> tuple[dict, dg.AssetCheckResult]:
    """The champion scored on the partition just stored: its metadata (plotted per partition in the
    UI) and the warning check. A scoring error warns with its reason and never fails the ingest."""
    key = context.partition_key
    try:
        result = score_partition(settings, Registry(settings.models_dir), key, notify=notifier.notify,
                                 log=context.log.info)
    except Exception as exc:  # the rows are stored; the owner still learns the score is missing, and why
        context.log.warning(f"{key}: could not score the champion on it: {exc}")
        return {}, dg.AssetCheckResult(check_name=CHECK_OUT_OF_TIME, passed=False, severity=dg.AssetCheckSeverity.WARN,
                                       description=f"could not score the champion: {exc}"[:500])
    if result is None:
        return {}, dg.AssetCheckResult(check_name=CHECK_OUT_OF_TIME, passed=True, severity=dg.AssetCheckSeverity.WARN,
                                       description="no champion, or the champion was trained on this file")
    metadata = {"champion_accuracy": result.accuracy, "champion_version": result.champion,
                "champion_accuracy_low": result.interval[0], "champion_accuracy_high": result.interval[1]}
    return metadata, dg.AssetCheckResult(
        check_name=CHECK_OUT_OF_TIME, passed=result.passed(settings.drift_drop), severity=dg.AssetCheckSeverity.WARN,
        description=result.line(),
        metadata={**metadata, "rows": result.rows, "drop_points": result.drop_points, "bound_points": settings.drift_drop,
                  "trailing_mean": result.trailing_mean if result.trailing_mean is not None else -1.0,
                  "trailing_files": result.trailing_files})


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
        check_results=[
            check_vector_lengths(report, settings),
            check_bad_row_share(report, settings),
            check_label_balance(report, settings),
            check_feature_drift(report, settings),
            out_of_time,
        ],
    )


# Ingest runs execute in the run worker itself: one short step gains nothing from a step
# subprocess, which would load the code location a second time per file.
ingest_job = dg.define_asset_job(
    "ingest_raw_pairs",
    selection=[raw_pairs],
    executor_def=dg.in_process_executor,
    description="Ingest one data file (a raw_pairs partition); requested by data_files_sensor.",
)

# The checks travel with the asset as check specs (their results are emitted by the
# materialisation that stored the file), so there are no separate check definitions.
RAW_PAIRS_CHECKS: list = []
