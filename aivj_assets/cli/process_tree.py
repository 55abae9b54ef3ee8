"""The processes ``aivj up`` starts, and stopping each of them with everything it started.

One stop on every OS: the whole tree is collected first (a parent that stops first takes its
children's ancestry with it: orphans are reparented and no longer show up as descendants),
then each child's process group gets a grace signal (SIGTERM on POSIX, CTRL_BREAK_EVENT on
Windows, where each child leads a group of its own), and whatever of the tree is still alive
when the grace time is over is killed. A run worker that left its group is stopped that way.

``aivj up`` may also die without running the stop (SIGKILL, TerminateProcess). Then:
on Windows a Job Object that kills every process in it when its last handle closes, which is
when ``aivj up`` dies; on POSIX a guardian process (``python -m aivj_assets.cli.process_tree``)
that is told each child's pid on a pipe and runs the same stop when the pipe closes without
"done". On Linux the children are also sent SIGTERM by the kernel (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import ctypes
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TextIO

import psutil

_WINDOWS = os.name == "nt"
# Windows' values, named here so that the Windows branch can be exercised on any OS.
CTRL_BREAK_EVENT = getattr(signal, "CTRL_BREAK_EVENT", 1)
CREATE_NEW_PROCESS_GROUP = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0x200)
CTRL_CLOSE_EVENTS = (2, 5, 6)  # CTRL_CLOSE_EVENT, CTRL_LOGOFF_EVENT, CTRL_SHUTDOWN_EVENT
JOB_OBJECT_EXTENDED_LIMIT_INFORMATION = 9
JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE = 0x2000
# Windows ends a process this long (5 s) after its console closes: the stop must fit in it.
CLOSE_GRACE_SECONDS = 3.0
KILL_WAIT_SECONDS = 10.0  # a killed process is gone within this; longer means it cannot be killed
POLL_SECONDS = 0.1
GUARD_REFRESH_SECONDS = 2.0
DONE = "done"

Log = Callable[[str], None]


# --- the orderly stop, the same on every OS ---------------------------------------------------------
def process(pid: int) -> psutil.Process | None:
    """The live process ``pid`` (its start time pins it against pid reuse), None if gone."""
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def alive(p: psutil.Process) -> bool:
    """Running and not a zombie (a zombie has exited; only its parent's wait is missing)."""
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def collect(roots: Iterable[psutil.Process]) -> set[psutil.Process]:
    """The live ``roots`` and all their live descendants."""
    found: set[psutil.Process] = set()
    for root in roots:
        if not alive(root):
            continue
        found.add(root)
        try:
            found.update(root.children(recursive=True))
        except psutil.Error:
            continue
    return found


def _grace_signal(leader: psutil.Process) -> None:
    """Ask the leader's whole process group to stop; gone is fine."""
    if _WINDOWS:
        # Only a live leader: a control event for a pid that leads no group may reach the
        # whole console, ``aivj up`` included.
        if alive(leader):
            try:
                os.kill(leader.pid, CTRL_BREAK_EVENT)
            except OSError:
                pass
        return
    try:  # a group outlives its leader while any member is left: signal it regardless
        os.killpg(leader.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_gone(procs: Iterable[psutil.Process], deadline: float) -> list[psutil.Process]:
    """Wait until none of ``procs`` is alive or ``deadline`` passes; those still alive."""
    left = [p for p in procs if alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        left = [p for p in left if alive(p)]
    return left


def stop_tree(leaders: list[psutil.Process], grace: float, log: Log, known: Iterable[psutil.Process] = ()) -> None:
    """Stop the leaders (in order) and every descendant: grace signal, wait, kill what is left.

    ``known``: processes seen in the tree earlier (the guardian's), stopped too if still alive.
    """
    tree = collect([*leaders, *known])  # before any signal: see the module's docstring
    for leader in leaders:
        _grace_signal(leader)
    left = _wait_gone(tree, time.monotonic() + grace)
    left = [p for p in collect([*left, *leaders]) if alive(p)]  # and what they started meanwhile
    if not left:
        return
    names = ", ".join(sorted(f"{_name(p)} ({p.pid})" for p in left))
    log(f"{len(left)} process(es) did not stop in {grace:.0f}s; killing them: {names}")
    for p in left:
        try:
            p.kill()
        except psutil.Error:
            pass
    for p in _wait_gone(left, time.monotonic() + KILL_WAIT_SECONDS):
        log(f"{_name(p)} ({p.pid}) is still running after SIGKILL/TerminateProcess")


def _name(p: psutil.Process) -> str:
    try:
        return p.name()
    except psutil.Error:
        return "?"


# --- the children ---------------------------------------------------------------------------------
class Children:
    """The processes ``aivj up`` started, tied to its life; :meth:`stop` ends them and their trees."""

    def __init__(self, grace: float, log: Log) -> None:
        self.grace = grace
        self.log = log
        self.procs: dict[str, subprocess.Popen] = {}
        # Kept after they exit: a dead leader's group (its orphans) is still signalled on POSIX.
        self._leaders: list[psutil.Process] = []
        self._lock = threading.Lock()  # the console-close handler stops from a thread of its own
        self._guardian: subprocess.Popen | None = None
        self._guardian_pipe: int | None = None
        if _WINDOWS:
            _kill_children_with_us(log)
            on_console_close(lambda: self.stop(min(grace, CLOSE_GRACE_SECONDS)), log)
        else:
            self._start_guardian()

    def start(self, name: str, cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen:
        """Start ``cmd`` as a child in a process group of its own.

        Its own group: the terminal's Ctrl-C reaches only ``aivj up``, which stops the children
        in order (and everything they launched) instead of racing them.
        """
        if _WINDOWS:
            proc = subprocess.Popen(cmd, cwd=cwd, env=env, creationflags=CREATE_NEW_PROCESS_GROUP)
        else:
            proc = subprocess.Popen(cmd, cwd=cwd, env=env, start_new_session=True,
                                    preexec_fn=_stop_with_parent(os.getpid()))
        self.procs[name] = proc
        leader = process(proc.pid)
        if leader is not None:
            self._leaders.append(leader)
        self._tell_guardian(str(proc.pid))
        return proc

    def exited(self) -> tuple[str, int] | None:
        """The first child found to have exited, with its exit code; None while all run."""
        for name, proc in self.procs.items():
            code = proc.poll()
            if code is not None:
                return name, code
        return None

    def stop(self, grace: float | None = None) -> None:
        """Stop every child, in the reverse order of their starts, and everything each started."""
        with self._lock:
            stop_tree(list(reversed(self._leaders)), self.grace if grace is None else grace, self.log)
            for proc in self.procs.values():
                try:
                    proc.wait(timeout=KILL_WAIT_SECONDS)  # reap: each is gone by now
                except subprocess.TimeoutExpired:
                    pass
            self._tell_guardian(DONE)

    def _start_guardian(self) -> None:
        read, write = os.pipe()
        try:
            # Its own session: the terminal's Ctrl-C and hang-up must not end it before us.
            self._guardian = subprocess.Popen([sys.executable, "-m", __name__, str(self.grace)], stdin=read,
                                              stdout=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            os.close(write)
            self.log(f"no guardian process ({exc}); a SIGKILL of aivj up may leave runs behind")
        else:
            self._guardian_pipe = write
        finally:
            os.close(read)

    def _tell_guardian(self, line: str) -> None:
        if self._guardian_pipe is None:
            return
        try:
            os.write(self._guardian_pipe, f"{line}\n".encode())
        except OSError:  # the guardian is gone: nothing to tell any more
            line = DONE
        if line == DONE:
            os.close(self._guardian_pipe)
            self._guardian_pipe = None
            if self._guardian is not None:
                try:
                    self._guardian.wait(timeout=KILL_WAIT_SECONDS)
                except subprocess.TimeoutExpired:
                    pass


# --- when aivj up dies without stopping them ---------------------------------------------------------
def _stop_with_parent(parent: int):
    """On Linux, have the child sent SIGTERM when ``aivj up`` dies, even by SIGKILL.

    A backstop to the guardian, for the direct children only. Elsewhere (macOS) not offered.
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded here, not between fork and exec
    pr_set_pdeathsig = 1

    def in_child() -> None:
        libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM))
        if os.getppid() != parent:  # we died before the line above took effect
            os._exit(1)

    return in_child


def guard(stream: TextIO, grace: float, log: Log, refresh: float = GUARD_REFRESH_SECONDS) -> None:
    """The guardian: read child pids until "done" (all stopped) or end of input (``aivj up`` died:
    stop them). The tree is remembered as it grows, so that orphans are found after a death.
    Each pid is acknowledged on stdout once its tree is recorded."""
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_read_lines, args=(stream, lines), daemon=True).start()
    leaders: list[psutil.Process] = []
    known: set[psutil.Process] = set()
    while True:
        try:
            line = lines.get(timeout=refresh)
        except queue.Empty:
            known = _remember(leaders, known)
            continue
        if line is None:
            log("aivj up is gone without stopping its children; stopping them")
            stop_tree(list(reversed(leaders)), grace, log, known)
            return
        if line == DONE:
            return
        p = process(int(line))
        if p is not None:
            leaders.append(p)
            known = _remember(leaders, known)
        print(f"watching {line}", flush=True)  # the acknowledgement: its tree is recorded (to /dev/null in aivj up)


def _remember(leaders: list[psutil.Process], known: set[psutil.Process]) -> set[psutil.Process]:
    """What is alive of the tree seen so far (orphans included), and the leaders' tree now."""
    return {p for p in known if alive(p)} | collect(leaders)


def _read_lines(stream: TextIO, out: queue.Queue[str | None]) -> None:
    for line in stream:
        out.put(line.strip())
    out.put(None)


# --- Windows ------------------------------------------------------------------------------------------
class _BasicLimits(ctypes.Structure):
    _fields_ = [("PerProcessUserTimeLimit", ctypes.c_int64), ("PerJobUserTimeLimit", ctypes.c_int64),
                ("LimitFlags", ctypes.c_uint32), ("MinimumWorkingSetSize", ctypes.c_size_t),
                ("MaximumWorkingSetSize", ctypes.c_size_t), ("ActiveProcessLimit", ctypes.c_uint32),
                ("Affinity", ctypes.c_size_t), ("PriorityClass", ctypes.c_uint32),
                ("SchedulingClass", ctypes.c_uint32)]


class _ExtendedLimits(ctypes.Structure):
    _fields_ = [("BasicLimitInformation", _BasicLimits), ("IoInfo", ctypes.c_uint64 * 6),
                ("ProcessMemoryLimit", ctypes.c_size_t), ("JobMemoryLimit", ctypes.c_size_t),
                ("PeakProcessMemoryUsed", ctypes.c_size_t), ("PeakJobMemoryUsed", ctypes.c_size_t)]


_held: list = []  # the job handle and the console handler: alive as long as aivj up


def _kernel32():
    k = ctypes.WinDLL("kernel32", use_last_error=True)
    k.CreateJobObjectW.restype = ctypes.c_void_p
    k.CreateJobObjectW.argtypes = [ctypes.c_void_p, ctypes.c_wchar_p]
    k.SetInformationJobObject.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32]
    k.AssignProcessToJobObject.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    k.GetCurrentProcess.restype = ctypes.c_void_p
    return k


def _kill_children_with_us(log: Log) -> None:
    """Put ``aivj up`` in a Job Object that kills all its processes when its handle closes.

    The handle is ours alone (not inheritable) and closes when we die, however we die; every
    process started from here on, and everything those start, is in the job. The Windows
    counterpart of PR_SET_PDEATHSIG, for the whole tree. The ``aivj.exe`` and venv launchers
    run us in a job of theirs that lets children break away silently; nested in it, ours is
    the immediate job, which decides, and it allows no breakaway.
    """
    k = _kernel32()
    job = k.CreateJobObjectW(None, None)
    limits = _ExtendedLimits()
    limits.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
    if not job or not k.SetInformationJobObject(job, JOB_OBJECT_EXTENDED_LIMIT_INFORMATION,
                                                ctypes.byref(limits), ctypes.sizeof(limits)) \
            or not k.AssignProcessToJobObject(job, k.GetCurrentProcess()):
        log(f"no Job Object (Windows error {ctypes.get_last_error()}); if aivj up is killed, "
            "its children may keep running")
        return
    _held.append(job)


def on_console_close(stop: Callable[[], None], log: Log) -> None:
    """On Windows, run ``stop`` when the console window closes (or the user logs off, or the
    machine shuts down). Python maps only Ctrl-C and Ctrl-Break to signals. For these events
    Windows ends the process when the handler returns, or 5 s after the event if it has not:
    ``stop`` runs in the handler, with a grace time that fits."""
    k = _kernel32()

    def handler(event: int) -> int:
        if event not in CTRL_CLOSE_EVENTS:
            return 0  # Ctrl-C, Ctrl-Break: on to Python's handler (SIGINT, SIGBREAK)
        stop()
        return 1

    callback = ctypes.WINFUNCTYPE(ctypes.c_int, ctypes.c_uint)(handler)
    _held.append(callback)  # a collected callback would crash the process when Windows calls it
    if not k.SetConsoleCtrlHandler(callback, True):
        log("no console handler: closing the window leaves the children to the Job Object")


def _say(line: str) -> None:
    try:
        print(f"aivj up (guardian): {line}", file=sys.stderr, flush=True)
    except OSError:  # aivj up's terminal may be gone with it: stop the tree all the same
        pass


def main(argv: list[str]) -> None:
    """The guardian's entry point: ``python -m aivj_assets.cli.process_tree GRACE_SECONDS``."""
    guard(sys.stdin, float(argv[0]), _say)


if __name__ == "__main__":
    main(sys.argv[1:])
