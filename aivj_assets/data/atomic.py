"""Atomic file writes (a reader in another process sees the old file or the new one, never
half) and the one lock between processes that read-modify-write such files."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import filelock


def write_atomic(path: Path, write: Callable[[BinaryIO], None], *, durable: bool = True) -> None:
    """Write ``path`` through ``write(fileobj)`` into a temp file beside it, fsync, then rename.

    ``durable=False`` skips the fsync, for a cache that can be rebuilt: a reader still sees the
    old file or the new one, but a power cut may leave it empty.
    """

    def write_file(tmp: str) -> None:
        with open(tmp, "wb") as f:
            write(f)

    commit(stage(path, write_file, durable=durable), path)


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask sets it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp creates files readable by their owner only; the platform's files (the champion's
# weights, the registry, reports) get the usual mode instead, so an app running as another
# user can read models/coupling_net_best.pth.
_FILE_MODE = 0o666 & ~_umask()


def stage(path: Path, write: Callable[[str], None], *, durable: bool = True) -> Path:
    """The first half of :func:`write_atomic`: ``write(temp_path)`` fills a temp file beside
    ``path``, which is fsynced (unless ``durable=False``) but not yet renamed; the caller
    renames it into place with :func:`commit` or unlinks it.

    The writer opens the file by name, so a native one (pyarrow's) can use its own handle
    instead of passing a finished buffer through a Python file object.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if os.name != "nt":
            os.fchmod(fd, _FILE_MODE)
    finally:
        os.close(fd)
    try:
        write(tmp)
        if durable:
            with open(tmp, "r+b") as f:  # a writable handle: Windows flushes only those
                os.fsync(f.fileno())
        return Path(tmp)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_WINDOWS = os.name == "nt"
_REPLACE_TRIES = 20  # about 2 s in all


def commit(tmp: Path, path: Path) -> None:
    """Rename a :func:`stage` file over ``path``: readers see the old file or the new one, never half.

    On Windows a file another process has open cannot be replaced (Python and Arrow open
    files without FILE_SHARE_DELETE): the rename is tried again for a moment, since readers
    such as the sensor, an ingest run or the training's pause check hold files only briefly.
    """
    try:
        for attempt in range(_REPLACE_TRIES):
            try:
                os.replace(tmp, path)
                return
            except PermissionError:
                if not _WINDOWS or attempt == _REPLACE_TRIES - 1:
                    raise
                time.sleep(0.01 * (attempt + 1))
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically."""
    write_atomic(path, lambda f: f.write(data), durable=durable)


def write_text_atomic(path: Path, text: str, *, durable: bool = True) -> None:
    """Replace ``path`` with UTF-8 ``text`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"), durable=durable)


def write_json_atomic(path: Path, payload: Any) -> None:
    """Replace ``path`` with ``payload`` as indented JSON (keys in their order), atomically."""
    write_text_atomic(path, json.dumps(payload, indent=2) + "\n")


def file_sha256(path: Path) -> str:
    """SHA-256 hex digest of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def create_exclusive(path: Path, data: bytes) -> bool:
    """Create ``path`` with ``data`` only if it does not exist yet; False when another writer won.

    A hard link is the one call that both refuses an existing target and publishes a whole file.
    Filesystems without hard links (exFAT, FAT32, some network shares) refuse it: there the
    check and a rename happen under a lock instead, with the same outcome.
    """
    tmp = stage(path, lambda name: Path(name).write_bytes(data))
    try:
        try:
            os.link(tmp, path)  # link fails if the target exists: first writer wins, whole file
            return True
        except FileExistsError:
            return False
        except OSError:  # no hard links here
            with file_lock(path.with_name(f".{path.name}.lock")):
                if path.exists():
                    return False
                commit(tmp, path)
                return True
    finally:
        Path(tmp).unlink(missing_ok=True)


LOCK_TIMEOUT_SECONDS = 30.0  # well inside Dagster's 60 s limit on a sensor tick


class LockTimeout(TimeoutError):
    """Another process held a lock longer than the caller waits: named, instead of a hang."""


@contextmanager
def file_lock(path: Path, timeout: float | None = None) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) against other processes, waiting
    at most ``timeout`` seconds (default ``LOCK_TIMEOUT_SECONDS``) for it; ``LockTimeout`` names
    the file after that.

    The OS releases it if the holder dies. A second holder in the same process waits too.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    timeout = LOCK_TIMEOUT_SECONDS if timeout is None else timeout
    lock = filelock.FileLock(path, timeout=timeout, thread_local=False)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise LockTimeout(
            f"{path}: another process has held this lock for over {timeout:g} s (a stuck run, sensor or "
            f"command of this platform); it is freed when that process ends"
        ) from None
    try:
        yield
    finally:
        lock.release()


def read_json(path: Path, default: Any) -> Any:
    """The JSON in ``path``, or ``default`` when it is missing or unreadable (small state files)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default
