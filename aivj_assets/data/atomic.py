"""Atomic file writes: a reader in another process sees the old file or the new one, never half."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


def write_atomic(path: Path, write: Callable[[BinaryIO], None], *, durable: bool = True) -> None:
    """Write ``path`` through ``write(fileobj)`` into a temp file beside it, fsync, then rename.

    ``durable=False`` skips the fsync, for a cache that can be rebuilt: a reader still sees the
    old file or the new one, but a power cut may leave it empty.
    """
    commit(stage(path, write, durable=durable), path)


def commit(tmp: Path, path: Path) -> None:
    """Rename a :func:`stage` file over ``path``: readers see the old file or the new one, never half."""
    try:
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def stage(path: Path, write: Callable[[BinaryIO], None], *, durable: bool = True) -> Path:
    """The first half of :func:`write_atomic`: a durable temp file beside ``path``, not yet renamed.

    The caller renames it over ``path`` with ``os.replace`` (the commit) or unlinks it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        return Path(tmp)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def stage_by_name(path: Path, write: Callable[[str], None]) -> Path:
    """:func:`stage` for a native writer that opens the file itself: ``write(temp_path)``.

    pyarrow writing to its own file handle costs a third of what writing a finished buffer
    through a Python file object does.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "r+b") as f:  # a writable handle: Windows flushes only those
            os.fsync(f.fileno())
        return Path(tmp)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically."""
    write_atomic(path, lambda f: f.write(data))


def write_text_atomic(path: Path, text: str, *, durable: bool = True) -> None:
    """Replace ``path`` with UTF-8 ``text`` atomically."""
    data = text.encode("utf-8")
    write_atomic(path, lambda f: f.write(data), durable=durable)


def write_json_atomic(path: Path, payload: Any, *, indent: int = 2) -> None:
    """Replace ``path`` with ``payload`` as sorted, indented JSON, atomically."""
    write_text_atomic(path, json.dumps(payload, indent=indent, sort_keys=True))


def create_exclusive(path: Path, data: bytes) -> bool:
    """Create ``path`` with ``data`` only if it does not exist yet; False when another writer won."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # link fails if the target exists: first writer wins, whole file
            return True
        except FileExistsError:
            return False
    finally:
        os.unlink(tmp)
