"""Feature drift: population stability index (PSI) of a new file against the corpus so far.

Each partition keeps a compact summary: per feature, counts over fixed bins whose edges are
the deciles of the first file ingested in the lineage. Summing summaries (:func:`add`) gives
the corpus; PSI per feature compares the new file's bin shares with the corpus's.
"""

from __future__ import annotations

import numpy as np

BINS = 10
# Rows summarised per file, evenly spaced. Two samples of one distribution differ by a PSI of
# about (BINS - 1) / rows per feature, 0.002 at 4,096 rows: a hundred times under the warning
# threshold (0.25), so more rows would buy nothing but time.
SAMPLE_ROWS = 4096


def _sample(audio: np.ndarray, preset: np.ndarray, dtype=np.float64) -> np.ndarray:
    """At most SAMPLE_ROWS evenly spaced rows of both vectors side by side, as ``dtype``."""
    step = max(1, -(-audio.shape[0] // SAMPLE_ROWS))
    return np.concatenate([audio[::step], preset[::step]], axis=1).astype(dtype, copy=False)


def decile_edges(audio: np.ndarray, preset: np.ndarray) -> list[list[float]]:
    """Inner bin edges (BINS - 1 per feature) from the deciles of a first file's features."""
    # Sorted in float32 first (exact: float32 to float64 keeps every value and the order), which
    # costs half of letting np.quantile select in float64; the deciles are the same numbers.
    ordered = np.sort(np.ascontiguousarray(_sample(audio, preset, np.float32).T), axis=1).astype(np.float64)
    return np.quantile(ordered, np.linspace(0, 1, BINS + 1)[1:-1], axis=1).T.tolist()


def summarise(audio: np.ndarray, preset: np.ndarray, edges: list[list[float]]) -> dict:
    """Per-feature bin counts over ``edges`` (of at most SAMPLE_ROWS evenly spaced rows)."""
    features = _sample(audio, preset, np.float32)
    rows, width = features.shape
    inner = np.asarray(edges, np.float64).reshape(width, BINS - 1)
    # A float32 value is >= a float64 edge exactly when it is >= the smallest float32 at or
    # above the edge, so the comparisons run in float32 with the same bins as in float64.
    edges32 = inner.astype(np.float32)
    edges32 = np.where(edges32.astype(np.float64) < inner, np.nextafter(edges32, np.float32(np.inf)), edges32)
    # A value's bin is the number of edges at or below it (searchsorted's side="right"),
    # counted for every feature at once, one edge at a time.
    bins = np.zeros(features.shape, np.uint8)
    for k in range(BINS - 1):
        bins += features >= edges32[:, k]
    counts = np.bincount((bins + BINS * np.arange(width, dtype=np.int32)).ravel(), minlength=BINS * width)
    return {"rows": int(rows), "counts": counts.reshape(width, BINS).tolist()}


def add(total: dict | None, summary: dict | None, sign: int = 1) -> dict:
    """A copy of ``total`` plus (``sign`` -1: minus) one summary's ``rows`` and ``counts``.

    ``add(None, None)`` is the empty total; a None summary (a partition without rows) adds nothing.
    """
    total = dict(total) if total is not None else {"rows": 0, "counts": None}
    if summary is None or not summary["rows"]:
        return total
    counts = np.asarray(summary["counts"], np.int64) * sign
    if total["counts"] is not None:
        counts = counts + np.asarray(total["counts"], np.int64)
    total.update(rows=total["rows"] + sign * summary["rows"], counts=counts.tolist())
    return total


def psi(new: dict, reference: dict) -> dict:
    """PSI per feature of summary ``new`` against ``reference`` (summaries summed by :func:`add`)."""
    ref_rows = reference["rows"]
    if new["rows"] == 0 or ref_rows == 0:
        return {"mean": 0.0, "max": 0.0, "worst_feature": None, "reference_rows": ref_rows}
    ref = np.asarray(reference["counts"], np.float64)
    cur = np.asarray(new["counts"], np.float64)
    # Half a count of smoothing keeps empty bins finite without hiding real shifts.
    p = (cur + 0.5) / (cur.sum(axis=1, keepdims=True) + 0.5 * BINS)
    q = (ref + 0.5) / (ref.sum(axis=1, keepdims=True) + 0.5 * BINS)
    per_feature = ((p - q) * np.log(p / q)).sum(axis=1)
    worst = int(np.argmax(per_feature))
    return {
        "mean": float(per_feature.mean()),
        "max": float(per_feature[worst]),
        "worst_feature": worst,
        "reference_rows": int(ref_rows),
    }
