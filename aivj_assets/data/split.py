"""Row identity and the deterministic splits that never move a row between sides.

A row's identity is a 64-bit hash of its normalised content (float32 vectors and label), so
the same pair always lands in the same part of the corpus (training, selection, gate) and
on the same side of the elite warm-up/judging split however the corpus grows. This is the one
place that decides.

The hash is computed column by column over all rows at once (a splitmix64-style mix of each
32-bit word), because a per-row cryptographic hash in Python would cost most of the ingest. It
is an identity for splitting and de-duplication, not a defence against crafted collisions.
"""

from __future__ import annotations

import binascii

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ROW_HASH_CHARS = 16  # hex characters: 64 bits, ample for millions of rows
_CHUNK_ROWS = 1024  # rows per block of the row hash: a block of words fits in cache

_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


def _mix(h: np.ndarray, scratch: np.ndarray | None = None) -> np.ndarray:
    """splitmix64's finaliser, in place on a uint64 array (``scratch``: a buffer of its shape)."""
    t = np.empty_like(h) if scratch is None else scratch
    for shift, mul in ((_S30, _MUL1), (_S27, _MUL2), (_S31, None)):
        np.right_shift(h, shift, out=t)
        h ^= t
        if mul is not None:
            h *= mul
    return h


def row_hash_values(audio: np.ndarray, preset: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """64-bit content hash of every row of 2-D float32 arrays and a 0/1 label vector."""
    n = len(labels)
    out = np.empty(n, dtype=np.uint64)
    if n == 0:
        return out
    a = np.ascontiguousarray(audio, dtype="<f4").reshape(n, -1).view("<u4")
    p = np.ascontiguousarray(preset, dtype="<f4").reshape(n, -1).view("<u4")
    da, dp = a.shape[1], p.shape[1]
    labels = (np.asarray(labels) != 0).reshape(n)
    with np.errstate(over="ignore"):
        # Each 32-bit word (the row's floats, then its label) is mixed with a key of its
        # position, the row's mixed words are summed, and the sum is mixed once more.
        keys = _mix(np.arange(1, da + dp + 2, dtype=np.uint64) * _GOLDEN)
        # The vector lengths seed the hash, so moving a value from one vector to the other changes it.
        keys ^= np.uint64((da << 20) ^ (dp << 4))
        # Block by block, in two buffers reused throughout: every step runs in place on a
        # block that stays in cache, instead of allocating whole-array temporaries.
        rows = min(_CHUNK_ROWS, n)
        words = np.empty((rows, da + dp + 1), dtype=np.uint64)
        shifted = np.empty_like(words)
        for start in range(0, n, rows):
            stop = min(start + rows, n)
            w, t = words[: stop - start], shifted[: stop - start]
            w[:, :da] = a[start:stop]
            w[:, da : da + dp] = p[start:stop]
            w[:, -1] = labels[start:stop]
            w += keys
            _mix(w, t)
            np.add.reduce(w, axis=1, dtype=np.uint64, out=out[start:stop])
    return _mix(out)


def row_hashes(audio: np.ndarray, preset: np.ndarray, labels: np.ndarray) -> list[str]:
    """:func:`row_hash_values` as 16-character lowercase hex strings."""
    values = row_hash_values(audio, preset, labels)
    text = values.astype(">u8").tobytes().hex()
    return np.frombuffer(text.encode("ascii"), dtype=f"S{ROW_HASH_CHARS}").astype(f"U{ROW_HASH_CHARS}").tolist()


def row_hash_array(audio: np.ndarray, preset: np.ndarray, labels: np.ndarray) -> pa.StringArray:
    """:func:`row_hashes` as an Arrow string column, built from two buffers (no Python strings)."""
    return hash_strings(row_hash_values(audio, preset, labels))


def hash_strings(values: np.ndarray) -> pa.StringArray:
    """:func:`row_hash_values` output as the Arrow column of 16-character hex strings."""
    text = values.astype(">u8").tobytes().hex().encode("ascii")
    offsets = np.arange(0, (len(values) + 1) * ROW_HASH_CHARS, ROW_HASH_CHARS, dtype=np.int32)
    return pa.StringArray.from_buffers(len(values), pa.py_buffer(offsets), pa.py_buffer(text))


def row_hash(audio: np.ndarray, preset: np.ndarray, label: int) -> str:
    """Content hash of one normalised row (float32 vectors, label 0/1)."""
    a = np.asarray(audio, dtype="<f4").reshape(1, -1)
    p = np.asarray(preset, dtype="<f4").reshape(1, -1)
    return row_hashes(a, p, np.array([int(label)]))[0]


def _unit(hashes, start: int) -> np.ndarray:
    """Map 8 hex characters of each hash (from ``start``: 0 or 8) to [0, 1), all rows at once."""
    raw = np.asarray(hashes).astype(f"S{ROW_HASH_CHARS}")
    if raw.size == 0:
        return np.zeros(0, dtype=np.float64)
    halves = np.frombuffer(binascii.unhexlify(raw.tobytes()), dtype=">u4").reshape(-1, 2)
    return halves[:, start // 8].astype(np.float64) / float(1 << 32)


TRAIN, SELECTION, GATE = 0, 1, 2  # the parts of the corpus a row can land in (:func:`corpus_part`)


def corpus_part(hashes, selection_fraction: float, gate_fraction: float) -> np.ndarray:
    """Each row's part (``TRAIN``, ``SELECTION`` or ``GATE``) from the first 32 bits of its hash.

    Gate rows are those under ``gate_fraction``, selection rows the next ``selection_fraction``:
    a row's part depends on its content alone, so it never moves as the corpus grows.
    """
    u = _unit(hashes, 0)
    part = np.full(len(u), TRAIN, dtype=np.int8)
    part[u < gate_fraction + selection_fraction] = SELECTION
    part[u < gate_fraction] = GATE
    return part


def corpus_masks(hashes: pa.Array | pa.ChunkedArray, selection_fraction: float, gate_fraction: float,
                 elite_warmup: pa.Array, elite_judge: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, selection, gate) masks of corpus rows: disjoint, and no model judged on its own rows.

    The owner's elite pairs may also sit in the refined data. A row of the elite judging part
    never trains and never picks an epoch (it judges); a row of the elite warm-up part, which
    every warm-up trains on, never selects or judges.
    """
    part = corpus_part(hashes.to_numpy(zero_copy_only=False), selection_fraction, gate_fraction)

    def among(values: pa.Array) -> np.ndarray:
        if not len(values):
            return np.zeros(len(part), bool)
        return np.asarray(pc.is_in(hashes, value_set=values).to_numpy(zero_copy_only=False), bool)

    warm, judge = among(elite_warmup), among(elite_judge)
    return (part == TRAIN) & ~judge, (part == SELECTION) & ~judge & ~warm, (part == GATE) & ~warm


def judge_mask(hashes, fraction: float) -> np.ndarray:
    """True for elite rows held out for judging (the other 32 bits, independent of the corpus parts)."""
    return _unit(hashes, 8) < fraction
