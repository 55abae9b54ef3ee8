"""``aivj up``: the Dagster webserver and daemon for this project's instance.

Both run as child processes of this one, from the same virtual environment, with the
project root as working directory and DAGSTER_HOME pointing at the project's instance.
Ctrl-C or SIGTERM stops both; a child that dies on its own is reported with its exit code
and takes the other one down with it, so the owner never runs half a platform. On Linux the
children also stop if ``aivj up`` is killed outright (SIGKILL).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import FrameType

from aivj_assets.data.ingest import rebuild_stale
from aivj_assets.orchestration.instance import ensure_instance, init_storage
from aivj_assets.settings import PROJECT_ROOT, Settings

WORKSPACE = PROJECT_ROOT / "workspace.yaml"
STOP_GRACE_SECONDS = 15.0  # how long a child may take to shut down before it is killed
POLL_SECONDS = 0.5


class _Stop(Exception):
    """Raised from the signal handler to leave the supervision loop."""


def child_commands(host: str, port: int, workspace: Path = WORKSPACE) -> dict[str, list[str]]:
    """The two command lines, run with this interpreter so they use the same environment."""
    return {
        "dagster-webserver": [
            sys.executable, "-m", "dagster_webserver", "-w", str(workspace), "-h", host, "-p", str(port),
        ],
        "dagster-daemon": [*_daemon_entry(), "run", "-w", str(workspace)],
    }


def _daemon_entry() -> list[str]:
    """The ``dagster-daemon`` script installed beside this interpreter (its module as a fallback)."""
    script = Path(sys.executable).with_name("dagster-daemon.exe" if os.name == "nt" else "dagster-daemon")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "dagster._daemon"]


def ui_url(host: str, port: int) -> str:
    """The address a browser on this machine opens (a wildcard bind is reached via loopback)."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def _start(cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
    # Own process group: the terminal's Ctrl-C reaches only us, and we stop the children in
    # order (and everything they launched) instead of racing them.
    if os.name == "nt":
        return subprocess.Popen(
            cmd, cwd=PROJECT_ROOT, env=env, creationflags=subprocess.CREATE_NEW_PROCESS_GROUP
        )
    return subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, start_new_session=True,
                            preexec_fn=_stop_with_parent(os.getpid()))


def _stop_with_parent(parent: int):
    """On Linux, have the child sent SIGTERM when ``aivj up`` dies, even by SIGKILL.

    A SIGKILL leaves us no chance to stop the children ourselves, and in sessions of their own
    they would keep serving a platform nobody supervises. Elsewhere (macOS) this is not offered.
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


def _signal(proc: subprocess.Popen, sig: int) -> None:
    """Send ``sig`` to a child's whole process group; gone is fine.

    Windows has no process groups to signal: there both steps end the child
    (``terminate`` and ``kill`` are the same call there).
    """
    if os.name == "nt":
        proc.terminate()
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def _stop(name: str, proc: subprocess.Popen) -> None:
    """Ask a child to stop, then kill its whole group if it does not within the grace time."""
    if proc.poll() is not None:
        return
    _signal(proc, signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        print(f"aivj up: {name} did not stop in {STOP_GRACE_SECONDS:.0f}s; killing it", flush=True)
        _signal(proc, getattr(signal, "SIGKILL", signal.SIGTERM))
        proc.wait()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/server_info", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _supervise(procs: dict[str, subprocess.Popen], url: str) -> int:
    """Watch the children until one exits (its status, never 0) or a signal stops us (``_Stop``)."""
    announced = False
    while True:
        for name, proc in procs.items():
            code = proc.poll()
            if code is not None:
                print(f"aivj up: {name} exited with code {code}; stopping the rest", file=sys.stderr, flush=True)
                return code if code > 0 else 1
        if not announced and _ready(url):
            print(f"aivj up: Dagster UI ready at {url} (daemon running: sensors and schedules)", flush=True)
            announced = True
        time.sleep(POLL_SECONDS)


def run_up(settings: Settings, *, host: str = "127.0.0.1", port: int = 3000) -> int:
    """Run the webserver and the daemon until Ctrl-C/SIGTERM (0) or until one dies (non-zero)."""
    home = ensure_instance(settings)
    init_storage(home)
    rebuild_stale(settings, log=lambda line: print(f"aivj up: {line}", flush=True))
    env = dict(os.environ, DAGSTER_HOME=str(home))
    url = ui_url(host, port)
    print(f"aivj up: instance {home}", flush=True)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise _Stop(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    procs: dict[str, subprocess.Popen] = {}
    status = 0
    try:
        for name, cmd in child_commands(host, port).items():
            procs[name] = _start(cmd, env)
        print(f"aivj up: starting the Dagster UI at {url} (Ctrl-C stops it)", flush=True)
        status = _supervise(procs, url)
    except _Stop as why:
        if status == 0:
            print(f"aivj up: {why}: stopping the webserver and the daemon", flush=True)
    finally:
        # A second Ctrl-C must not cut the shutdown short and leave orphans behind.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        # The daemon first: it launches runs; the webserver only serves the UI.
        for name in ("dagster-daemon", "dagster-webserver"):
            if name in procs:
                _stop(name, procs[name])
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status
