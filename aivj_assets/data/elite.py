"""The elite golden set: every elite file validated, deduplicated, split into warm-up and judging."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from aivj_assets.data.contract import DATA_SUFFIXES, BadRow, read_pairs
from aivj_assets.data.split import judge_mask
from aivj_assets.data.store import Store
from aivj_assets.settings import Settings


@dataclass
class EliteReport:
    """What building the elite set found."""

    rows: int
    warmup: int
    judge: int
    bad_rows: int
    duplicates: int
    files: list[str]
    judge_fraction: float
    content_hash: str
    quarantine_path: str | None


def build_elite_set(settings: Settings) -> EliteReport:
    """Read the elite folder with the data contract and store it split; ValueError if empty."""
    folder = settings.elite_path
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name.lower().endswith(DATA_SUFFIXES)
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts)) if folder.is_dir() else []
    if not files:
        raise ValueError(f"{folder}: no elite data files (.jsonl or .parquet)")
    store = Store(settings)
    lineage = store.lineage()
    tables, bad, digest = [], [], hashlib.sha256()
    for path in files:
        data = path.read_bytes()
        digest.update(hashlib.sha256(data).digest())
        result = read_pairs(path, data, settings, lineage)  # an unreadable elite file stops the build
        if lineage is None and result.audio_dim is not None:
            lineage = store.fix_lineage(result.audio_dim, result.preset_dim)
        tables.append(result.table)
        bad.extend(result.bad)
    table = pa.concat_tables(tables)
    # The same pair in two elite files counts once (and stays on one side of the split).
    _, first = np.unique(table.column("row_hash").to_numpy(zero_copy_only=False), return_index=True)
    duplicates = table.num_rows - len(first)
    table = table.take(pa.array(np.sort(first)))
    if table.num_rows == 0:
        raise ValueError(f"{folder}: no valid elite rows ({len(bad)} bad rows, first: {_first(bad)})")
    judge = judge_mask(table.column("row_hash").to_numpy(zero_copy_only=False), settings.elite_judge_fraction)
    table = table.append_column("part", pa.array(np.where(judge, "judge", "warmup"), pa.string()))
    store.write_elite(table)
    quarantine = store.write_quarantine("elite_set", bad)
    n_judge = int(pc.sum(pc.equal(table.column("part"), "judge")).as_py() or 0)
    return EliteReport(
        rows=table.num_rows,
        warmup=table.num_rows - n_judge,
        judge=n_judge,
        bad_rows=len(bad),
        duplicates=duplicates,
        files=[str(p) for p in files],
        judge_fraction=settings.elite_judge_fraction,
        content_hash=digest.hexdigest(),
        quarantine_path=str(quarantine) if quarantine else None,
    )


def _first(bad: list[BadRow]) -> str:
    return f"{bad[0].file} line {bad[0].line}: {bad[0].reason}" if bad else "none"
