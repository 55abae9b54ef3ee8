"""elite_set: the golden set, split deterministically into warm-up and held-out judging parts."""


import dagster as dg

from aivj_assets.data.contract import DataFileError
from aivj_assets.data.elite import build_elite_set
from aivj_assets.orchestration.assets.raw_pairs import raw_pairs
from aivj_assets.settings import load_settings


@dg.asset(
    group_name="data",
    deps=[raw_pairs],
    description="Elite pairs, validated; rows split by content hash into warm-up and judging parts.",
)
def elite_set(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    settings = load_settings()
    try:
        report = build_elite_set(settings)
    except (DataFileError, ValueError) as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    context.log.info(f"elite set: {report.warmup} warm-up rows, {report.judge} judging rows")
    return dg.MaterializeResult(
        metadata={
            "rows": report.rows,
            "warmup_rows": report.warmup,
            "judge_rows": report.judge,
            "judge_fraction": report.judge_fraction,
            "bad_rows": report.bad_rows,
            "duplicate_rows": report.duplicates,
            "files": "\n".join(report.files),
            "content_hash": report.content_hash,
        },
        data_version=dg.DataVersion(report.content_hash[:16]),
    )
