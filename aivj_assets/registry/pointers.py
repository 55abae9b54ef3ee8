"""The champion's pointers: ``latest`` and ``coupling_net_best.pth``, derived from the registry.

Both follow the registry file, which is saved first: a process killed between the save and
the pointers leaves the previous champion's pointers, complete, and the next registry call
repairs them from the file. Every change is atomic (a rename), so a reader never sees half.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aivj_assets.data.atomic import file_sha256, write_atomic, write_text_atomic

LATEST_NAME = "latest"
BEST_NAME = "coupling_net_best.pth"


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
    """Swap ``latest`` to ``version``: a symlink replaced in one rename, or (where symlinks are
    refused, or ``use_symlinks`` is False) a pointer file written atomically."""
    link = root / LATEST_NAME
    tmp = root / f".latest.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    if use_symlinks is not False:
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
    write_text_atomic(link, version + "\n")
