"""A real ``aivj up`` in tests: start it, wait for it, launch a training through its UI, clean up."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from aivj_assets_tests.loopback import free_port
from aivj_assets_tests.processes import kill_tree, spawn

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 240.0  # generous: CI machines are small and shared


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def up_command(port: int, workspace: Path | None = None) -> list[str]:
    """``aivj up`` on ``port``; with ``workspace``, ``run_up`` on that workspace file instead of the
    project's (the command line offers no such option)."""
    if workspace is None:
        return [sys.executable, "-m", "aivj_assets", "up", "--port", str(port)]
    code = ("import sys; from pathlib import Path; from aivj_assets.cli.up import run_up; "
            "from aivj_assets.settings import load_settings; "
            f"sys.exit(run_up(load_settings(), port={port}, workspace=Path({str(workspace)!r})))")
    return [sys.executable, "-c", code]


def start_up(cmd: list[str], log: Path) -> subprocess.Popen:
    # Its own group: the test can signal it as a terminal would, and kill what is left.
    return spawn(cmd, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT)


def descendants(proc: subprocess.Popen | psutil.Process) -> list[psutil.Process]:
    try:
        return psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def role(p: psutil.Process) -> str:
    """What a process of ``aivj up``'s tree is, from its command line."""
    try:
        cmd = " ".join(p.cmdline())
    except psutil.Error:
        return "gone"
    for needle, name in (("dagster_webserver", "webserver"), ("api grpc", "code server"),
                         ("spawn_main", "run worker"), ("aivj_assets.cli.process_tree", "guardian"),
                         ("daemon", "daemon")):
        if needle in cmd:
            return name
    return "other"


def children_by_role(proc: subprocess.Popen) -> dict[str, psutil.Process]:
    """The up process's webserver and daemon."""
    return {role(c): c for c in descendants(proc) if role(c) in ("webserver", "daemon")}


def wait_running(proc: subprocess.Popen, port: int, log: Path) -> dict[str, psutil.Process]:
    """Wait for the UI to answer and the daemon to heartbeat into the temporary instance."""
    import dagster as dg

    deadline = time.monotonic() + START_TIMEOUT
    while not answers(f"http://127.0.0.1:{port}/server_info"):
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"no UI in {START_TIMEOUT}s:\n{log.read_text()}"
        time.sleep(0.5)
    # Opened only now: `aivj up` itself must have installed the instance's dagster.yaml.
    with dg.DagsterInstance.get() as instance:
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            if instance.get_daemon_heartbeats():
                children = children_by_role(proc)
                assert set(children) == {"webserver", "daemon"}, children
                return children
            time.sleep(0.5)
    raise AssertionError(f"aivj up did not come up in {START_TIMEOUT}s:\n{log.read_text()}")


def wait_for_text(log: Path, text: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"no {text!r} in {timeout}s:\n{log.read_text()}"
        time.sleep(0.5)


def gone(p: psutil.Process) -> bool:
    try:
        return not p.is_running() or p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Those of ``procs`` still running after ``timeout`` seconds (polled)."""
    deadline = time.monotonic() + timeout
    left = [p for p in procs if not gone(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = [p for p in left if not gone(p)]
    return left


def kill_all(proc: subprocess.Popen, seen: list[psutil.Process]) -> None:
    """Kill ``aivj up``, everything it started and whatever of ``seen`` is left (orphans of an
    ``aivj up`` that died first): a failed test's leftovers."""
    for p in seen:
        try:
            p.kill()
        except psutil.Error:
            pass
    kill_tree(proc)


@dataclass
class Up:
    """A running ``aivj up``: its process, port, log, webserver and daemon, and every other
    process a test saw it start (killed with it if the test fails)."""

    proc: subprocess.Popen
    port: int
    log: Path
    children: dict[str, psutil.Process] = field(default_factory=dict)
    seen: list[psutil.Process] = field(default_factory=list)


@contextmanager
def up_running(tmp_path: Path) -> Iterator[Up]:
    """``aivj up`` started and running (UI answering, daemon beating); killed whatever happens."""
    port = free_port()
    log = tmp_path / "up.log"
    up = Up(start_up(up_command(port), log), port, log)
    try:
        up.children.update(wait_running(up.proc, port, log))
        yield up
    finally:
        kill_all(up.proc, [*up.children.values(), *up.seen])


def graphql(port: int, query: str, variables: dict | None = None) -> dict:
    """The webserver's answer to a GraphQL query (errors fail the test)."""
    import requests

    body = requests.post(f"http://127.0.0.1:{port}/graphql", json={"query": query, "variables": variables or {}},
                         timeout=60).json()
    assert "errors" not in body, body
    return body["data"]


LAUNCH = """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename
  ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""


def launch_warm_up(port: int) -> str:
    """Launch the full_training job's warm-up through the UI, as the owner's click would; its run id."""
    params = {"selector": {"repositoryLocationName": "aivj_assets", "repositoryName": "__repository__",
                           "jobName": "full_training", "assetSelection": [{"path": ["warmed_model"]}]},
              "runConfigData": {}}
    result = graphql(port, LAUNCH, {"p": params})["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return result["run"]["runId"]
