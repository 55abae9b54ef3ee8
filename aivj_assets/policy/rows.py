"""The rows each stage and each judgement reads, as tensors: training, selection, gate, elite.

Which stored row belongs to which part is decided once, in ``data/split.py``; these turn the
parts the store holds (``data/parts.py``) into tensors, converting only the rows asked for.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from aivj_assets.data.parts import read_gate_part, split_table
from aivj_assets.data.store import Store
from aivj_assets.settings import Settings
from aivj_assets.training.dataset import PairTensors, elite_parts, tensors_from_table


def training_split(settings: Settings, keys: list[str] | None = None) -> tuple[PairTensors, PairTensors]:
    """(train, selection) tensors of the stored partitions ``keys`` (all when None); gate rows stay on disk."""
    train_t, sel_t, _ = split_table(settings, Store(settings).read_partitions(keys))
    return tensors_from_table(train_t, "store"), tensors_from_table(sel_t, "store (selection rows)")


def selection_rows(settings: Settings, keys: list[str] | None = None) -> PairTensors:
    """The selection tensors of the stored partitions ``keys``; training and gate rows stay untouched."""
    table = Store(settings).read_partitions(keys)
    return tensors_from_table(split_table(settings, table)[1], "store (selection rows)")


@dataclass(frozen=True)
class GateRows:
    """Stored partitions' gate rows, and which partition (source file) each came from."""

    rows: PairTensors
    sources: list[str]
    group: np.ndarray  # rows' index into ``sources``
    data_hash: str  # the manifest of the partitions read


def gate_rows(settings: Settings, keys: list[str] | None = None) -> GateRows:
    """The gate rows of the stored partitions ``keys`` (all when None): read only to judge models."""
    store = Store(settings)
    keys = store.partitions() if keys is None else keys
    table, group = read_gate_part(settings, keys)
    return GateRows(tensors_from_table(table, "store (gate rows)"), keys, group, store.manifest_hash(keys))


def elite_split(settings: Settings) -> tuple[PairTensors, PairTensors]:
    """(warm-up, judge) parts of the stored elite set."""
    store = Store(settings)
    return elite_parts(store.elite_table(), str(store.elite_path()))


def replay_sample(settings: Settings, old: pa.Table, n_new: int, ratio: float, seed_text: str) -> pa.Table:
    """A seeded sample of ``ratio`` old training rows per new one (all of them if fewer)."""
    want = min(old.num_rows, int(round(ratio * n_new)))
    seed = int.from_bytes(hashlib.sha256(f"{settings.seed}|{seed_text}".encode()).digest()[:8], "big")
    index = np.sort(np.random.default_rng(seed).choice(old.num_rows, size=want, replace=False))
    return old.take(pa.array(index, type=pa.int64()))
