"""One pass over the data folder: which files are new, settled, duplicate, or owed a run.

The sensor (and the demo's ingest) call :func:`scan_tick`. It compares each candidate file's
(size, mtime_ns, inode) with the ledger, hashes only files it has never seen (within a
per-tick budget), records every decision in the ledger, and returns the partitions to add and
the runs to request. Re-requesting is safe: a run key is requested at most once by Dagster.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from aivj_assets.data.atomic import file_sha256
from aivj_assets.data.contract import DATA_SUFFIXES
from aivj_assets.data.ledger import LEDGER_NAME, Ledger, ledger_lock, now_iso
from aivj_assets.data.store import Store
from aivj_assets.settings import Settings

MAX_RUN_CHECKS = 25  # run-status lookups per tick for pending partitions
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def partition_key(rel_path: str, content_hash: str) -> str:
    """``<safe stem>-<8 hex of the content hash>``: readable, and safe in URLs and backfills."""
    stem = Path(rel_path).name
    for suffix in DATA_SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    safe = _UNSAFE.sub("_", stem).strip("._-")[:60] or "file"
    return f"{safe}-{content_hash[:8]}"


@dataclass
class Registration:
    """A partition to add (if missing) and its run to request."""

    partition: str
    run_key: str
    path: str
    content_hash: str


@dataclass
class TickPlan:
    """What one scan decided."""

    requests: list[Registration]
    last_seq: int
    stats: dict = field(default_factory=dict)


def candidate_files(settings: Settings) -> Iterator[tuple[str, os.stat_result]]:
    """(path relative to the data folder, stat) of every data file, nested folders included.

    Hidden files and folders, the elite folder and the ledger are never refined data, nor are
    the platform's own folders when AIVJ_HOME lies inside the data folder (the store's
    partition and quarantine files would otherwise be ingested again, without end).
    """
    root = os.path.abspath(settings.data_dir)
    skipped = {os.path.normcase(os.path.abspath(p)) for p in (
        settings.elite_path, settings.store_dir, settings.models_dir, settings.checkpoints_dir,
        settings.state_dir, settings.dagster_home)}
    ledger = os.path.join(root, LEDGER_NAME)
    skip = len(root) + 1
    # Plain strings and os.scandir: pathlib would cost more than the stat calls themselves.
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue  # a folder removed mid-scan: the next tick sees the new state
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    if os.path.normcase(entry.path) not in skipped:
                        stack.append(entry.path)
                    continue
                if not name.lower().endswith(DATA_SUFFIXES) or entry.path == ledger:
                    continue
                st = entry.stat()
            except OSError:
                continue
            rel = entry.path[skip:]
            yield (rel.replace(os.sep, "/") if os.sep != "/" else rel), st


def _signature(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def scan_tick(
    settings: Settings,
    committed_seq: int,
    *,
    materialized: Callable[[], set[str]] | None = None,
    run_state: Callable[[str], str | None] | None = None,
    time_budget_s: float = 20.0,
) -> TickPlan:
    """Reconcile pending partitions, take in new settled files, and say what to request.

    ``committed_seq``: the highest ledger sequence whose requests Dagster has taken (the
    sensor's cursor); later pending entries come from a tick that died and are requested
    again. ``materialized()`` gives the materialised partitions (default: the store's);
    ``run_state(run_key)`` says "active", "done", "dead" or None (no such run).
    """
    started = time.monotonic()
    store = Store(settings)
    ledger = Ledger(settings)
    with ledger_lock(settings, timeout=time_budget_s):  # waiting eats the tick's budget, not more
        entries = ledger.load(persist=True)
        next_seq = max([committed_seq, *(e["seq"] for e in entries)]) + 1
        requests: list[Registration] = []
        changed, next_seq = _reconcile(settings, store, entries, committed_seq, next_seq, requests, materialized, run_state)
        known, by_sig, by_hash = _index(entries)
        todo, waiting, scanned = _unseen(settings, known)
        hashed_files = hashed_bytes = deferred = 0
        for _, rel, sig in todo:
            over = hashed_files >= settings.sensor_max_files_per_tick or (
                hashed_files and hashed_bytes + sig[0] > settings.sensor_max_bytes_per_tick
            )
            if over or time.monotonic() - started > time_budget_s:
                deferred += 1
                continue
            content_hash, hashed = _settled_hash(settings.data_dir / rel, sig, by_sig)
            hashed_files, hashed_bytes = hashed_files + hashed, hashed_bytes + hashed * sig[0]
            if not content_hash:
                waiting += content_hash is None  # changed while we read it: not settled after all
                continue  # or "" : it vanished, nothing to ingest
            entries.append(_register(rel, sig, content_hash, next_seq, by_hash, requests))
            next_seq += 1
            known.setdefault(rel, set()).add(sig)
            by_sig[sig] = content_hash
            changed = True
        if changed:
            ledger.save(entries)
        ledger.touch_last_seen()
    stats = {
        "scanned": scanned, "hashed_files": hashed_files, "hashed_bytes": hashed_bytes,
        "waiting": waiting, "deferred": deferred, "requests": len(requests),
        "seconds": round(time.monotonic() - started, 4),
    }
    return TickPlan(requests, max([committed_seq, *(e["seq"] for e in entries)]), stats)


def _index(entries: list[dict]) -> tuple[dict[str, set[tuple]], dict[tuple, str], dict[str, str]]:
    """The ledger as lookups: signatures seen per path, content hash per signature (where the
    inode makes a signature an identity), and the partition of each content hash."""
    known: dict[str, set[tuple]] = {}
    by_sig: dict[tuple, str] = {}
    by_hash: dict[str, str] = {}
    for e in entries:
        sig = (e.get("size"), e.get("mtime_ns"), e.get("inode"))
        known.setdefault(e["path"], set()).add(sig)
        if e.get("inode"):
            by_sig[sig] = e["hash"]
        if e["status"] != "duplicate" and e.get("hash"):
            by_hash.setdefault(e["hash"], e["partition"])
    return known, by_sig, by_hash


def _unseen(settings: Settings, known: dict[str, set[tuple]]) -> tuple[list[tuple[int, str, tuple]], int, int]:
    """Files whose (path, signature) the ledger has not seen and that have settled, oldest first;
    how many are still being written; how many files were looked at."""
    now = time.time()
    todo, waiting, scanned = [], 0, 0
    for rel, st in candidate_files(settings):
        scanned += 1
        sig = _signature(st)
        if sig in known.get(rel, ()):
            continue
        if now - max(st.st_mtime, st.st_ctime) < settings.settle_seconds:
            waiting += 1  # still being written (or just moved in): wait until it settles
            continue
        todo.append((st.st_mtime_ns, rel, sig))
    todo.sort()
    return todo, waiting, scanned


def _settled_hash(path: Path, sig: tuple, by_sig: dict[tuple, str]) -> tuple[str | None, int]:
    """The file's content hash if it did not change while read (None if it did, "" if it vanished),
    and whether it had to be hashed (a renamed or hard-linked file is known by its signature)."""
    content_hash = by_sig.get(sig) if sig[2] else None
    hashed = 0
    try:
        if content_hash is None:
            content_hash, hashed = file_sha256(path), 1
        now_sig = _signature(os.stat(path))
    except OSError:
        return "", hashed
    # Windows' DirEntry.stat() gives inode 0 where os.stat() gives the file index: compare the
    # inode only when the scan had one.
    if now_sig[:2] != sig[:2] or (sig[2] and now_sig[2] != sig[2]):
        return None, hashed
    return content_hash, hashed


def _register(rel: str, sig: tuple, content_hash: str, seq: int, by_hash: dict[str, str],
              requests: list[Registration]) -> dict:
    """The ledger entry of a newly seen file: a duplicate of a stored partition, or a new partition
    whose run is requested."""
    entry = {"seq": seq, "hash": content_hash, "path": rel, "size": sig[0], "mtime_ns": sig[1], "inode": sig[2],
             "rows": None, "attempts": 0, "time": now_iso()}
    if content_hash in by_hash:
        entry.update(status="duplicate", partition=by_hash[content_hash], run_key=None)
    else:
        key = partition_key(rel, content_hash)
        entry.update(status="pending", partition=key, run_key=key)
        by_hash[content_hash] = key
        requests.append(Registration(key, key, rel, content_hash))
    return entry


def _reconcile(settings, store, entries, committed_seq, next_seq, requests, materialized, run_state):
    """Settle pending entries: ingested, failed, re-requested, or retried after a dead run."""
    pending = [e for e in entries if e["status"] == "pending"]
    if not pending:
        return False, next_seq
    done = materialized() if materialized is not None else set(store.partitions())
    changed, checks = False, 0
    for e in pending:
        key = e["partition"]
        failure = store.failure(key)
        if failure is not None:
            e.update(status="failed", reason=failure.get("reason"))
            changed = True
        elif key in done and store.partition_path(key).exists():
            e.update(status="ingested", rows=store.partition_meta(key).get("rows"))
            changed = True
        elif e["seq"] > committed_seq:
            requests.append(Registration(key, e["run_key"], e["path"], e["hash"]))
        elif run_state is not None and checks < MAX_RUN_CHECKS:
            checks += 1
            state = run_state(e["run_key"])
            if state is None:  # registered but its run was never created: ask again
                requests.append(Registration(key, e["run_key"], e["path"], e["hash"]))
            elif state == "dead" and e["attempts"] >= settings.run_retries:
                e.update(status="failed", reason=f"run for {key} died {e['attempts'] + 1} times")
                changed = True
            elif state == "dead":
                e["attempts"] += 1
                e.update(run_key=f"{key}.r{e['attempts']}", seq=next_seq)
                next_seq += 1
                requests.append(Registration(key, e["run_key"], e["path"], e["hash"]))
                changed = True
    return changed, next_seq
