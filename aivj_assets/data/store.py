"""The platform's own copy of the data: one normalised Parquet file per ingested data file.

Layout under ``settings.store_dir``: ``raw_pairs/<key>.parquet`` (with the ingest facts in
its schema metadata, so the ledger can be rebuilt from the store), ``raw_pairs/<key>.failed.json``
for a file that could not be read, ``quarantine/<key>.jsonl`` for bad rows,
``summaries/<key>.json`` for drift, ``elite_set.parquet`` and ``lineage.json``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from aivj_assets.data.atomic import create_exclusive, write_atomic, write_text_atomic
from aivj_assets.data.contract import PAIR_SCHEMA, BadRow
from aivj_assets.settings import Settings

META_KEY = b"aivj"


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
        """Store partition ``key`` atomically, with ``meta`` (source, hash, rows...) in the file."""
        schema_meta = {META_KEY: json.dumps(meta, sort_keys=True).encode("utf-8")}
        table = table.replace_schema_metadata(schema_meta)
        # Dictionary encoding of float lists costs ~6x the write time and saves nothing.
        write_atomic(self.partition_path(key), lambda f: pq.write_table(table, f, use_dictionary=False))
        self.failure_path(key).unlink(missing_ok=True)

    def partition_meta(self, key: str) -> dict:
        """The ingest facts stored with partition ``key``."""
        raw = pq.read_schema(self.partition_path(key)).metadata or {}
        return json.loads(raw.get(META_KEY, b"{}"))

    def read_partitions(self, keys: list[str] | None = None) -> pa.Table:
        """The rows of ``keys`` (all stored partitions if None) as one table."""
        keys = self.partitions() if keys is None else keys
        tables = [pq.read_table(self.partition_path(k)).replace_schema_metadata(None) for k in keys]
        return pa.concat_tables(tables) if tables else PAIR_SCHEMA.empty_table()

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
        write_text_atomic(self.summary_path(key), json.dumps(summary))

    def summaries(self, exclude: str | None = None) -> list[dict]:
        """Drift summaries of every stored partition except ``exclude``."""
        folder = self.root / "summaries"
        if not folder.is_dir():
            return []
        return [
            json.loads(p.read_text("utf-8"))
            for p in sorted(folder.glob("*.json"))
            if p.stem != exclude and self.partition_path(p.stem).exists()
        ]

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
