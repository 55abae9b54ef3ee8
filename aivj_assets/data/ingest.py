"""Ingest one registered data file into the store (what a ``raw_pairs`` partition run does)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aivj_assets.data import drift
from aivj_assets.data.contract import DataFileError, FileRows, read_pairs
from aivj_assets.data.ledger import Ledger, now_iso
from aivj_assets.data.partition_file import new_file_id, rows_table
from aivj_assets.data.store import Store
from aivj_assets.settings import Settings


@dataclass
class IngestReport:
    """What ingesting one partition found; the asset turns it into metadata and checks."""

    partition: str
    source_path: str
    content_hash: str
    rows: int
    bad_rows: int
    total_rows: int
    wrong_length_rows: int
    audio_dim: int | None
    preset_dim: int | None
    lineage: dict
    positive_share: float | None
    quarantine_path: str | None
    drift: dict = field(default_factory=dict)
    bytes: int = 0
    seconds: float = 0.0
    bad_examples: list[str] = field(default_factory=list)


def ingest_partition(settings: Settings, key: str) -> IngestReport:
    """Validate partition ``key``'s file and store its good rows; DataFileError if unreadable."""
    started = time.perf_counter()
    sources = Ledger(settings).sources_for(key)
    if not sources:
        raise DataFileError(
            f"partition {key}: no ledger entry in {settings.data_dir / 'processed_hashes.jsonl'}; "
            "data files are registered by the data_files_sensor (or `aivj demo`)"
        )
    entry = sources[0]
    store = Store(settings)

    def facts(source: dict) -> dict:
        return {"partition": key, "source_path": str(settings.data_dir / source["path"]), "source_rel": source["path"],
                "content_hash": entry["hash"], "size": source["size"], "mtime_ns": source["mtime_ns"],
                "inode": source["inode"], "registered_seq": entry["seq"], "time": now_iso()}

    base = facts(entry)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest") as helper:
        try:
            # The registered file first; if it was moved away or edited since, a copy the sensor
            # recorded as its duplicate (same content: often the file itself, moved) serves.
            gone: list[DataFileError] = []
            for source in sources:
                path = settings.data_dir / source["path"]
                base = facts(source)  # a failure below is this file's
                try:
                    data, result, lineage = _read_source(settings, store, path, entry["hash"], helper)
                except _SourceGone as exc:
                    gone.append(exc.error)
                    continue
                break
            else:
                base = facts(entry)
                more = f" (nor could its {len(gone) - 1} recorded copies be used)" if len(gone) > 1 else ""
                raise DataFileError(f"{gone[0]}{more}")
        except DataFileError as exc:
            store.write_failure(key, {**base, "reason": str(exc)})
            raise
        # The rest runs on two cores (NumPy, pyarrow and file I/O release the GIL). The helper
        # summarises the rows for drift, then measures drift and writes the quarantine. This
        # thread writes the partition file (the validated vectors as they are), its footer
        # holding the drift summary, and fsyncs it. The rename into place is last, so a
        # partition file means a whole partition. The row hashes are the first read's work
        # (Store.row_hashes): nothing in the ingest needs them.
        summarising = helper.submit(_summary, store, result)
        plain = {"label": result.labels, "weight": result.weights, "pair_id": result.pair_ids}
        meta = {**base, "rows": result.rows, "bad_rows": len(result.bad), "file_id": new_file_id()}
        drifting = helper.submit(lambda: _drift_and_quarantine(store, key, result, summarising.result()))
        flat = rows_table(result.audio, result.preset, plain, meta)
        staged = store.stage_partition(key, flat, summarising.result)
        try:
            drift_report, quarantine = drifting.result()  # its files are written before the commit
        except BaseException:
            staged.unlink(missing_ok=True)
            raise
        store.commit_partition(key, staged)
    return IngestReport(
        partition=key,
        source_path=str(path),
        content_hash=entry["hash"],
        rows=result.rows,
        bad_rows=len(result.bad),
        total_rows=result.total_rows,
        wrong_length_rows=result.wrong_length_rows,
        audio_dim=result.audio_dim,
        preset_dim=result.preset_dim,
        lineage=lineage or {},
        positive_share=float(np.mean(result.labels)) if result.rows else None,
        quarantine_path=str(quarantine) if quarantine else None,
        drift=drift_report,
        bytes=len(data),
        seconds=time.perf_counter() - started,
        bad_examples=[f"line {b.line}: {b.reason}" for b in result.bad[:5]],
    )


def rebuild_stale(settings: Settings, log: Callable[[str], None] = print) -> list[str]:
    """Store again, from their source files in the data folder, the partitions kept in an older
    layout than the store's one; returns those rebuilt. One that cannot be (its source is gone or
    changed) is set aside in ``store/stale/``, never deleted, and its failure recorded."""
    store = Store(settings)
    stale = store.stale_partitions()
    if not stale:
        return []
    log(f"store {store.root}: {len(stale)} partitions are in an older layout; storing them again from "
        f"their source files in {settings.data_dir} (the files are only read)")
    rebuilt = []
    for key in stale:
        try:
            ingest_partition(settings, key)
            rebuilt.append(key)
        except DataFileError as exc:
            log(f"  {key}: cannot be stored again ({exc}); its old file is kept in {store.set_aside(key)}")
    log(f"store {store.root}: {len(rebuilt)} of {len(stale)} partitions stored again")
    return rebuilt


class _SourceGone(Exception):
    """The file at a registered path cannot be read, or no longer holds the registered bytes."""

    def __init__(self, error: DataFileError) -> None:
        super().__init__(str(error))
        self.error = error


def _read_source(settings: Settings, store: Store, path: Path, expected_hash: str,
                 helper: ThreadPoolExecutor) -> tuple[bytes, FileRows, dict | None]:
    """(bytes, validated rows, lineage) of ``path``; _SourceGone if it is not the registered file
    any more, DataFileError if it is but cannot be read as data."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _SourceGone(DataFileError(f"{path}: cannot read the file: {exc.strerror or exc}")) from None
    # sha256 and pyarrow release the GIL: the file is hashed while it is parsed.
    hashing = helper.submit(lambda: hashlib.sha256(data).hexdigest())
    lineage = store.lineage()
    try:
        result, unreadable = read_pairs(path, data, settings, lineage), None
    except DataFileError as exc:
        result, unreadable = None, exc
    content_hash = hashing.result()
    if content_hash != expected_hash:
        raise _SourceGone(DataFileError(
            f"{path}: content changed since it was registered (sha256 {content_hash[:12]}, expected "
            f"{expected_hash[:12]}); the new content is ingested as its own partition"
        ))
    if unreadable is not None:
        raise unreadable
    if lineage is None and result.audio_dim is not None:
        lineage = store.fix_lineage(result.audio_dim, result.preset_dim)
        if (lineage["audio_dim"], lineage["preset_dim"]) != (result.audio_dim, result.preset_dim):
            result = read_pairs(path, data, settings, lineage)  # another file fixed it first
    return data, result, lineage


def _summary(store: Store, result: FileRows) -> dict | None:
    """This file's drift summary over the lineage's fixed bins; None for a file with no good rows."""
    if result.rows == 0:
        return None
    edges_path = store.root / "drift_edges.json"
    # The first file's deciles fix the bins for the lineage; later files reuse them.
    first = drift.decile_edges(result.audio, result.preset) if not edges_path.exists() else []
    return drift.summarise(result.audio, result.preset, store.drift_edges(first))


def _drift_and_quarantine(store: Store, key: str, result: FileRows, summary: dict | None) -> tuple[dict, Path | None]:
    """PSI of this file against every other stored partition (and cache its summary); the quarantine."""
    if summary is None:
        report = {"mean": 0.0, "max": 0.0, "worst_feature": None, "reference_rows": 0}
    else:
        report = drift.psi(summary, store.corpus_summary(exclude=key))
        store.write_summary(key, summary)
    return report, store.write_quarantine(key, result.bad)
