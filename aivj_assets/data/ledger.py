"""The ingest ledger in the data folder: ``processed_hashes.jsonl`` and ``.last_seen``.

One line per file version the sensor has taken in: its content hash, path (relative to the
data folder), size, modification time and inode (so a known file is never hashed again),
partition, status (pending, ingested, failed, duplicate), rows and time. Only the
registering side (the sensor, or the demo's ingest) writes it, under a lock, atomically.
Deleted, it is rebuilt from the store, which carries the same facts in each partition file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone

from aivj_assets.data.atomic import file_lock, write_text_atomic
from aivj_assets.data.store import Store
from aivj_assets.settings import Settings

LEDGER_NAME = "processed_hashes.jsonl"
LAST_SEEN_NAME = ".last_seen"
LOCK_NAME = ".aivj_ledger.lock"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Ledger:
    """The ledger of one data folder."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.path = settings.data_dir / LEDGER_NAME
        self.last_seen_path = settings.data_dir / LAST_SEEN_NAME

    def load(self, *, persist: bool = False) -> list[dict]:
        """Every entry; rebuilt from the store when the file is missing, and saved then only
        with ``persist`` (a caller holding :func:`ledger_lock`: a reader without it could
        overwrite entries the sensor has just saved)."""
        if not self.path.exists():
            entries = self.rebuild()
            if entries and persist:
                self.save(entries)
            return entries
        lines = [raw for raw in self.path.read_text(encoding="utf-8").splitlines() if raw.strip()]
        entries = json.loads("[" + ",".join(lines) + "]")  # one parse: 10,000 lines in milliseconds
        # Unchanged entries are written back as the very same line (the sensor saves often).
        self._unchanged = {id(e): (dict(e), line) for e, line in zip(entries, lines, strict=True)}
        return entries

    def save(self, entries: list[dict]) -> None:
        """Replace the ledger atomically."""
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        cache = getattr(self, "_unchanged", {})
        out = []
        for e in entries:
            known = cache.get(id(e))
            out.append(known[1] if known is not None and known[0] == e else json.dumps(e, sort_keys=True))
        write_text_atomic(self.path, "\n".join(out) + "\n" if out else "")

    def touch_last_seen(self) -> None:
        """Record the time of this scan."""
        write_text_atomic(self.last_seen_path, now_iso() + "\n")

    def rebuild(self) -> list[dict]:
        """Entries for every stored partition and recorded failure, from the store alone."""
        store = Store(self.settings)
        entries: list[dict] = []
        found = [(key, store.partition_meta(key), "ingested") for key in store.partitions()]
        found += [(key, meta, "failed") for key, meta in store.failures().items()]
        for key, meta, status in sorted(found, key=lambda f: f[1].get("registered_seq", 0)):
            entries.append(
                {
                    "seq": len(entries) + 1,
                    "hash": meta.get("content_hash"),
                    "path": meta.get("source_rel", meta.get("source_path")),
                    "size": meta.get("size"),
                    "mtime_ns": meta.get("mtime_ns"),
                    "inode": meta.get("inode"),
                    "partition": key,
                    "status": status,
                    "rows": meta.get("rows"),
                    "reason": meta.get("reason"),
                    "run_key": key,
                    "attempts": 0,
                    "time": meta.get("time", now_iso()),
                    "rebuilt": True,
                }
            )
        return entries

    def sources_for(self, partition: str) -> list[dict]:
        """The registering entry of ``partition``, then the entries of its duplicates (same
        content under other paths, newest first); [] when the partition is not registered."""
        entries = [e for e in self.load() if e["partition"] == partition]
        first = [e for e in entries if e["status"] != "duplicate"][:1]
        copies = [e for e in reversed(entries) if e["status"] == "duplicate" and e.get("hash") in
                  {f.get("hash") for f in first}]
        return first + copies if first else []


@contextmanager
def ledger_lock(settings: Settings, timeout: float | None = None) -> Iterator[None]:
    """Exclusive lock on the ledger for one read-modify-write (sensor tick or demo ingest)."""
    with file_lock(settings.data_dir / LOCK_NAME, timeout):
        yield
