"""``aivj up``'s Windows branch, run on any OS with the Windows calls stood in for.

What stands in: ``os.kill`` (CTRL_BREAK_EVENT to a process group), ``psutil.Process`` (a
process table where a parent that stops leaves its children orphaned, as on a real OS, so
they are no longer its descendants), ``subprocess.Popen`` and kernel32 (Job Object, console
control handler). The module's ``_WINDOWS`` switch picks the branch.
"""

from __future__ import annotations

import ctypes
import time
from types import SimpleNamespace

import psutil
import pytest

from aivj_assets.cli import process_tree
from aivj_assets.cli.process_tree import (
    CREATE_NEW_PROCESS_GROUP,
    CTRL_BREAK_EVENT,
    JOB_OBJECT_EXTENDED_LIMIT_INFORMATION,
    JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
    Children,
)

GRACE = 0.5
JOB, ME = 0x51, 0x77  # handles the fake kernel32 hands out


class FakeWindows:
    """A process table, the calls made to it in order (with their times), and kernel32."""

    def __init__(self) -> None:
        self.procs: dict[int, FakeProcess] = {}
        self.events: list[tuple[str, int, float]] = []
        self.popen_kwargs: list[dict] = []
        self.job_flags: list[int] = []
        self.assigned: list[tuple[int, int]] = []
        self.handlers: list = []

    def add(self, pid: int, parent: int | None, group: int, stops_on_break: bool = False) -> None:
        self.procs[pid] = FakeProcess(self, pid, parent, group, stops_on_break)

    def process(self, pid: int) -> FakeProcess:  # psutil.Process(pid)
        p = self.procs.get(pid)
        if p is None or not p.running:
            raise psutil.NoSuchProcess(pid)
        return p

    def kill(self, pid: int, sig: int) -> None:  # os.kill: on Windows, a control event to a group
        assert sig == CTRL_BREAK_EVENT, sig
        self.events.append(("break", pid, time.monotonic()))
        for p in list(self.procs.values()):
            if p.group == pid and p.running and p.stops_on_break:
                p.end()

    def popen(self, cmd: list[str], **kwargs) -> SimpleNamespace:  # subprocess.Popen
        self.popen_kwargs.append(kwargs)
        pid = int(cmd[0])  # the test names the fake process to "start"
        return SimpleNamespace(pid=pid, poll=lambda: None if self.procs[pid].running else 0,
                               wait=lambda timeout=None: 0)

    def kernel32(self, name: str, use_last_error: bool = False) -> SimpleNamespace:  # ctypes.WinDLL
        def set_information(job, info_class, limits_ref, size):
            assert info_class == JOB_OBJECT_EXTENDED_LIMIT_INFORMATION and size == ctypes.sizeof(limits_ref._obj)
            self.job_flags.append(limits_ref._obj.BasicLimitInformation.LimitFlags)
            return 1

        def assign(job, process):
            self.assigned.append((job, process))
            return 1

        def set_handler(handler, add):
            self.handlers.append(handler)
            return 1

        calls = {"CreateJobObjectW": lambda attributes, name: JOB, "SetInformationJobObject": set_information,
                 "AssignProcessToJobObject": assign, "GetCurrentProcess": lambda: ME,
                 "SetConsoleCtrlHandler": set_handler}
        # Plain functions, not bound methods: the code sets restype and argtypes on them.
        return SimpleNamespace(**calls)


class FakeProcess:
    def __init__(self, os_: FakeWindows, pid: int, parent: int | None, group: int, stops_on_break: bool):
        self.os, self.pid, self.parent, self.group = os_, pid, parent, group
        self.stops_on_break = stops_on_break
        self.running = True

    def end(self) -> None:
        self.running = False
        for p in self.os.procs.values():
            if p.parent == self.pid:
                p.parent = None  # orphaned: no longer anyone's descendant

    def children(self, recursive: bool = False) -> list[FakeProcess]:
        kids = [p for p in self.os.procs.values() if p.parent == self.pid and p.running]
        if recursive:
            kids += [g for k in kids for g in k.children(recursive=True)]
        return kids

    def is_running(self) -> bool:
        return self.running

    def status(self) -> str:
        return psutil.STATUS_RUNNING

    def kill(self) -> None:
        self.os.events.append(("kill", self.pid, time.monotonic()))
        self.end()

    def name(self) -> str:
        return f"python-{self.pid}"


@pytest.fixture
def windows(monkeypatch: pytest.MonkeyPatch) -> FakeWindows:
    fake = FakeWindows()
    monkeypatch.setattr(process_tree, "_WINDOWS", True)
    monkeypatch.setattr(process_tree.os, "kill", fake.kill)
    monkeypatch.setattr(process_tree.os, "killpg", _no_process_groups, raising=False)
    monkeypatch.setattr(process_tree.psutil, "Process", fake.process)
    monkeypatch.setattr(process_tree.subprocess, "Popen", fake.popen)
    monkeypatch.setattr(ctypes, "WinDLL", fake.kernel32, raising=False)
    monkeypatch.setattr(ctypes, "WINFUNCTYPE", ctypes.CFUNCTYPE, raising=False)
    monkeypatch.setattr(process_tree, "_held", [])
    return fake


def _no_process_groups(*args):
    raise AssertionError("os.killpg does not exist on Windows")


def _platform(fake: FakeWindows, grace: float = GRACE) -> Children:
    """The webserver (10) and the daemon (20) started; like Dagster on Windows, each code server
    leads a group of its own; the daemon's runs a training (run worker 22, its step 23)."""
    fake.add(10, None, 10, stops_on_break=True)
    fake.add(11, 10, 11)
    fake.add(20, None, 20, stops_on_break=True)
    fake.add(21, 20, 21)
    fake.add(22, 21, 21)
    fake.add(23, 22, 21)
    children = Children(grace, log=lambda line: None)
    children.start("dagster-webserver", ["10"], cwd=None, env={})
    children.start("dagster-daemon", ["20"], cwd=None, env={})
    return children


def test_children_start_in_groups_of_their_own_inside_a_job_that_dies_with_up(windows):
    _platform(windows)
    assert windows.job_flags == [JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE]
    assert windows.assigned == [(JOB, ME)]  # aivj up itself: every process started from it is in the job
    assert len(windows.popen_kwargs) == 2, "no guardian process on Windows: the job is the guardian"
    for kwargs in windows.popen_kwargs:
        assert kwargs["creationflags"] == CREATE_NEW_PROCESS_GROUP
        assert "preexec_fn" not in kwargs and "start_new_session" not in kwargs
    assert len(process_tree._held) == 2  # the job handle and the console handler outlive this call


def test_stop_breaks_each_child_group_first_then_kills_the_rest_of_the_tree(windows):
    children = _platform(windows)
    children.stop()
    breaks = [(pid, at) for kind, pid, at in windows.events if kind == "break"]
    kills = [(pid, at) for kind, pid, at in windows.events if kind == "kill"]
    # The daemon first (it launches runs), then the webserver; never a pid that leads no group.
    assert [pid for pid, _ in breaks] == [20, 10]
    # Code servers and the training ignored the break and were orphaned when their parents
    # stopped: found all the same, collected before the first signal, and killed.
    assert sorted(pid for pid, _ in kills) == [11, 21, 22, 23]
    assert min(at for _, at in kills) - max(at for _, at in breaks) >= GRACE
    assert not any(p.running for p in windows.procs.values())


def test_closing_the_console_window_runs_the_stop_within_the_time_windows_gives(windows, monkeypatch):
    monkeypatch.setattr(process_tree, "CLOSE_GRACE_SECONDS", GRACE)
    _platform(windows, grace=60.0)
    (handler,) = windows.handlers
    assert handler(0) == 0 and handler(1) == 0  # Ctrl-C, Ctrl-Break: left to Python's handlers
    assert windows.events == []
    started = time.monotonic()
    assert handler(2) == 1  # CTRL_CLOSE_EVENT: handled, once the stop is done
    assert not any(p.running for p in windows.procs.values())
    assert time.monotonic() - started < 5.0, "the full grace time would outlast the console's 5 s"
    assert [pid for kind, pid, _ in windows.events if kind == "break"] == [20, 10]


def test_a_leader_that_already_exited_gets_no_control_event(windows):
    """A control event for a pid that leads no live group may reach the whole console, aivj up
    included. The dead webserver's orphaned code server is left to the Job Object, which ends it
    as aivj up exits."""
    children = _platform(windows)
    windows.procs[10].end()  # the webserver died on its own
    children.stop()
    assert [pid for kind, pid, _ in windows.events if kind == "break"] == [20]
    assert sorted(pid for kind, pid, _ in windows.events if kind == "kill") == [21, 22, 23]
