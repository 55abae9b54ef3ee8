"""The data contract: read one data file, keep the good rows normalised, set the bad ones aside.

A data file is JSON lines or Parquet with ``audio`` and ``preset`` float vectors, a 0/1 (or
boolean) ``label`` and optional ``pair_id`` and ``weight``; field names come from Settings.
Every row rule is written once, on whole columns (pyarrow and NumPy); a JSON-lines file that
pyarrow cannot parse whole (a malformed line, mixed types) is parsed line by line and its rows
then judged by the same rules.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from aivj_assets.data.json_rows import WEIGHT_REASON, label_reason, nonfinite_reason, typed_columns
from aivj_assets.data.split import row_hash_array
from aivj_assets.settings import Settings

PAIR_SCHEMA = pa.schema(
    [
        ("audio", pa.list_(pa.float32())),
        ("preset", pa.list_(pa.float32())),
        ("label", pa.int8()),
        ("weight", pa.float32()),
        ("pair_id", pa.string()),
        ("row_hash", pa.string()),
    ]
)
DATA_SUFFIXES = (".jsonl", ".parquet")


class DataFileError(ValueError):
    """A data file that cannot be read at all; the message names the file and the reason."""


@dataclass
class BadRow:
    """One row kept aside: the file, its line (JSON lines) or row (Parquet), 1-based, and why."""

    file: str
    line: int
    reason: str


@dataclass
class FileRows:
    """The outcome of reading one file: normalised good rows, bad rows and what was seen.

    :attr:`table` (with the row hashes) is built on first use, so a caller that needs only
    the arrays (the ingest: a partition's first read hashes its rows) does not pay for it.
    """

    audio: np.ndarray  # [n, audio_dim] float32, the good rows
    preset: np.ndarray  # [n, preset_dim] float32
    labels: np.ndarray  # [n] int8, 0 or 1
    weights: np.ndarray  # [n] float32
    pair_ids: pa.Array | pa.ChunkedArray  # [n] strings or nulls
    bad: list[BadRow] = field(default_factory=list)
    audio_dim: int | None = None
    preset_dim: int | None = None
    wrong_length_rows: int = 0
    _table: pa.Table | None = field(default=None, repr=False)

    @property
    def rows(self) -> int:
        return len(self.labels)

    @property
    def total_rows(self) -> int:
        return self.rows + len(self.bad)

    @property
    def table(self) -> pa.Table:
        """The good rows as the normalised store table (:data:`PAIR_SCHEMA`)."""
        if self._table is None:
            self._table = build_table(self.audio, self.preset, self.labels, self.weights, self.pair_ids)
        return self._table


class _NeedLinePath(Exception):
    """pyarrow's types do not fit the contract: fall back to per-line reading."""


def read_pairs(path: Path, data: bytes, settings: Settings, lineage: dict | None) -> FileRows:
    """Validate the bytes of data file ``path``; raise DataFileError if it cannot be read at all."""
    suffix = Path(path).suffix.lower()
    if not data or data.isspace():  # isspace stops at the first other byte; strip() would copy the file
        raise DataFileError(f"{path}: the file is empty")
    if suffix == ".parquet":
        try:
            # ParquetFile reads one file without the dataset layer of pq.read_table, which costs time here.
            table = pq.ParquetFile(pa.BufferReader(data)).read()
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise DataFileError(f"{path}: cannot read Parquet: {exc}") from None
        if table.num_rows == 0:
            raise DataFileError(f"{path}: the Parquet file has no rows")
        try:
            return _validate_table(path, table, settings, lineage, line_numbers=None, strict=False)
        except _NeedLinePath as exc:
            raise DataFileError(f"{path}: {exc}") from None
    if suffix != ".jsonl":
        raise DataFileError(f"{path}: unsupported file type {suffix!r} (expected .jsonl or .parquet)")
    if b"\x00" in data:
        raise DataFileError(f"{path}: binary content, not JSON lines")
    try:
        table = pa_json.read_json(io.BytesIO(data))
        result = _validate_table(path, table, settings, lineage, line_numbers=None, strict=True)
        if result.bad:  # name the real line of each bad row (pyarrow skips blank lines)
            lines = [i + 1 for i, raw in enumerate(data.split(b"\n")) if raw.strip()]
            for bad in result.bad:
                bad.line = lines[bad.line - 1]
        return result
    except (pa.ArrowInvalid, pa.ArrowTypeError, _NeedLinePath):
        return _read_lines(path, data, settings, lineage)


# --- vectorised path ------------------------------------------------------------------


class _Marks:
    """Which rows are bad and why: the first reason given for a row is the one kept.

    Reasons are built only for newly bad rows, so a clean file costs a few array passes.
    """

    def __init__(self, n: int) -> None:
        self.bad = np.zeros(n, bool)
        self.why: dict[int, str] = {}

    def rows(self, reasons: dict[int, str]) -> None:
        """Mark single rows, each with its own reason."""
        for i, reason in reasons.items():
            if not self.bad[i]:
                self.bad[i], self.why[i] = True, reason

    def __call__(self, mask: np.ndarray, reason) -> None:
        new = mask & ~self.bad
        if not new.any():
            return
        for i in np.flatnonzero(new).tolist():
            self.why[i] = reason(i) if callable(reason) else reason
        self.bad |= new


@dataclass
class _Vectors:
    """One list column as flat float32 ``values`` with ``offsets``, per-row lengths (-1 if null)."""

    lengths: np.ndarray
    offsets: np.ndarray
    values: np.ndarray


def _validate_table(
    path: Path, t: pa.Table, settings: Settings, lineage: dict | None, line_numbers: list[int] | None = None,
    strict: bool = True, known_bad: dict[int, str] | None = None,
) -> FileRows:
    """Every row rule of the contract, on whole columns. ``strict`` (JSON lines): a column whose
    type is not the contract's sends the file line by line, so each row is judged on its own.
    Parquet has no lines and one type per column, so its columns are cast (a category pair_id, a
    boolean weight) as long as the cast holds. ``known_bad``: rows already judged (row -> reason)."""
    n = t.num_rows
    mark = _Marks(n)
    mark.rows(known_bad or {})
    vectors = {name: _vector_column(t, name, n, mark, strict) for name in (settings.audio_field, settings.preset_field)}
    labels = _labels(t, settings.label_field, n, mark)
    weights = _weights(t, settings.weight_field, n, mark, strict)
    pair_ids = _pair_ids(t, settings.pair_id_field, strict)
    audio_dim, preset_dim, wrong = _check_lengths(vectors, settings, lineage, mark)
    if mark.bad.any():
        idx = np.flatnonzero(~mark.bad)
        labels, weights = labels[idx], weights[idx]
        if pair_ids is not None:
            pair_ids = pair_ids.take(pa.array(idx))
    else:
        idx = None
    audio = _gather(vectors[settings.audio_field], idx, n, audio_dim)
    preset = _gather(vectors[settings.preset_field], idx, n, preset_dim)
    if pair_ids is None:
        pair_ids = pa.nulls(len(labels), pa.string())
    bad = [BadRow(str(path), (line_numbers[i] if line_numbers else i + 1), reason) for i, reason in sorted(mark.why.items())]
    return FileRows(audio, preset, labels, weights, pair_ids, bad, audio_dim, preset_dim, wrong)


def _vector_column(t: pa.Table, name: str, n: int, mark: _Marks, strict: bool) -> _Vectors | None:
    """A list column as flat float32 values; marks rows where it is missing, empty or not finite."""
    if name not in t.column_names:
        mark(np.ones(n, bool), f"missing field {name!r}")
        return None
    arr = _list_of_float32(t[name], name, strict)
    offsets = arr.offsets.to_numpy()
    # Nulls inside a list become NaN here, so one finiteness test covers NaN, Inf (also a
    # float64 beyond float32's range) and null values.
    values = arr.values.to_numpy(zero_copy_only=False)
    lengths = np.diff(offsets)
    missing = _is_null(arr) if arr.null_count else np.zeros(n, bool)
    if missing.any():
        mark(missing, f"missing field {name!r}")
        lengths = np.where(missing, -1, lengths)
    mark(lengths == 0, f"{name} has no values")  # a lineage of empty vectors would refuse all else
    if not np.isfinite(values[offsets[0] : offsets[-1]]).all():
        bad_cum = np.concatenate([[0], np.cumsum(~np.isfinite(values))])
        nonfinite = (bad_cum[offsets[1:]] - bad_cum[offsets[:-1]]) > 0
        mark(nonfinite & ~missing, nonfinite_reason(name))
    return _Vectors(lengths, offsets, values)


def _weights(t: pa.Table, name: str, n: int, mark: _Marks, strict: bool) -> np.ndarray:
    """Row weights (1 where absent); marks rows whose weight is not a finite number >= 0."""
    if name not in t.column_names:
        return np.ones(n, np.float32)
    if strict and not _numeric(t[name].type):
        raise _NeedLinePath(f"field {name!r} is not numeric")
    try:
        w = pc.cast(t[name], pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        raise _NeedLinePath(f"field {name!r} is not numeric") from None
    w = np.where(_is_null(t[name]), 1.0, w)
    mark(~np.isfinite(w) | (w < 0), WEIGHT_REASON)
    return w.astype(np.float32)


def _pair_ids(t: pa.Table, name: str, strict: bool) -> pa.Array | pa.ChunkedArray | None:
    """The pair ids as strings, or None when the file has none."""
    if name not in t.column_names:
        return None
    kind = t[name].type
    if strict and not (pa.types.is_string(kind) or pa.types.is_large_string(kind)
                       or pa.types.is_integer(kind) or pa.types.is_null(kind)):
        raise _NeedLinePath(f"field {name!r} is not a string")
    try:
        return pc.cast(t[name], pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise _NeedLinePath(f"field {name!r} is not a string") from None


def _is_null(col) -> np.ndarray:
    return np.asarray(col.is_null().to_numpy(zero_copy_only=False), bool)


def _numeric(t: pa.DataType) -> bool:
    """Numbers as JSON and Parquet give them (not strings or booleans, which casts would take)."""
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_null(t)


def _list_of_float32(col: pa.ChunkedArray, name: str, strict: bool) -> pa.ListArray:
    t = col.type
    if strict and not ((pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t))
                       and _numeric(t.value_type)):
        raise _NeedLinePath(f"field {name!r} is not a list of numbers")
    try:
        # Not a "safe" cast: an integer beyond 2**24 or a float64 becomes the nearest float32,
        # which is the normalisation itself; a value beyond float32's range becomes Inf and is
        # refused as such.
        cast = pc.cast(col, pa.list_(pa.float32()), safe=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        raise _NeedLinePath(f"field {name!r} is not a list of numbers") from None
    return pa.concat_arrays(cast.chunks) if cast.num_chunks != 1 else cast.chunk(0)


def _labels(t: pa.Table, name: str, n: int, mark) -> np.ndarray:
    if name not in t.column_names:
        mark(np.ones(n, bool), f"missing field {name!r}")
        return np.zeros(n, np.int8)
    col = t[name]
    if pa.types.is_boolean(col.type):
        col = pc.cast(col, pa.int8())
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_null(col.type)):
        raise _NeedLinePath(f"field {name!r} must be 0/1 or a boolean, found {col.type}")
    values = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
    missing = _is_null(col) if col.null_count else np.zeros(n, bool)
    mark(missing, f"missing field {name!r}")
    mark(~missing & (values != 0) & (values != 1), lambda i: label_reason(f"{values[i]:g}"))
    return (values == 1).astype(np.int8)


def _check_lengths(vectors, settings: Settings, lineage, mark: _Marks) -> tuple[int | None, int | None, int]:
    """Fix the vector lengths (the lineage's, or this file's most common pair) and mark others."""
    a = vectors[settings.audio_field]
    p = vectors[settings.preset_field]
    if a is None or p is None:
        return None, None, 0
    ok = ~mark.bad
    if lineage:
        dims = (int(lineage["audio_dim"]), int(lineage["preset_dim"]))
    else:
        la, lp = a.lengths[ok], p.lengths[ok]
        if not len(la):
            return None, None, 0
        if (la == la[0]).all() and (lp == lp[0]).all():
            dims = (int(la[0]), int(lp[0]))
        else:  # the most common pair, the first seen among equals
            dims = Counter(zip(la.tolist(), lp.tolist(), strict=True)).most_common(1)[0][0]
    wrong_a = ok & (a.lengths != dims[0])
    wrong_p = ok & (p.lengths != dims[1])
    mark(wrong_a, lambda i: f"{settings.audio_field} has {a.lengths[i]} values, lineage expects {dims[0]}")
    mark(wrong_p, lambda i: f"{settings.preset_field} has {p.lengths[i]} values, lineage expects {dims[1]}")
    return dims[0], dims[1], int((wrong_a | wrong_p).sum())


def _gather(vec: _Vectors | None, idx: np.ndarray | None, n: int, dim: int | None) -> np.ndarray:
    """The good rows' vectors as an ``[rows, dim]`` float32 matrix (``idx`` None: every row)."""
    rows = n if idx is None else len(idx)
    if vec is None or dim is None or rows == 0:
        return np.zeros((0, dim or 0), np.float32)
    start = int(vec.offsets[0])
    if idx is None:  # every row is good, so every row has ``dim`` values, back to back
        return vec.values[start : start + n * dim].reshape(n, dim)
    return vec.values[vec.offsets[idx][:, None] + np.arange(dim)]


def build_table(audio: np.ndarray, preset: np.ndarray, labels: np.ndarray, weights: np.ndarray, pair_ids) -> pa.Table:
    """The normalised store table (:data:`PAIR_SCHEMA`) from 2-D float32 arrays and columns."""
    labels = np.asarray(labels, np.int8)
    return pa.table(
        {
            "audio": fixed_lists(audio),
            "preset": fixed_lists(preset),
            "label": pa.array(labels, pa.int8()),
            "weight": pa.array(np.asarray(weights, np.float32), pa.float32()),
            "pair_id": pair_ids if isinstance(pair_ids, (pa.Array, pa.ChunkedArray)) else pa.array(pair_ids, pa.string()),
            "row_hash": row_hash_array(audio, preset, labels),
        },
        schema=PAIR_SCHEMA,
    )


def fixed_lists(matrix: np.ndarray) -> pa.ListArray:
    n, dim = matrix.shape
    offsets = pa.array(np.arange(0, (n + 1) * dim, dim, dtype=np.int32)) if n else pa.array([0], pa.int32())
    return pa.ListArray.from_arrays(offsets, pa.array(np.ascontiguousarray(matrix, np.float32).ravel()))


# --- per-line path (JSON lines that pyarrow cannot take whole) -------------------------


def _read_lines(path: Path, data: bytes, settings: Settings, lineage: dict | None) -> FileRows:
    """Parse line by line, then judge the parsed rows by the same rules as a whole file.

    Parsing is all this path adds: a malformed line or a value of another type than the
    contract's is named here; every other rule is the vectorised one.
    """
    objects: list[dict] = []
    line_numbers: list[int] = []
    bad: list[BadRow] = []
    for lineno, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except (ValueError, RecursionError) as exc:  # bad JSON or UTF-8, an integer of 4,300+ digits, deep nesting
            bad.append(BadRow(str(path), lineno, f"malformed JSON: {str(exc)[:200]}"))
            continue
        if not isinstance(obj, dict):
            bad.append(BadRow(str(path), lineno, "a line must be a JSON object"))
            continue
        objects.append(obj)
        line_numbers.append(lineno)
    if not objects:
        raise DataFileError(f"{path}: no line is a JSON object (first problem: {bad[0].reason})")
    table, wrong_types = typed_columns(objects, settings)
    result = _validate_table(path, table, settings, lineage, line_numbers=line_numbers, known_bad=wrong_types)
    result.bad = sorted(bad + result.bad, key=lambda b: b.line)
    return result
