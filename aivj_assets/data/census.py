"""How much data the folders hold, cheaply: files, bytes and rows (what ``aivj doctor`` shows).

Rows of a Parquet file come from its footer (no data read); rows of a JSON Lines file are its
lines, counted in chunks while a byte budget lasts, so a folder of many gigabytes does not keep
the doctor waiting: files past the budget are counted as files and bytes only. The store's rows
(what was ingested) also come from its files' footers.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from aivj_assets.data.contract import DATA_SUFFIXES
from aivj_assets.data.scan import candidate_files
from aivj_assets.data.store import Store
from aivj_assets.settings import Settings

JSONL_BUDGET_BYTES = 256 * 2**20  # .jsonl bytes read to count lines, per folder
_CHUNK = 2**20


@dataclass
class Census:
    """What a folder holds: data files, their bytes and rows."""

    files: int = 0
    bytes: int = 0
    rows: int = 0
    uncounted: int = 0  # files whose rows were not counted (past the byte budget)
    unreadable: list[str] = field(default_factory=list)  # files that could not be read

    def describe(self) -> str:
        """``12 files, 1.2 GB, 104,040 rows`` and what was not counted."""
        text = f"{self.files} data files, {self.bytes / 1e9:.2f} GB, {self.rows:,} rows"
        if self.uncounted:
            text += f" (+ {self.uncounted} large .jsonl files not counted)"
        return text


def folder_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as a folder ("missing", "not a folder", "not readable"), or None."""
    if not path.exists():
        return "missing"
    if not path.is_dir():
        return "not a folder (a file has its name)"
    try:
        with os.scandir(path) as entries:
            next(entries, None)
    except OSError as exc:
        return f"not readable ({exc.strerror or exc.__class__.__name__})"
    return None


def _jsonl_lines(path: Path) -> int:
    lines, last = 0, b"\n"
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return lines + (last != b"\n")  # a last line without its line break is a row too


def count(paths: Iterable[tuple[Path, int]], budget: int = JSONL_BUDGET_BYTES) -> Census:
    """The census of ``(path, size)`` data files."""
    census = Census()
    for path, size in paths:
        census.files += 1
        census.bytes += size
        try:
            if path.name.lower().endswith(".parquet"):
                census.rows += pq.read_metadata(path).num_rows
            elif size <= budget:
                census.rows += _jsonl_lines(path)
                budget -= size
            else:
                census.uncounted += 1
        except (OSError, ValueError) as exc:  # pyarrow says ArrowInvalid (a ValueError) for a damaged file
            census.unreadable.append(f"{path.name}: {exc.__class__.__name__}")
    return census


def data_census(settings: Settings) -> Census:
    """The data folder's files as the sensor sees them (nested folders; not the elite folder)."""
    return count((settings.data_dir / rel, st.st_size) for rel, st in candidate_files(settings))


def elite_census(settings: Settings) -> Census:
    """The elite folder's data files, as the elite set reads them."""
    folder = settings.elite_path
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name.lower().endswith(DATA_SUFFIXES)
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    return count((p, p.stat().st_size) for p in files)


def stored_rows(settings: Settings) -> tuple[int, int]:
    """(partitions, rows) in the store: what has been ingested."""
    store = Store(settings)
    keys = store.partitions()
    return len(keys), sum(pq.read_metadata(store.partition_path(k)).num_rows for k in keys)
