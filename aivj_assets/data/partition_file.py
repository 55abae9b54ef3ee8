"""One partition file's layout: each vector column as one fixed-size binary value per row (the
row's float32 vector, little-endian) beside ``label``, ``weight`` and ``pair_id``, and the
ingest facts, layout and drift summary in the footer.

Parquet list columns pay for repetition levels on every value; a row-bytes column is the
validated matrix written as it is, and read back as a view.
"""

from __future__ import annotations

import json
import uuid

import numpy as np
import pyarrow as pa

from aivj_assets.data.contract import PAIR_SCHEMA, fixed_lists
from aivj_assets.data.split import hash_strings

META_KEY = b"aivj"
DRIFT_KEY = b"aivj_drift"  # the partition's drift summary (drift.summarise), in the file's footer
LAYOUT_KEY = b"aivj_layout"  # {"audio_dim", "preset_dim", "vectors"}: how the vector columns are stored
ROW_BYTES = "float32le-rows"  # layout["vectors"]: each row's vector as little-endian float32 bytes
_PLAIN = ("label", "weight", "pair_id")  # stored as they are


def file_table(table: pa.Table, meta: dict) -> pa.Table:
    """A PAIR_SCHEMA table in the partition file's layout, with ``meta`` in its schema metadata."""
    audio, preset = _matrix(table.column("audio")), _matrix(table.column("preset"))
    return rows_table(audio, preset, {c: table.column(c) for c in _PLAIN}, meta)


def _matrix(column: pa.ChunkedArray) -> np.ndarray:
    """A PAIR_SCHEMA vector column (every row the same length) as an ``[rows, dim]`` float32 matrix."""
    arr = column.combine_chunks()
    n = len(arr)
    offsets = arr.offsets.to_numpy()
    values = arr.values.to_numpy(zero_copy_only=False)
    dim = int(offsets[1] - offsets[0]) if n else 0
    return values[offsets[0] : offsets[0] + n * dim].reshape(n, dim)


def rows_table(audio: np.ndarray, preset: np.ndarray, plain: dict, meta: dict) -> pa.Table:
    """The partition file's table: the ``[rows, dim]`` float32 matrices as row-bytes columns
    (views, no copy), beside ``plain`` (label, weight and pair_id arrays), with ``meta`` in its
    schema metadata."""
    arrays = [_row_bytes(audio), _row_bytes(preset)]
    arrays += [pa.array(plain[c], PAIR_SCHEMA.field(c).type) if isinstance(plain[c], np.ndarray) else plain[c]
               for c in _PLAIN]
    layout = {"audio_dim": audio.shape[1], "preset_dim": preset.shape[1], "vectors": ROW_BYTES}
    # Every column but pair_id is required: Parquet then writes no definition levels.
    schema = pa.schema(
        [pa.field(name, a.type, nullable=False) for name, a in zip(("audio", "preset"), arrays[:2], strict=True)]
        + [pa.field(f.name, f.type, nullable=f.name == "pair_id") for f in (PAIR_SCHEMA.field(c) for c in _PLAIN)],
        metadata={LAYOUT_KEY: json.dumps(layout).encode("utf-8"), META_KEY: json.dumps(meta, sort_keys=True).encode("utf-8")},
    )
    return pa.Table.from_arrays(arrays, schema=schema)


def _row_bytes(matrix: np.ndarray) -> pa.FixedSizeBinaryArray:
    """An ``[rows, dim]`` matrix as one fixed-size binary value per row (float32, little-endian)."""
    n, dim = matrix.shape
    # Parquet refuses a zero width; only a partition with no rows has no vector length.
    width = 4 * dim if dim else 4
    if not dim and n:
        raise ValueError("rows with empty vectors cannot be stored")
    data = np.ascontiguousarray(matrix, "<f4")
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), n, [None, pa.py_buffer(data)])


def new_file_id() -> str:
    """A random id for one partition file, in its ingest facts: caches derived from the file carry it."""
    return uuid.uuid4().hex


def file_meta(schema: pa.Schema) -> dict:
    """The ingest facts in a partition file's footer."""
    return json.loads((schema.metadata or {}).get(META_KEY, b"{}"))


def current_layout(schema: pa.Schema) -> bool:
    """Whether a partition file's schema is this layout (the store's one)."""
    layout = (schema.metadata or {}).get(LAYOUT_KEY)
    return layout is not None and json.loads(layout).get("vectors") == ROW_BYTES


def from_columns(table: pa.Table, row_hashes: np.ndarray) -> pa.Table:
    """A partition file's table as PAIR_SCHEMA, with its row hashes (uint64, :meth:`Store._hash_values`)."""
    audio, preset = vectors(table)
    return pa.table({"audio": fixed_lists(audio), "preset": fixed_lists(preset),
                     **{c: table.column(c) for c in _PLAIN}, "row_hash": hash_strings(row_hashes)},
                    schema=PAIR_SCHEMA)


def vectors(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """The ``[rows, dim]`` float32 audio and preset matrices of a partition file (views of its
    row-bytes columns)."""
    layout = json.loads(table.schema.metadata[LAYOUT_KEY])
    n = table.num_rows

    def matrix(name: str, dim: int) -> np.ndarray:
        if n == 0:
            return np.zeros((0, dim), np.float32)
        arr = table.column(name).combine_chunks()
        values = np.frombuffer(arr.buffers()[1], "<f4", count=n * dim, offset=arr.offset * arr.type.byte_width)
        return values.astype(np.float32, copy=False).reshape(n, dim)

    return matrix("audio", layout["audio_dim"]), matrix("preset", layout["preset_dim"])
