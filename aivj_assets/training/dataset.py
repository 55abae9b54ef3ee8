"""Pairs from the store as tensors: one vectorised conversion, then plain tensor indexing.

A :class:`PairTensors` holds every row of a training set in five aligned columns. The
loop indexes them with a shuffled permutation, so no Python work happens per row.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import Tensor

from aivj_assets.data.split import GATE, SELECTION, TRAIN, corpus_part, row_hashes


@dataclass
class PairTensors:
    """Aligned columns of N pairs: float32 vectors, label and weight, and each row's hash."""

    audio: Tensor  # [N, A] float32
    preset: Tensor  # [N, P] float32
    label: Tensor  # [N] float32, 0.0 or 1.0
    weight: Tensor  # [N] float32
    row_hash: np.ndarray  # [N] str

    def __len__(self) -> int:
        return int(self.label.shape[0])

    @property
    def audio_dim(self) -> int:
        return int(self.audio.shape[1])

    @property
    def preset_dim(self) -> int:
        return int(self.preset.shape[1])

    def subset(self, index_or_mask) -> PairTensors:
        """The rows chosen by an index array or a boolean mask (numpy or torch)."""
        idx = torch.as_tensor(np.asarray(index_or_mask))
        if idx.dtype == torch.bool:
            idx = idx.nonzero().flatten()
        idx = idx.to(torch.long)
        return PairTensors(
            audio=self.audio.index_select(0, idx.to(self.audio.device)),
            preset=self.preset.index_select(0, idx.to(self.preset.device)),
            label=self.label.index_select(0, idx.to(self.label.device)),
            weight=self.weight.index_select(0, idx.to(self.weight.device)),
            row_hash=self.row_hash[idx.numpy()],
        )

    def concat(self, other: PairTensors) -> PairTensors:
        """These rows followed by ``other``'s; the vector lengths must agree."""
        if len(self) and len(other) and (self.audio_dim, self.preset_dim) != (other.audio_dim, other.preset_dim):
            raise ValueError(
                f"cannot concatenate pairs of dims audio={self.audio_dim}, preset={self.preset_dim} "
                f"with audio={other.audio_dim}, preset={other.preset_dim}"
            )
        return PairTensors(
            audio=torch.cat([self.audio, other.audio]),
            preset=torch.cat([self.preset, other.preset]),
            label=torch.cat([self.label, other.label]),
            weight=torch.cat([self.weight, other.weight]),
            row_hash=np.concatenate([self.row_hash, other.row_hash]),
        )

    def to(self, device: torch.device | str) -> PairTensors:
        """The same rows with their tensors on ``device`` (row hashes stay in numpy)."""
        return PairTensors(
            self.audio.to(device), self.preset.to(device), self.label.to(device), self.weight.to(device), self.row_hash
        )

    def row_ids(self) -> np.ndarray:
        """Each row's hash as a uint64 (the first 64 bits), for compact membership and order."""
        return row_ids(self.row_hash)

    def fingerprint(self, ids: np.ndarray | None = None) -> str:
        """A hash of the rows in their order (``ids``: their :meth:`row_ids`, if already known)."""
        h = hashlib.sha256((self.row_ids() if ids is None else ids).tobytes())
        h.update(self.label.detach().cpu().numpy().tobytes())
        h.update(self.weight.detach().cpu().numpy().tobytes())
        return h.hexdigest()[:16]


def empty_pairs(audio_dim: int = 0, preset_dim: int = 0) -> PairTensors:
    """A set of no rows (e.g. when a stage has no elite judging part)."""
    return PairTensors(
        torch.zeros(0, audio_dim),
        torch.zeros(0, preset_dim),
        torch.zeros(0),
        torch.zeros(0),
        np.array([], dtype="U16"),
    )


_HEX = np.full(256, 255, dtype=np.uint8)
_HEX[np.frombuffer(b"0123456789", np.uint8)] = np.arange(10, dtype=np.uint8)
_HEX[np.frombuffer(b"abcdef", np.uint8)] = np.arange(10, 16, dtype=np.uint8)
_HEX[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16, dtype=np.uint8)


def row_ids(hashes: np.ndarray) -> np.ndarray:
    """uint64 id of each row hash: its value when it is 16 hex digits (as the store's are), else a digest."""
    arr = np.asarray(hashes)
    if arr.dtype.kind != "U":
        arr = arr.astype(str)
    out = np.zeros(arr.size, dtype=np.uint64)
    width = arr.dtype.itemsize // 4
    valid = np.zeros(arr.size, dtype=bool)
    if arr.size and width >= 16:
        # Decode without a Python loop: UCS-4 code points -> nibbles -> bytes -> uint64. A
        # shorter string shows code point 0 (not hex); a longer one shows non-zero past 16.
        points = np.ascontiguousarray(arr).view(np.uint32).reshape(-1, width)
        nibbles = _HEX[np.minimum(points[:, :16], 255)]
        valid = ~(nibbles == 255).any(axis=1) & ~(points[:, 16:] != 0).any(axis=1)
        octets = np.ascontiguousarray((nibbles[valid, 0::2] << 4) | nibbles[valid, 1::2])
        out[valid] = octets.view(">u8").reshape(-1).astype(np.uint64)
    for i in np.flatnonzero(~valid):  # rows not hashed by split.py: rare, so a loop is fine
        out[i] = int.from_bytes(hashlib.blake2b(str(arr[i]).encode(), digest_size=8).digest(), "big")
    return out


def _vectors(table: pa.Table, name: str, source: str) -> np.ndarray:
    """A list<float> column as a 2-D float32 array; refuses ragged or null rows, naming the row."""
    if name not in table.column_names:
        raise ValueError(f"{source}: missing column {name!r} (have {table.column_names})")
    col = table.column(name).combine_chunks()
    if col.null_count:
        row = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
        raise ValueError(f"{source}: row {row}: {name} is null")
    lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
    n = len(lengths)
    dim = int(lengths[0]) if n else 0
    bad = np.flatnonzero(lengths != dim)
    if bad.size:
        row = int(bad[0])
        raise ValueError(f"{source}: row {row}: {name} has {int(lengths[row])} values, expected {dim} (as row 0)")
    values = pc.list_flatten(col).cast(pa.float32()).to_numpy(zero_copy_only=False).reshape(n, dim)
    values = np.ascontiguousarray(values, dtype=np.float32)
    return values if values.flags.writeable else values.copy()


def tensors_from_table(table: pa.Table, source: str = "table") -> PairTensors:
    """Store-schema rows (audio, preset, label, weight, row_hash) as tensors, in one vectorised pass.

    The rows are ones the data contract has judged (the store's): their values are not judged
    again here, only their shape, which the tensors need.
    """
    audio = _vectors(table, "audio", source)
    preset = _vectors(table, "preset", source)
    if "label" not in table.column_names:
        raise ValueError(f"{source}: missing column 'label'")
    label = table.column("label").to_numpy(zero_copy_only=False)
    if "weight" in table.column_names:
        weight = table.column("weight").fill_null(1.0).to_numpy(zero_copy_only=False).astype(np.float32)
    else:
        weight = np.ones(len(label), dtype=np.float32)
    if "row_hash" in table.column_names:
        hashes = np.asarray(table.column("row_hash").to_numpy(zero_copy_only=False)).astype(str)
    else:  # rows written outside the store: derive their identity the one way split.py knows
        hashes = np.asarray(row_hashes(audio, preset, label), dtype=str)
    weight = np.array(weight, dtype=np.float32)  # own, writable copies: torch shares the memory
    label = np.array(label, dtype=np.float32)
    return PairTensors(
        audio=torch.from_numpy(audio),
        preset=torch.from_numpy(preset),
        label=torch.from_numpy(label),
        weight=torch.from_numpy(weight),
        row_hash=hashes,
    )


def split_parts(t: PairTensors, selection_fraction: float,
                gate_fraction: float) -> tuple[PairTensors, PairTensors, PairTensors]:
    """(train, selection, gate) rows by each row's content hash (:func:`corpus_part`)."""
    part = corpus_part(t.row_hash, selection_fraction, gate_fraction)
    return t.subset(part == TRAIN), t.subset(part == SELECTION), t.subset(part == GATE)


def elite_parts(table: pa.Table, source: str = "elite_set") -> tuple[PairTensors, PairTensors]:
    """(warm-up, judge) parts of the elite table, by its ``part`` column."""
    if "part" not in table.column_names:
        raise ValueError(f"{source}: missing column 'part' (warmup/judge)")
    t = tensors_from_table(table, source)
    part = np.asarray(table.column("part").to_numpy(zero_copy_only=False)).astype(str)
    unknown = np.flatnonzero(~np.isin(part, ("warmup", "judge")))
    if unknown.size:
        row = int(unknown[0])
        raise ValueError(f"{source}: row {row}: part is {part[row]!r}, expected 'warmup' or 'judge'")
    return t.subset(part == "warmup"), t.subset(part == "judge")
