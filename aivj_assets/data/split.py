"""Row identity and the deterministic splits that never move a row between sides.

A row's identity is a hash of its normalised content (float32 vectors and label), so the
same pair always lands on the same side of the validation split and of the elite
warm-up/judging split however the corpus grows. This is the one place that decides.
"""

from __future__ import annotations

import hashlib

import numpy as np

ROW_HASH_CHARS = 16  # hex characters kept: 64 bits, ample for millions of rows


def row_hash(audio: np.ndarray, preset: np.ndarray, label: int) -> str:
    """Content hash of one normalised row (float32 vectors, label 0/1)."""
    h = hashlib.blake2b(digest_size=ROW_HASH_CHARS // 2)
    h.update(np.ascontiguousarray(audio, dtype="<f4").tobytes())
    h.update(b"|")
    h.update(np.ascontiguousarray(preset, dtype="<f4").tobytes())
    h.update(b"|1" if int(label) else b"|0")
    return h.hexdigest()


def row_hashes(audio: np.ndarray, preset: np.ndarray, labels: np.ndarray) -> list[str]:
    """:func:`row_hash` for every row of 2-D float32 arrays and a label vector."""
    a = np.ascontiguousarray(audio, dtype="<f4")
    p = np.ascontiguousarray(preset, dtype="<f4")
    out = []
    for i in range(a.shape[0]):
        h = hashlib.blake2b(digest_size=ROW_HASH_CHARS // 2)
        h.update(a[i].tobytes())
        h.update(b"|")
        h.update(p[i].tobytes())
        h.update(b"|1" if labels[i] else b"|0")
        out.append(h.hexdigest())
    return out


def _unit(hashes, start: int) -> np.ndarray:
    """Map 8 hex characters of each hash (from ``start``) to [0, 1)."""
    arr = np.asarray(hashes, dtype=f"U{ROW_HASH_CHARS}")
    chunk = np.char.ljust(arr, ROW_HASH_CHARS, "0").astype(f"U{ROW_HASH_CHARS}")
    ints = np.array([int(s[start : start + 8], 16) for s in chunk], dtype=np.float64)
    return ints / float(1 << 32)


def validation_mask(hashes, fraction: float) -> np.ndarray:
    """True for rows on the validation side (first 32 bits of the hash)."""
    return _unit(hashes, 0) < fraction


def judge_mask(hashes, fraction: float) -> np.ndarray:
    """True for elite rows held out for judging (the other 32 bits, independent of validation)."""
    return _unit(hashes, 8) < fraction
