"""The gates every new data file passes through, as plain functions of its ingest report.

The ``raw_pairs`` asset emits them as asset checks with the materialisation that stored the
file, so they judge exactly the rows just stored. One is blocking: a file whose rows mostly
have other vector lengths comes from a broken exporter.
"""

from __future__ import annotations

from aivj_assets.data.ingest import IngestReport
from aivj_assets.policy.gates import Gate
from aivj_assets.settings import Settings

VECTOR_LENGTHS = "vector_lengths_match_lineage"
BAD_ROWS = "bad_row_share"
LABEL_BALANCE = "label_balance"
FEATURE_DRIFT = "feature_drift"
OUT_OF_TIME = "champion_out_of_time"  # its gate is out_of_time.gate_out_of_time: it needs the champion

# (name, blocking, description) of every data gate, in the order data_gates() returns them.
DATA_GATES = (
    (VECTOR_LENGTHS, True, "Rows with vector lengths other than the lineage's stay under the bad-row bound."),
    (BAD_ROWS, False, "Share of rows kept aside is small."),
    (LABEL_BALANCE, False, "Both labels are present in fair share."),
    (FEATURE_DRIFT, False, "Feature distribution (PSI of binned features) matches the corpus so far."),
    (OUT_OF_TIME, False, "Test-then-train: the champion's accuracy on this new file, before any model trains on "
                         "it, is within drift_drop points of the recent files' trailing mean."),
)


def gate_vector_lengths(report: IngestReport, settings: Settings) -> Gate:
    """Blocking: rows whose vector lengths differ from the lineage's are few, and some rows are good."""
    share = report.wrong_length_rows / max(report.total_rows, 1)
    lineage = report.lineage or {}
    return Gate(VECTOR_LENGTHS, share <= settings.bad_row_share_max and (report.rows > 0 or report.total_rows == 0),
                share, settings.bad_row_share_max, True,
                f"{report.wrong_length_rows} of {report.total_rows} rows have other vector lengths than the lineage",
                detail={"wrong_length_rows": report.wrong_length_rows, "wrong_length_share": share,
                        "lineage_audio_dim": lineage.get("audio_dim"), "lineage_preset_dim": lineage.get("preset_dim")})


def warn_bad_rows(report: IngestReport, settings: Settings) -> Gate:
    """Warning: the share of rows kept aside in quarantine stays under the bound."""
    share = report.bad_rows / max(report.total_rows, 1)
    return Gate(BAD_ROWS, share <= settings.bad_row_share_max, share, settings.bad_row_share_max, False,
                f"{report.bad_rows} of {report.total_rows} rows kept aside",
                detail={"bad_rows": report.bad_rows, "bad_row_share": share,
                        "examples": "\n".join(report.bad_examples) or "none"})


def warn_label_balance(report: IngestReport, settings: Settings) -> Gate:
    """Warning: the minority label's share is at least the bound."""
    positive = report.positive_share
    minority = min(positive, 1 - positive) if positive is not None else 0.0
    return Gate(LABEL_BALANCE, minority >= settings.label_balance_min, minority, settings.label_balance_min, False,
                f"minority label share {minority:.3f}",
                detail={"positive_share": positive if positive is not None else -1.0, "minority_share": minority})


def warn_feature_drift(report: IngestReport, settings: Settings) -> Gate:
    """Warning: mean PSI over features against the corpus so far stays under the bound."""
    d = report.drift
    mean = d.get("mean", 0.0)
    worst = d.get("worst_feature")
    return Gate(FEATURE_DRIFT, mean <= settings.drift_psi_max, mean, settings.drift_psi_max, False,
                f"mean population stability index {mean:.3f} against {d.get('reference_rows', 0)} rows so far",
                detail={"psi_mean": mean, "psi_max": d.get("max", 0.0),
                        "worst_feature": worst if worst is not None else -1,
                        "reference_rows": d.get("reference_rows", 0)})


def data_gates(report: IngestReport, settings: Settings) -> list[Gate]:
    """The data gates of one stored file computed from its report, in :data:`DATA_GATES` order."""
    return [gate_vector_lengths(report, settings), warn_bad_rows(report, settings),
            warn_label_balance(report, settings), warn_feature_drift(report, settings)]
