"""The platform's own copy of the data: one normalised Parquet file per ingested data file.

Layout under ``settings.store_dir``: ``raw_pairs/<key>.parquet`` (with the ingest facts in
its schema metadata, so the ledger can be rebuilt from the store), ``raw_pairs/<key>.failed.json``
for a file that could not be read, ``quarantine/<key>.jsonl`` for bad rows,
``summaries/<key>.json`` caching the drift summary that each partition file also holds,
``corpus_summary.json`` caching their sum, ``row_hashes/<key>.bin`` caching each partition's
row hashes, ``elite_set.parquet`` and ``lineage.json``.

Each partition file is in the layout of :mod:`aivj_assets.data.partition_file`, the store's
one: a file in any other is refused with :class:`StaleLayoutError`, and
:func:`aivj_assets.data.ingest.rebuild_stale` stores it again from its source file.

The row hashes (:mod:`aivj_assets.data.split`) are derived from the rows and needed only by
training's splits, so the ingest does not compute them: the first read of a partition does
and caches them in ``row_hashes/<key>.bin``, which later reads use. The cache is written
without fsync, tied to its partition file by the random ``file_id`` in the file's ingest facts
and checked by a BLAKE2b digest of its values (they decide which part of the data each row is
in, so a cache a crash left at full length with stale blocks must not pass); when it is
missing, torn, damaged or another file's, the next read computes the hashes again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from aivj_assets.data import drift
from aivj_assets.data.atomic import (
    commit,
    create_exclusive,
    stage,
    write_atomic,
    write_bytes_atomic,
    write_text_atomic,
)
from aivj_assets.data.contract import PAIR_SCHEMA, BadRow
from aivj_assets.data.partition_file import (
    DRIFT_KEY,
    META_KEY,
    current_layout,
    file_meta,
    file_table,
    from_columns,
    new_file_id,
    vectors,
)
from aivj_assets.data.split import hash_strings, row_hash_values
from aivj_assets.settings import Settings

_ROW_HASHES_MAGIC = b"aivj row hashes 1\n"  # then the partition file's file_id, a newline,
# the 16-byte BLAKE2b digest of the values, and the values (uint64, little-endian)


class StaleLayoutError(ValueError):
    """A partition file stored in another layout than the store's one; it is stored again from its
    source file (``rebuild_stale``), never read half-understood."""


class Store:
    """Read and write the store of one Settings."""

    def __init__(self, settings: Settings) -> None:
        self.root = settings.store_dir
        self.raw_dir = self.root / "raw_pairs"

    # --- raw_pairs ----------------------------------------------------------------
    def partition_path(self, key: str) -> Path:
        """Where partition ``key``'s normalised rows live."""
        return self.raw_dir / f"{key}.parquet"

    def partitions(self) -> list[str]:
        """Stored partition keys, sorted."""
        if not self.raw_dir.is_dir():
            return []
        return sorted(p.name[: -len(".parquet")] for p in self.raw_dir.glob("*.parquet"))

    def write_partition(self, key: str, table: pa.Table, meta: dict) -> None:
        """Store partition ``key`` (a PAIR_SCHEMA table) atomically, with ``meta`` (source, hash, rows...).

        Its ``row_hash`` column is not stored: reads compute the row hashes from the rows.
        """
        self.commit_partition(key, self.stage_partition(key, file_table(table, {**meta, "file_id": new_file_id()})))

    def stage_partition(self, key: str, flat: pa.Table, drift_summary: Callable[[], dict | None] = lambda: None) -> Path:
        """Write a :func:`file_table` into a durable temp file beside its place, not yet visible.

        ``drift_summary()`` is called once the rows are written, so it may still be computing
        meanwhile; its result goes into the file's footer.
        """

        def write(tmp: str) -> None:
            # Random float features neither compress nor gain from dictionaries or statistics,
            # so they are written plain. Whole columns per batch (not 1,024 values) spare the
            # page buffers their reallocations.
            with pq.ParquetWriter(tmp, flat.schema, use_dictionary=False, compression="none",
                                  write_statistics=["label", "weight"], write_batch_size=1 << 16) as writer:
                writer.write_table(flat)
                summary = drift_summary()
                if summary is not None:
                    writer.add_key_value_metadata({DRIFT_KEY: json.dumps(summary).encode("utf-8")})

        return stage(self.partition_path(key), write)

    def commit_partition(self, key: str, staged: Path) -> None:
        """Rename a :meth:`stage_partition` file into place: the partition's commit point."""
        commit(staged, self.partition_path(key))
        self.failure_path(key).unlink(missing_ok=True)

    def partition_meta(self, key: str) -> dict:
        """The ingest facts stored with partition ``key``."""
        return json.loads(self._footer(key).get(META_KEY, b"{}"))

    def _footer(self, key: str) -> dict:
        return pq.read_metadata(self.partition_path(key)).metadata or {}

    def read_partitions(self, keys: list[str] | None = None) -> pa.Table:
        """The rows of ``keys`` (all stored partitions if None) as one table."""
        keys = self.partitions() if keys is None else keys
        tables = []
        for key in keys:
            table = pq.ParquetFile(self.partition_path(key)).read()
            self._require_layout(key, table.schema)
            tables.append(from_columns(table, self._hash_values(key, table)))
        return pa.concat_tables(tables) if tables else PAIR_SCHEMA.empty_table()

    def is_stale(self, key: str) -> bool:
        """Whether partition ``key``'s file is in another layout than the store's one."""
        return not current_layout(pq.read_schema(self.partition_path(key)))

    def set_aside(self, key: str) -> Path:
        """Move partition ``key``'s file to ``stale/`` (kept, no longer read); where it went."""
        target = self.root / "stale" / self.partition_path(key).name
        target.parent.mkdir(parents=True, exist_ok=True)
        self.partition_path(key).replace(target)
        return target

    def stale_partitions(self) -> list[str]:
        """Partitions stored in another layout (each file's footer is read: a one-off check)."""
        return [key for key in self.partitions() if self.is_stale(key)]

    def _require_layout(self, key: str, schema: pa.Schema) -> None:
        if not current_layout(schema):
            raise StaleLayoutError(
                f"{self.partition_path(key)}: partition {key} is stored in an older layout; `aivj up` (or "
                "`aivj demo`) stores it again from its source file in the data folder")

    def row_hashes(self, keys: list[str]) -> pa.ChunkedArray:
        """The row hashes of partitions ``keys``: from the cache or the stored column, without
        reading the vectors unless the hashes must be computed."""
        chunks = []
        for key in keys:
            file = pq.ParquetFile(self.partition_path(key))  # opened once: the file may be replaced meanwhile
            self._require_layout(key, file.schema_arrow)
            file_id = file_meta(file.schema_arrow).get("file_id")
            values = self._cached_hashes(key, file_id, file.metadata.num_rows)
            if values is None:
                values = self._compute_hashes(key, file_id, file.read(columns=["audio", "preset", "label"]))
            chunks.append(hash_strings(values))
        return pa.chunked_array(chunks, pa.string())

    # --- row hashes (a cache beside each partition file) ---------------------------------
    def row_hashes_path(self, key: str) -> Path:
        return self.root / "row_hashes" / f"{key}.bin"

    def _cache_hashes(self, key: str, file_id: str, values: np.ndarray) -> None:
        self.row_hashes_path(key).parent.mkdir(parents=True, exist_ok=True)
        body = values.astype("<u8").tobytes()
        payload = _ROW_HASHES_MAGIC + file_id.encode("ascii") + b"\n" + _digest(body) + body
        write_bytes_atomic(self.row_hashes_path(key), payload, durable=False)

    def _cached_hashes(self, key: str, file_id: str | None, rows: int) -> np.ndarray | None:
        """The cached row hashes of partition ``key`` if they are its file ``file_id``'s, intact."""
        if not file_id:
            return None
        try:
            raw = self.row_hashes_path(key).read_bytes()
        except OSError:
            return None
        head = _ROW_HASHES_MAGIC + file_id.encode("ascii") + b"\n"
        body = memoryview(raw)[len(head) + _DIGEST_BYTES :]
        if not raw.startswith(head) or len(body) != 8 * rows or raw[len(head) : len(head) + _DIGEST_BYTES] != _digest(body):
            return None
        return np.frombuffer(body, "<u8").astype(np.uint64, copy=False)

    def _hash_values(self, key: str, table: pa.Table) -> np.ndarray:
        """The row hashes of partition ``key``'s file ``table`` (its rows, at least the vector and
        label columns, with the file's metadata): the cache, else computed and cached for the next read."""
        file_id = file_meta(table.schema).get("file_id")
        values = self._cached_hashes(key, file_id, table.num_rows)
        return values if values is not None else self._compute_hashes(key, file_id, table)

    def _compute_hashes(self, key: str, file_id: str | None, table: pa.Table) -> np.ndarray:
        """Hash the rows of partition ``key``'s file ``table`` and cache them for ``file_id``."""
        audio, preset = vectors(table)
        values = row_hash_values(audio, preset, table.column("label").to_numpy())
        if file_id:
            with contextlib.suppress(OSError):  # a read-only store still reads
                self._cache_hashes(key, file_id, values)
        return values

    def manifest_hash(self, keys: list[str]) -> str:
        """Stable hash of the partition keys and their content hashes: the data a model saw."""
        h = hashlib.sha256()
        for key in sorted(keys):
            h.update(f"{key}={self.partition_meta(key).get('content_hash', '')}\n".encode())
        return h.hexdigest()

    # --- failures and quarantine -------------------------------------------------------
    def failure_path(self, key: str) -> Path:
        return self.raw_dir / f"{key}.failed.json"

    def write_failure(self, key: str, meta: dict) -> None:
        """Record that partition ``key``'s file cannot be read (so nobody retries it)."""
        write_text_atomic(self.failure_path(key), json.dumps(meta, sort_keys=True))

    def failure(self, key: str) -> dict | None:
        """The recorded failure of ``key``, if any."""
        path = self.failure_path(key)
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None

    def failures(self) -> dict[str, dict]:
        """Every recorded failure by partition key."""
        if not self.raw_dir.is_dir():
            return {}
        return {p.name[: -len(".failed.json")]: json.loads(p.read_text("utf-8")) for p in self.raw_dir.glob("*.failed.json")}

    def quarantine_path(self, key: str) -> Path:
        return self.root / "quarantine" / f"{key}.jsonl"

    def write_quarantine(self, key: str, bad: list[BadRow]) -> Path | None:
        """Keep ``key``'s bad rows aside (file, line, reason); None when there are none."""
        path = self.quarantine_path(key)
        if not bad:
            path.unlink(missing_ok=True)
            return None
        lines = "".join(json.dumps({"file": b.file, "line": b.line, "reason": b.reason}) + "\n" for b in bad)
        write_text_atomic(path, lines)
        return path

    # --- drift summaries -------------------------------------------------------------
    def summary_path(self, key: str) -> Path:
        return self.root / "summaries" / f"{key}.json"

    def write_summary(self, key: str, summary: dict) -> None:
        """Cache partition ``key``'s drift summary; the durable copy is in its partition file."""
        write_text_atomic(self.summary_path(key), json.dumps(summary), durable=False)

    def summary(self, key: str) -> dict | None:
        """Partition ``key``'s drift summary (None if it has none, or is not stored).

        It comes from the cache beside the store, or, if that is missing or torn (it is
        written without fsync), from the partition file's own metadata, and is cached again.
        """
        try:
            return json.loads(self.summary_path(key).read_text("utf-8"))
        except (OSError, ValueError):
            pass
        try:
            raw = self._footer(key).get(DRIFT_KEY)
        except OSError:  # not stored
            return None
        if raw is None:
            return None
        summary = json.loads(raw)
        self.write_summary(key, summary)
        return summary

    def corpus_summary(self, exclude: str | None = None) -> dict:
        """The drift summaries of every stored partition but ``exclude``, summed (``drift.add``).

        Reading every partition's summary at each ingest would cost more as the corpus grows,
        so ``corpus_summary.json`` keeps the running total and the partitions it covers: the
        ones stored since are added and it is written back; it is rebuilt when it names a
        partition that is no longer stored. Like ``summaries/``, it is a cache written without
        fsync; ingests running at once each write a total that is true for the keys it names.
        """
        stored = set(self.partitions())
        try:
            total = json.loads(self.corpus_path().read_text("utf-8"))
            if not set(total["keys"]) <= stored:  # a partition is gone: start again
                raise ValueError("stale")
        except (OSError, ValueError, KeyError, TypeError):
            total = {"keys": [], **drift.add(None, None)}
        covered = set(total["keys"])
        new = sorted(stored - covered)
        for key in new:
            total = drift.add(total, self.summary(key))
        if new:
            total["keys"] = sorted(covered.union(new))
            write_text_atomic(self.corpus_path(), json.dumps(total), durable=False)
        if exclude in stored:  # this partition is being stored again
            total = drift.add(total, self.summary(exclude), sign=-1)
        return total

    def corpus_path(self) -> Path:
        return self.root / "corpus_summary.json"

    def drift_edges(self, edges: list[list[float]]) -> list[list[float]]:
        """The fixed histogram edges of the lineage: the first caller's ``edges`` win."""
        path = self.root / "drift_edges.json"
        if not path.exists():
            create_exclusive(path, json.dumps(edges).encode("utf-8"))
        return json.loads(path.read_text("utf-8"))

    # --- lineage and elite -------------------------------------------------------------
    def lineage(self) -> dict | None:
        """``{"audio_dim", "preset_dim"}`` fixed by the first ingested file, or None."""
        path = self.root / "lineage.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None

    def fix_lineage(self, audio_dim: int, preset_dim: int) -> dict:
        """Fix the lineage if none is fixed yet; return the one in force (first writer wins)."""
        payload = json.dumps({"audio_dim": int(audio_dim), "preset_dim": int(preset_dim)}).encode()
        create_exclusive(self.root / "lineage.json", payload)
        return self.lineage() or {}

    def elite_path(self) -> Path:
        return self.root / "elite_set.parquet"

    def write_elite(self, table: pa.Table) -> None:
        """Store the split elite set atomically."""
        write_atomic(self.elite_path(), lambda f: pq.write_table(table, f, use_dictionary=["pair_id", "part"]))

    def elite_table(self) -> pa.Table:
        """The stored elite set (PAIR_SCHEMA plus ``part``)."""
        if not self.elite_path().exists():
            raise FileNotFoundError(f"{self.elite_path()}: no elite set stored yet (materialise elite_set)")
        return pq.read_table(self.elite_path())


_DIGEST_BYTES = 16


def _digest(body: bytes | memoryview) -> bytes:
    return hashlib.blake2b(body, digest_size=_DIGEST_BYTES).digest()
