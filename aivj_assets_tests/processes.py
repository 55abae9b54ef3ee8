"""Child processes for the tests that start real servers (daemon, webserver, browser, S3), the same
on every OS: each starts in a group of its own and is stopped with everything it started.

POSIX stops a group with one ``killpg``; Windows has no such call, so the tree is found through
psutil (collected before the kill, while the children are still linked to their parent).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

WINDOWS = os.name == "nt"
POSIX_ONLY = pytest.mark.skipif(WINDOWS, reason="POSIX process semantics (signals, process groups, PR_SET_PDEATHSIG)")


def script(name: str) -> str:
    """A console script of this virtual environment (``dagster-daemon``; ``.exe`` on Windows)."""
    return str(Path(sys.executable).with_name(f"{name}.exe" if WINDOWS else name))


def spawn(cmd: list[str], **kwargs) -> subprocess.Popen:
    """Start ``cmd`` in a process group of its own, so a test stops it and its children together."""
    if WINDOWS:
        kwargs.setdefault("creationflags", subprocess.CREATE_NEW_PROCESS_GROUP)
    else:
        kwargs.setdefault("start_new_session", True)
    return subprocess.Popen(cmd, **kwargs)


def kill_tree(proc: subprocess.Popen, timeout: float = 30) -> None:
    """Kill ``proc``, its group and every descendant (one that left the group too); wait for it."""
    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    if not WINDOWS:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for member in family:
        try:
            member.kill()
        except psutil.NoSuchProcess:
            pass
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=timeout)


_LOCK_HOLDER = """
import sys, time
from pathlib import Path
from aivj_assets.data.atomic import file_lock
with file_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(600)
"""


def hold_lock_in_another_process(path: Path) -> subprocess.Popen:
    """A real process that takes the platform's lock on ``path`` and then hangs, as a stuck run
    would; returns once it holds it (stop it with ``kill_tree``)."""
    proc = spawn([sys.executable, "-c", _LOCK_HOLDER, str(path)], stdout=subprocess.PIPE, text=True,
                 env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert proc.stdout.readline().strip() == "held"
    return proc
