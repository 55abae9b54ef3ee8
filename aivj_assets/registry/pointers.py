"""The champion's pointers: ``latest`` and ``coupling_net_best.pth``, derived from the registry.

Both follow the registry file, which is saved first: a process killed between the save and
the pointers leaves the previous champion's pointers, complete, and the next registry call
repairs them from the file. Every change is atomic (a rename), so a reader never sees half.

On Windows ``latest`` is always a pointer file, never a directory link: ``os.replace`` cannot
swap a directory link there, so a link would make the next promotion fail. A link left by an
earlier install (Developer Mode allows them) is replaced by the pointer file on the next change.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aivj_assets.data.atomic import commit, file_sha256, stage, write_atomic

LATEST_NAME = "latest"
BEST_NAME = "coupling_net_best.pth"
_WINDOWS = os.name == "nt"


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (a no-op on Windows, where folders cannot be opened)."""
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_copy(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` so that readers of ``dst`` see the old or the new bytes, never half."""
    with open(src, "rb") as fin:
        write_atomic(dst, lambda fout: shutil.copyfileobj(fin, fout, 1 << 20))


def latest_version(root: Path) -> str | None:
    """The version ``latest`` points at (symlink target or pointer-file content)."""
    link = root / LATEST_NAME
    if link.is_symlink():
        return Path(os.readlink(link)).name
    if link.is_file():
        return link.read_text(encoding="utf-8").strip() or None
    return None


def sync_pointers(root: Path, doc: dict[str, Any], weights_path: Callable[[str], Path], *,
                  use_symlinks: bool | None) -> None:
    """Point ``latest`` and ``coupling_net_best.pth`` at the registry's champion (idempotent)."""
    champion = doc.get("champion")
    if not champion:
        return
    best = root / BEST_NAME
    if not best.is_file() or file_sha256(best) != doc["versions"][champion]["model_hash"]:
        atomic_copy(weights_path(champion), best)
    if latest_version(root) != champion:
        _switch_latest(root, champion, use_symlinks)


def _switch_latest(root: Path, version: str, use_symlinks: bool | None) -> None:
    """Swap ``latest`` to ``version``: a symlink replaced in one rename, or (on Windows, where
    symlinks are refused, or ``use_symlinks`` is False) a pointer file written atomically."""
    link = root / LATEST_NAME
    tmp = root / f".latest.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    if use_symlinks is not False and not _WINDOWS:
        try:
            os.symlink(version, tmp, target_is_directory=True)
            os.replace(tmp, link)
            fsync_dir(root)
            return
        except OSError:
            if tmp.is_symlink():
                tmp.unlink()
            if use_symlinks:
                raise
    _write_pointer_file(link, version)


def _is_link(path: Path) -> bool:
    """A symlink, or an NTFS junction (which ``is_symlink`` does not report)."""
    return path.is_symlink() or bool(getattr(os.path, "isjunction", lambda _: False)(path))


def _write_pointer_file(link: Path, version: str) -> None:
    """Write ``latest`` as a file holding ``version``. On Windows a directory link in its place is
    removed just before the rename (Windows cannot rename over one): a reader in that instant
    finds no ``latest`` and reads the registry, never a wrong or half-written name. Elsewhere the
    rename replaces a link as it is."""
    tmp = stage(link, lambda name: Path(name).write_text(version + "\n", encoding="utf-8"))
    if _WINDOWS and _is_link(link):
        try:
            os.unlink(link)
        except (IsADirectoryError, PermissionError):  # Windows removes a directory link with rmdir
            os.rmdir(link)
    commit(tmp, link)
