"""The corpus's parts as the store holds them: which stored rows train, select and judge.

The rule itself (a row's part from its hash, and what elite rows may touch) is
:func:`aivj_assets.data.split.corpus_masks`; here it is applied to the store's tables, with the
elite set as the store keeps it. Everything stays an Arrow table: training turns rows into
tensors, and only the rows it needs.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from aivj_assets.data.split import corpus_masks
from aivj_assets.data.store import Store
from aivj_assets.settings import Settings


def elite_hashes(store: Store) -> tuple[pa.Array, pa.Array]:
    """Row hashes of the stored elite set's (warm-up, judging) parts; empty before there is one."""
    try:
        table = store.elite_table().select(["row_hash", "part"])
    except FileNotFoundError:
        return pa.array([], pa.string()), pa.array([], pa.string())
    part = table.column("part")
    return (table.filter(pc.equal(part, "warmup")).column("row_hash").combine_chunks(),
            table.filter(pc.equal(part, "judge")).column("row_hash").combine_chunks())


def elite_digest(store: Store) -> str:
    """Short hash of which rows are elite warm-up and judging rows: they decide what trains."""
    warm, judge = elite_hashes(store)
    blob = "\n".join(sorted(judge.to_pylist())) + "|" + "\n".join(sorted(warm.to_pylist()))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def masks(settings: Settings, hashes: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, selection, gate) masks of corpus rows by content hash (:func:`corpus_masks`)."""
    warm, judge = elite_hashes(Store(settings))
    return corpus_masks(hashes, settings.selection_fraction, settings.gate_fraction, warm, judge)


def split_table(settings: Settings, table: pa.Table) -> tuple[pa.Table, pa.Table, pa.Table]:
    """(train, selection, gate) rows of a store table."""
    if table.num_rows == 0:
        return table, table, table
    train, selection, gate = masks(settings, table.column("row_hash"))
    return table.filter(pa.array(train)), table.filter(pa.array(selection)), table.filter(pa.array(gate))


def training_row_count(settings: Settings, keys: list[str]) -> int:
    """Training rows in the stored partitions ``keys``, reading only their row hashes (:meth:`Store.row_hashes`)."""
    hashes = Store(settings).row_hashes(keys)
    return int(masks(settings, hashes)[0].sum()) if len(hashes) else 0


def read_gate_part(settings: Settings, keys: list[str]) -> tuple[pa.Table, np.ndarray]:
    """The gate rows of the stored partitions ``keys``, and each row's index into ``keys`` (its source file)."""
    store = Store(settings)
    warm, judge = elite_hashes(store)
    tables, groups = [], []
    for i, key in enumerate(keys):
        table = store.read_partitions([key])
        gate = corpus_masks(table.column("row_hash"), settings.selection_fraction, settings.gate_fraction,
                            warm, judge)[2] if table.num_rows else np.zeros(0, bool)
        tables.append(table.filter(pa.array(gate)))
        groups.append(np.full(int(gate.sum()), i, dtype=np.int64))
    table = pa.concat_tables(tables) if tables else store.read_partitions([])
    return table, (np.concatenate(groups) if groups else np.zeros(0, np.int64))
