"""Stopping a process tree, and the guardian that stops it when ``aivj up`` dies: real processes
(small Python trees, no Dagster), so these run in seconds."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from aivj_assets.cli.process_tree import DONE, stop_tree
from aivj_assets_tests.cli.up_helpers import gone, wait_gone
from aivj_assets_tests.processes import POSIX_ONLY

pytestmark = POSIX_ONLY

# A child like the webserver or the daemon: in a session of its own, with one process in its
# group that stops on SIGTERM (a code server) and one that left the group (a run worker started
# in a session of its own), so only the final kill reaches it.
LEADER = """
import subprocess, sys, time
sleep = [sys.executable, "-c", "import time; time.sleep(600)"]
in_group = subprocess.Popen(sleep)
left_group = subprocess.Popen(sleep, start_new_session=True)
time.sleep(600)
"""


@pytest.fixture
def trees() -> Iterator[list[psutil.Process]]:
    """Start leaders with :func:`_leader`; whatever of them is left is killed afterwards."""
    started: list[psutil.Process] = []
    yield started
    for p in started:
        for q in [*_safe_children(p), p]:
            try:
                q.kill()
            except psutil.Error:
                pass


def _safe_children(p: psutil.Process) -> list[psutil.Process]:
    try:
        return p.children(recursive=True)
    except psutil.Error:
        return []


def _leader(trees: list[psutil.Process]) -> tuple[psutil.Process, list[psutil.Process]]:
    """A leader in its own session with its two children running; (leader, its children)."""
    proc = subprocess.Popen([sys.executable, "-c", LEADER], start_new_session=True)
    leader = psutil.Process(proc.pid)
    trees.append(leader)
    deadline = time.monotonic() + 30
    while len(leader.children()) < 2:
        assert time.monotonic() < deadline, "the tree did not start"
        time.sleep(0.05)
    kids = leader.children()
    trees.extend(kids)
    return leader, kids


def _left_group(kids: list[psutil.Process]) -> psutil.Process:
    return next(k for k in kids if os.getsid(k.pid) == k.pid)


def test_stop_signals_the_group_then_kills_what_left_it_even_once_orphaned(trees):
    leader, kids = _leader(trees)
    stray = _left_group(kids)
    logged: list[str] = []
    grace = 1.0
    started = time.monotonic()
    # The leader dies at once on SIGTERM: the stray is an orphan during the grace time and is
    # no longer the leader's descendant, yet it is killed, being collected before any signal.
    stop_tree([leader], grace, logged.append)
    assert all(gone(p) for p in [leader, *kids])
    assert time.monotonic() - started >= grace, "the stray was killed before the grace time was over"
    assert len(logged) == 1 and f"1 process(es) did not stop in {grace:.0f}s" in logged[0], logged
    assert str(stray.pid) in logged[0], logged


def _guardian(grace: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "aivj_assets.cli.process_tree", str(grace)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)


def _tell(guardian: subprocess.Popen, line: str) -> None:
    assert guardian.stdin is not None
    guardian.stdin.write(f"{line}\n")
    guardian.stdin.flush()


def _watched(guardian: subprocess.Popen, pid: int) -> None:
    """Wait for the guardian's acknowledgement that it recorded ``pid``'s tree."""
    assert guardian.stdout is not None
    assert guardian.stdout.readline().strip() == f"watching {pid}"


@pytest.mark.timeout(60)
def test_guardian_stops_the_tree_when_up_dies_orphans_included(trees):
    leader, kids = _leader(trees)
    guardian = _guardian(grace=1.0)
    try:
        _tell(guardian, str(leader.pid))
        _watched(guardian, leader.pid)
        leader.kill()  # the leader dies first: its children are orphans, no longer its descendants
        assert wait_gone([leader], 10) == []
        assert guardian.poll() is None, "the guardian must wait for aivj up, not for its children"
        assert guardian.stdin is not None
        guardian.stdin.close()  # aivj up died: its end of the pipe closed without "done"
        assert guardian.wait(timeout=30) == 0
        assert wait_gone(kids, 5) == [], "the guardian left the orphans running"
    finally:
        guardian.kill()


@pytest.mark.timeout(60)
def test_guardian_leaves_the_tree_alone_once_told_done(trees):
    leader, kids = _leader(trees)
    guardian = _guardian(grace=1.0)
    try:
        _tell(guardian, str(leader.pid))
        _tell(guardian, DONE)  # aivj up stopped its children itself (here: it says so falsely)
        assert guardian.wait(timeout=30) == 0
        assert not any(gone(p) for p in [leader, *kids])
    finally:
        guardian.kill()
