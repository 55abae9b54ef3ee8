"""``aivj up``: the Dagster webserver and daemon for this project's instance.

Both run as child processes of this one, from the same virtual environment, with the
project root as working directory and DAGSTER_HOME pointing at the project's instance.
"Ready" is said once the UI answers and the workspace's code location has loaded; a location
that fails to load is shown with its error, and ``aivj up`` stops (exit code 1).
Ctrl-C, SIGTERM, a hang-up or a closed console window stops both and everything they started
(code servers, run workers): see ``process_tree``, which also covers ``aivj up`` being killed
outright. A child that dies on its own is reported with its exit code and takes the rest
down with it, so the owner never runs half a platform.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.request
from pathlib import Path
from types import FrameType

from aivj_assets.cli.process_tree import Children
from aivj_assets.data.ingest import rebuild_stale
from aivj_assets.orchestration.instance import ensure_instance, init_storage
from aivj_assets.settings import PROJECT_ROOT, Settings

WORKSPACE = PROJECT_ROOT / "workspace.yaml"
STOP_GRACE_SECONDS = 15.0  # how long the children may take to shut down before they are killed
POLL_SECONDS = 0.5
STACK_LINES = 8  # of a load error's stack: where it was raised
# Ctrl-C; kill's default; the terminal closed (POSIX); Ctrl-Break (Windows).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK")
                     if hasattr(signal, name))
LOCATIONS_QUERY = """{ workspaceOrError { __typename
  ... on Workspace { locationEntries { name loadStatus locationOrLoadError { __typename
      ... on PythonError { message stack errorChain { error { message stack } } } } } }
  ... on PythonError { message } } }"""


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


def _say(line: str) -> None:
    try:
        print(f"aivj up: {line}", flush=True)
    except OSError:  # the terminal is gone (SIGHUP): the shutdown must go on without it
        pass


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/server_info", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _graphql(url: str, query: str) -> dict:
    """The ``data`` of the webserver's answer to ``query`` (empty when it gives none)."""
    request = urllib.request.Request(url + "/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return json.load(resp).get("data") or {}
    except (OSError, ValueError):
        return {}


def load_error_text(entry: dict) -> str:
    """A failed code location's error: every message in its chain, then the last lines of the
    innermost stack (where it was raised)."""
    error = entry["locationOrLoadError"]
    chain = [error, *(link["error"] for link in error.get("errorChain") or [])]
    lines = [f"code location {entry['name']!r} failed to load:"]
    lines += [line for e in chain for line in (e.get("message") or "").strip().splitlines()]
    stack = "".join(chain[-1].get("stack") or []).rstrip().splitlines()
    lines += stack[-STACK_LINES:]
    return "\n  ".join(lines)


def workspace_state(url: str) -> tuple[str, str]:
    """("ready", "") once the UI answers and every code location loaded; ("failed", the error)
    when one failed to load; ("loading", "") before either."""
    if not _answers(url):
        return "loading", ""
    workspace = _graphql(url, LOCATIONS_QUERY).get("workspaceOrError") or {}
    if workspace.get("__typename") == "PythonError":
        return "failed", f"the webserver cannot read the workspace: {(workspace.get('message') or '').strip()}"
    entries = workspace.get("locationEntries") or []
    failed = [e for e in entries if (e.get("locationOrLoadError") or {}).get("__typename") == "PythonError"]
    if failed:
        return "failed", "\n".join(load_error_text(e) for e in failed)
    if entries and all(e.get("loadStatus") == "LOADED" and e.get("locationOrLoadError") for e in entries):
        return "ready", ""
    return "loading", ""


def _supervise(children: Children, url: str) -> int:
    """Watch the children until one exits (its status, never 0), the code location fails to
    load (1) or a signal stops us (``_Stop``)."""
    announced = False
    while True:
        gone = children.exited()
        if gone is not None:
            name, code = gone
            print(f"aivj up: {name} exited with code {code}; stopping the rest", file=sys.stderr, flush=True)
            return code if code > 0 else 1
        if not announced:
            state, error = workspace_state(url)
            if state == "failed":
                print(f"aivj up: {error}\naivj up: not ready; stopping", file=sys.stderr, flush=True)
                return 1
            if state == "ready":
                _say(f"Dagster UI ready at {url} (daemon running: sensors and schedules)")
                announced = True
        time.sleep(POLL_SECONDS)


def run_up(settings: Settings, *, host: str = "127.0.0.1", port: int = 3000, workspace: Path = WORKSPACE) -> int:
    """Run the webserver and the daemon until a stop signal (0), until one dies or the code
    location fails to load (non-zero)."""
    home = ensure_instance(settings)
    init_storage(home)
    rebuild_stale(settings, log=_say)
    env = dict(os.environ, DAGSTER_HOME=str(home))
    url = ui_url(host, port)
    _say(f"instance {home}")
    children = Children(STOP_GRACE_SECONDS, _say)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise _Stop(signal.Signals(signum).name)

    # A signal ignored from the start stays ignored: ``nohup aivj up`` must survive its terminal.
    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS
                if signal.getsignal(sig) is not signal.SIG_IGN}
    status = 0
    try:
        for name, cmd in child_commands(host, port, workspace).items():
            children.start(name, cmd, PROJECT_ROOT, env)
        _say(f"starting the Dagster UI at {url} (Ctrl-C stops it)")
        status = _supervise(children, url)
    except _Stop as why:
        _say(f"{why}: stopping the webserver, the daemon and their runs")
    finally:
        # A second Ctrl-C must not cut the shutdown short and leave orphans behind.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        children.stop()  # the daemon first (started last): it launches runs
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status
