"""``aivj up``: a real webserver and daemon on a temporary instance, stopped cleanly or on a crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from aivj_assets_tests.loopback import free_port

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 240.0  # generous: CI machines are small and shared


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _children(proc: subprocess.Popen) -> dict[str, psutil.Process]:
    """The up process's two direct children, by role."""
    out = {}
    for child in psutil.Process(proc.pid).children():
        cmd = " ".join(child.cmdline())
        if "dagster_webserver" in cmd:
            out["webserver"] = child
        elif "daemon" in cmd:
            out["daemon"] = child
    return out


def _start_up(port: int, log: Path) -> subprocess.Popen:
    # Its own session: the test can kill everything it started whatever happens.
    return subprocess.Popen(
        [sys.executable, "-m", "aivj_assets", "up", "--port", str(port)],
        cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )


def _wait_running(proc: subprocess.Popen, port: int, log: Path) -> dict[str, psutil.Process]:
    """Wait for the UI to answer and the daemon to heartbeat into the temporary instance."""
    import dagster as dg

    deadline = time.monotonic() + START_TIMEOUT
    while not _answers(f"http://127.0.0.1:{port}/server_info"):
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"no UI in {START_TIMEOUT}s:\n{log.read_text()}"
        time.sleep(0.5)
    # Opened only now: `aivj up` itself must have installed the instance's dagster.yaml.
    with dg.DagsterInstance.get() as instance:
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            if instance.get_daemon_heartbeats():
                children = _children(proc)
                assert set(children) == {"webserver", "daemon"}, children
                return children
            time.sleep(0.5)
    raise AssertionError(f"aivj up did not come up in {START_TIMEOUT}s:\n{log.read_text()}")


INSTIGATORS_QUERY = """{ repositoriesOrError { ... on RepositoryConnection { nodes {
  sensors { name sensorState { status } } schedules { name scheduleState { status } } } } } }"""


def _instigator_states(port: int) -> dict[str, str]:
    """Every sensor's and schedule's status, as the webserver's GraphQL API reports it."""
    import requests

    body = requests.post(f"http://127.0.0.1:{port}/graphql", json={"query": INSTIGATORS_QUERY}, timeout=60).json()
    assert "errors" not in body, body
    states = {}
    for repo in body["data"]["repositoriesOrError"]["nodes"]:
        states.update({s["name"]: s["sensorState"]["status"] for s in repo["sensors"]})
        states.update({s["name"]: s["scheduleState"]["status"] for s in repo["schedules"]})
    return states


def kill_up(proc: subprocess.Popen, seen: dict[str, psutil.Process]) -> None:
    """Kill ``aivj up`` and its children's process groups (they run in sessions of their own)."""
    pids = {p.pid for p in seen.values()} | {p.pid for p in _children_safe(proc)}
    for pid in [proc.pid, *pids]:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    proc.wait(timeout=30)


def _gone(p: psutil.Process) -> bool:
    try:
        return p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@contextmanager
def _up_running(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, int, Path, dict[str, psutil.Process]]]:
    """``aivj up`` started and running (UI answering, daemon beating); killed whatever happens."""
    port = free_port()
    log = tmp_path / "up.log"
    proc = _start_up(port, log)
    children: dict[str, psutil.Process] = {}
    try:
        children.update(_wait_running(proc, port, log))
        yield proc, port, log, children
    finally:
        kill_up(proc, children)


@pytest.mark.timeout(300)
def test_up_serves_the_ui_runs_the_daemon_and_stops_both_on_sigterm(aivj_env, tmp_path):
    with _up_running(tmp_path) as (proc, port, log, children):
        # The instance it serves is the project's, created from the template.
        assert (aivj_env.dagster_home / "dagster.yaml").is_file()
        deadline = time.monotonic() + 30
        while "ready at" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert f"Dagster UI ready at http://127.0.0.1:{port}" in log.read_text()

        # Sensors and the schedule are on: the UI shows them running under this daemon.
        states = _instigator_states(port)
        assert "nightly_training" in states and "resource_watch" in states, states
        assert set(states.values()) == {"RUNNING"}, states

        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
        for child in children.values():
            assert _gone(child), child
        assert not _answers(f"http://127.0.0.1:{port}/server_info")
        assert "did not stop" not in log.read_text(), "both children should stop on SIGTERM, unkilled"


def _children_safe(proc: subprocess.Popen) -> list[psutil.Process]:
    try:
        return psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@pytest.mark.timeout(300)
def test_up_reports_a_child_that_dies_and_stops_the_other(aivj_env, tmp_path):
    with _up_running(tmp_path) as (proc, port, log, children):
        children["webserver"].kill()  # SIGKILL: the webserver dies on its own
        code = proc.wait(timeout=60)
        assert code != 0
        text = log.read_text()
        assert "dagster-webserver exited with code -9" in text, text
        assert _gone(children["daemon"]), "the daemon must not outlive the webserver"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
@pytest.mark.timeout(300)
def test_children_stop_when_up_itself_is_killed_outright(aivj_env, tmp_path):
    """SIGKILL leaves `aivj up` no chance to stop its children: the OS tells them instead."""
    with _up_running(tmp_path) as (proc, port, log, children):
        proc.kill()  # only aivj up itself; its children run in sessions of their own
        proc.wait(timeout=30)
        deadline = time.monotonic() + 90
        while not all(_gone(c) for c in children.values()) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert all(_gone(c) for c in children.values()), {k: c.status() for k, c in children.items() if not _gone(c)}
        assert not _answers(f"http://127.0.0.1:{port}/server_info")
