"""The model registry on disk: versions, the champion, rollback, pruning.

Layout under ``models/``: one directory ``v{unix_ts}_{hash4}/`` per version (weights and
``meta.json``), ``model_registry.json`` (the source of truth: every version, its status and
the champion), ``versions.csv`` (a flat view of it), ``latest`` (symlink to the champion, or a
pointer file where symlinks are not allowed) and ``coupling_net_best.pth`` (the champion's
weights under the name the app loads). ``latest`` and ``coupling_net_best.pth`` are derived
from the registry file and repaired from it, so a process killed mid-promotion leaves every
reader with a complete version (``pointers.py``). Which versions to prune is policy's to
decide (``policy/retention.py``); this module only records and removes.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from aivj_assets.data.atomic import file_lock, file_sha256, write_json_atomic, write_text_atomic
from aivj_assets.registry.pointers import (
    BEST_NAME,
    atomic_copy,
    fsync_dir,
    latest_version,
    sync_pointers,
)

WEIGHTS_NAME = "coupling_net.pth"
META_NAME = "meta.json"
REGISTRY_NAME = "model_registry.json"
VERSIONS_CSV = "versions.csv"
STATUSES = ("candidate", "promoted", "rejected", "rolled_back")
CSV_COLUMNS = ("ver", "time", "data_hash", "model_hash", "cmd_line", "status")
_INCOMING_PREFIX = ".incoming-"
_STALE_INCOMING_SECONDS = 3600.0


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Registry:
    """Versions of ``coupling_net`` under one ``models/`` directory."""

    def __init__(self, models_dir: Path, *, use_symlinks: bool | None = None) -> None:
        self.root = Path(models_dir)
        # None: try a symlink and fall back to a pointer file where the OS refuses it.
        self.use_symlinks = use_symlinks

    # --- paths and reading ------------------------------------------------------------
    @property
    def registry_path(self) -> Path:
        return self.root / REGISTRY_NAME

    @property
    def best_path(self) -> Path:
        return self.root / BEST_NAME

    def version_dir(self, version: str) -> Path:
        return self.root / version

    def weights_path(self, version: str) -> Path:
        return self.root / version / WEIGHTS_NAME

    def load(self) -> dict[str, Any]:
        """The registry document (empty when no version exists yet)."""
        try:
            return json.loads(self.registry_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"format": 1, "champion": None, "versions": {}, "events": []}
        except ValueError as exc:  # a torn or hand-edited file: name it
            raise ValueError(f"{self.registry_path}: not a readable registry ({exc})") from None

    def entries(self) -> list[dict[str, Any]]:
        """Every version's entry, oldest first."""
        return list(self.load()["versions"].values())

    def get(self, version: str) -> dict[str, Any]:
        """One version's registry entry; ``KeyError`` naming it when unknown."""
        versions = self.load()["versions"]
        if version not in versions:
            raise KeyError(f"no model version {version!r} in {self.registry_path}")
        return versions[version]

    def meta(self, version: str) -> dict[str, Any]:
        """The version's ``meta.json``."""
        return json.loads((self.version_dir(version) / META_NAME).read_text(encoding="utf-8"))

    def champion(self) -> dict[str, Any] | None:
        """The champion's registry entry, or None before the first promotion."""
        doc = self.load()
        name = doc.get("champion")
        return dict(doc["versions"][name]) if name else None

    def latest_version(self) -> str | None:
        """The version ``latest`` points at (symlink target or pointer-file content)."""
        return latest_version(self.root)

    def find(self, *, identity: str, stage: str) -> str | None:
        """The newest intact version trained under ``identity`` in ``stage``, if any."""
        for entry in reversed(self.entries()):
            if entry.get("identity") == identity and entry.get("stage") == stage and not entry.get("pruned"):
                if self.verify(entry["version"]):
                    return entry["version"]
        return None

    def verify(self, version: str) -> bool:
        """True when the version's weights and meta exist and the weights match the recorded hash."""
        try:
            entry = self.get(version)
        except KeyError:
            return False
        weights = self.weights_path(version)
        if not weights.is_file() or not (self.version_dir(version) / META_NAME).is_file():
            return False
        return file_sha256(weights) == entry["model_hash"]

    # --- writing ------------------------------------------------------------------------
    def register(self, weights: Path | Callable[[Path], object], meta: Mapping[str, Any]) -> str:
        """Add a complete version (status ``candidate``) from a weights file, or from
        ``weights(path)``, which writes the weights file at ``path`` (training saves its state dict so,
        and this layer never needs torch).

        ``meta`` carries stage, parent, identity, data_hash, data_partitions, metrics, history,
        settings, run_id and cmd_line; the version directory appears in one rename.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        incoming = self.root / f"{_INCOMING_PREFIX}{uuid.uuid4().hex}"
        incoming.mkdir()
        try:
            target = incoming / WEIGHTS_NAME
            if callable(weights):
                weights(target)
            else:
                atomic_copy(Path(weights), target)
            model_hash = file_sha256(target)
            with file_lock(self.root / ".registry.lock"):
                doc = self._repaired()
                ts = int(time.time())
                version = f"v{ts}_{model_hash[:4]}"
                while version in doc["versions"] or self.version_dir(version).exists():
                    ts += 1
                    version = f"v{ts}_{model_hash[:4]}"
                full_meta = {
                    **dict(meta),
                    "version": version,
                    "time": _now_iso(),
                    "model_hash": model_hash,
                    "weights": WEIGHTS_NAME,
                }
                write_json_atomic(incoming / META_NAME, full_meta)
                fsync_dir(incoming)
                os.rename(incoming, self.version_dir(version))
                fsync_dir(self.root)
                doc["versions"][version] = self._entry_from_meta(full_meta)
                self._save(doc)
            return version
        finally:
            if incoming.exists():
                shutil.rmtree(incoming, ignore_errors=True)

    def update(self, version: str, **fields: Any) -> None:
        """Merge fields (e.g. measured metrics, gate results) into a version's entry."""
        with self._locked() as doc:
            if version not in doc["versions"]:
                raise KeyError(f"no model version {version!r} in {self.registry_path}")
            doc["versions"][version].update(fields)

    def reject(self, version: str, reasons: list[str], *, by: str) -> None:
        """Record that ``version`` failed its gates; the champion is left alone."""
        with self._locked() as doc:
            entry = doc["versions"][version]
            entry["status"] = "rejected"
            entry["reasons"] = list(reasons)
            doc["events"].append(
                {"time": _now_iso(), "action": "reject", "version": version, "by": by, "reasons": list(reasons)}
            )

    def reopen(self, version: str, *, by: str, reason: str) -> None:
        """Make a rejected ``version`` a candidate again (it passed its gates when judged again)."""
        with self._locked() as doc:
            entry = doc["versions"][version]
            if entry["status"] != "rejected":
                raise ValueError(f"{version} is {entry['status']}, not rejected")
            entry["status"] = "candidate"
            entry.pop("reasons", None)
            doc["events"].append({"time": _now_iso(), "action": "reopen", "version": version, "by": by,
                                  "reason": reason})

    def promote(self, version: str, *, by: str, reason: str = "", expected_champion: Any = ...) -> None:
        """Make ``version`` the champion; refuse if the champion moved since it was judged."""
        with self._locked() as doc:
            if expected_champion is not ... and doc.get("champion") != expected_champion:
                raise RuntimeError(
                    f"champion changed from {expected_champion} to {doc.get('champion')} while "
                    f"{version} was judged; judge it again"
                )
            self._require_intact(doc, version)
            previous = doc.get("champion")
            self._set_champion(doc, version)
            doc["events"].append(
                {"time": _now_iso(), "action": "promote", "version": version, "previous": previous,
                 "by": by, "reason": reason}
            )

    def rollback(self, version: str | None = None, by: str = "cli") -> str:
        """Make ``version`` (default: the previous champion) the champion again; returns it."""
        with self._locked() as doc:
            current = doc.get("champion")
            target = version or self._previous_champion(doc)
            if target is None:
                raise RuntimeError(f"no earlier champion to roll back to in {self.registry_path}")
            if target == current:
                raise ValueError(f"{target} is already the champion")
            if target not in doc["versions"]:
                raise ValueError(f"no model version {target!r} in {self.registry_path}")
            self._require_intact(doc, target)
            if current:
                cur = doc["versions"][current]
                cur["status"] = "rolled_back"
                cur["reasons"] = [f"rolled back to {target} by {by}"]
            self._set_champion(doc, target)
            doc["events"].append(
                {"time": _now_iso(), "action": "rollback", "version": target, "previous": current, "by": by}
            )
        return target

    def repair(self) -> None:
        """Bring ``latest``, ``coupling_net_best.pth`` and ``versions.csv`` in line with the registry."""
        with self._locked():
            pass

    def prune(self, choose: Callable[[list[dict[str, Any]]], set[str]]) -> list[str]:
        """Delete the files of the versions ``choose(alive entries)`` names, under the registry's lock;
        their entries stay, marked ``pruned``. Returns them, oldest first."""
        removed: list[str] = []
        with self._locked() as doc:
            alive = [e for e in doc["versions"].values() if not e.get("pruned")]
            doomed = choose(alive)
            for entry in alive:
                if entry["version"] in doomed and entry["version"] != doc.get("champion"):
                    entry["pruned"] = _now_iso()
                    removed.append(entry["version"])
        for version in removed:  # registry first, files after: a kill leaves only orphan files
            trash = self.root / f"{_INCOMING_PREFIX}trash-{version}"
            if self.version_dir(version).exists():
                os.rename(self.version_dir(version), trash)
                shutil.rmtree(trash, ignore_errors=True)
        return removed

    # --- internals ------------------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        """Hold the registry lock; yield the (repaired) document, save it, then sync the pointers.

        The registry file is written before ``coupling_net_best.pth`` and ``latest``: a process
        killed in between leaves the old champion's pointers, which the next call repairs. A
        change of champion whose pointers cannot be written (a file held open on Windows, a link
        the OS will not replace) is undone, so the registry names the champion the pointers show.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        with file_lock(self.root / ".registry.lock"):
            before = self._repaired()
            doc = copy.deepcopy(before)
            yield doc
            self._save(doc)
            try:
                sync_pointers(self.root, doc, self.weights_path, use_symlinks=self.use_symlinks)
            except OSError as exc:
                if doc.get("champion") == before.get("champion"):
                    raise
                self._undo_champion_change(before, doc["champion"], exc)

    def _undo_champion_change(self, before: dict[str, Any], wanted: str, exc: OSError) -> None:
        """Save the document as it was before ``wanted`` was made champion, put the previous
        champion's pointers back, and raise a clear error saying both."""
        previous = before.get("champion")
        reason = f"{exc.__class__.__name__}: {exc}"
        before["events"].append({"time": _now_iso(), "action": "pointer_failure", "version": wanted,
                                 "previous": previous, "reason": reason})
        self._save(before)
        repaired = "complete"
        try:
            sync_pointers(self.root, before, self.weights_path, use_symlinks=self.use_symlinks)
        except OSError as again:  # the registry is right; the next registry call repairs the pointers
            repaired = f"its pointers are repaired at the next change ({again.__class__.__name__}: {again})"
        raise RuntimeError(
            f"{wanted} was not made champion: its pointers in {self.root} could not be written ({reason}); "
            f"{previous or 'no version'} stays the champion, {repaired}"
        ) from None

    def _repaired(self) -> dict[str, Any]:
        """Load the registry; adopt complete version dirs a killed ``register`` left unlisted."""
        doc = self.load()
        for child in sorted(self.root.iterdir()) if self.root.exists() else []:
            if child.name.startswith(_INCOMING_PREFIX):
                if time.time() - child.stat().st_mtime > _STALE_INCOMING_SECONDS or "trash-" in child.name:
                    shutil.rmtree(child, ignore_errors=True)
                continue
            if child.is_dir() and child.name.startswith("v") and child.name not in doc["versions"]:
                try:
                    meta = json.loads((child / META_NAME).read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    continue
                if meta.get("version") == child.name:
                    doc["versions"][child.name] = self._entry_from_meta(meta)
        return doc

    def _save(self, doc: dict[str, Any]) -> None:
        write_json_atomic(self.registry_path, doc)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for e in doc["versions"].values():
            writer.writerow([e["version"], e.get("time", ""), e.get("data_hash", ""), e["model_hash"],
                             e.get("cmd_line", ""), e["status"]])
        write_text_atomic(self.root / VERSIONS_CSV, buf.getvalue())

    @staticmethod
    def _entry_from_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "version": meta["version"], "time": meta["time"], "stage": meta.get("stage", ""),
            "status": "candidate", "reasons": [], "parent": meta.get("parent"),
            "identity": meta.get("identity", ""), "data_hash": meta.get("data_hash", ""),
            "model_hash": meta["model_hash"], "metrics": dict(meta.get("metrics") or {}),
            "run_id": meta.get("run_id", ""), "cmd_line": meta.get("cmd_line", ""),
            "ever_champion": False,
        }

    def _require_intact(self, doc: dict[str, Any], version: str) -> None:
        if version not in doc["versions"]:
            raise ValueError(f"no model version {version!r} in {self.registry_path}")
        entry = doc["versions"][version]
        weights = self.weights_path(version)
        if entry.get("pruned") or not weights.is_file():
            raise ValueError(f"{version}: weights file {weights} is missing (pruned?)")
        actual = file_sha256(weights)
        if actual != entry["model_hash"]:
            raise ValueError(f"{weights}: sha256 {actual[:12]} does not match registry {entry['model_hash'][:12]}")

    @staticmethod
    def _set_champion(doc: dict[str, Any], version: str) -> None:
        entry = doc["versions"][version]
        entry["status"] = "promoted"
        entry["ever_champion"] = True
        doc["champion"] = version

    @staticmethod
    def _previous_champion(doc: dict[str, Any]) -> str | None:
        """The most recent former champion that was not itself rolled back and still has files."""
        current = doc.get("champion")
        for event in reversed(doc["events"]):
            if event["action"] not in ("promote", "rollback", "import"):
                continue
            for name in (event.get("version"), event.get("previous")):
                entry = doc["versions"].get(name or "")
                if entry and name != current and entry["status"] != "rolled_back" and not entry.get("pruned"):
                    return name
        return None
