"""``aivj up``: a real webserver and daemon on a temporary instance, a real training run launched
through the UI, and nothing of it left running however ``aivj up`` ends."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter

import psutil
import pytest

from aivj_assets.cli.process_tree import KILL_WAIT_SECONDS
from aivj_assets.cli.up import STOP_GRACE_SECONDS
from aivj_assets.ops.control import read_progress
from aivj_assets.settings import Settings, load_settings
from aivj_assets_tests.builders import TRAINING_ENV, ingest_plainly, write_base_corpus
from aivj_assets_tests.cli.up_helpers import (
    START_TIMEOUT,
    answers,
    descendants,
    gone,
    graphql,
    kill_all,
    launch_warm_up,
    role,
    up_running,
    wait_for_text,
    wait_gone,
)
from aivj_assets_tests.processes import POSIX_ONLY

pytestmark = POSIX_ONLY

INSTIGATORS_QUERY = """{ repositoriesOrError { ... on RepositoryConnection { nodes {
  sensors { name sensorState { status } } schedules { name scheduleState { status } } } } } }"""

ENDINGS = {
    "ctrl-c": lambda proc: os.killpg(proc.pid, signal.SIGINT),  # a terminal signals its foreground group
    "sigterm": lambda proc: proc.terminate(),
    "sigkill": lambda proc: proc.kill(),  # no chance to stop anything itself
}


def kill_up(proc: subprocess.Popen, seen: dict[str, psutil.Process]) -> None:
    """Kill ``aivj up`` and everything it started: how other modules' fixtures end theirs."""
    kill_all(proc, list(seen.values()))


def _instigator_states(port: int) -> dict[str, str]:
    """Every sensor's and schedule's status, as the webserver's GraphQL API reports it."""
    states = {}
    for repo in graphql(port, INSTIGATORS_QUERY)["repositoriesOrError"]["nodes"]:
        states.update({s["name"]: s["sensorState"]["status"] for s in repo["sensors"]})
        states.update({s["name"]: s["scheduleState"]["status"] for s in repo["schedules"]})
    return states


@pytest.fixture
def long_training(aivj_env, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Stored data and settings (read by the run worker, from the environment) for a warm-up of
    100,000 epochs: hours of training, still running whenever the test ends ``aivj up``."""
    for key, value in {**TRAINING_ENV, "AIVJ_WARMUP_EPOCHS": "100000"}.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    write_base_corpus(settings, pairs=2000, elite=300)
    ingest_plainly(settings)
    return settings


def _tree_mid_training(settings: Settings, proc, log) -> list[psutil.Process]:
    """Wait until the run worker has trained a step; then every process ``aivj up`` started."""
    deadline = time.monotonic() + START_TIMEOUT
    while (read_progress(settings).get("step") or 0) < 1:
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"no training step in {START_TIMEOUT}s:\n{log.read_text()}"
        time.sleep(0.5)
    return descendants(proc)


@pytest.mark.parametrize("ending", list(ENDINGS))
@pytest.mark.timeout(400)
def test_up_serves_the_platform_and_leaves_nothing_running_however_it_ends(long_training, tmp_path, ending):
    with up_running(tmp_path) as up:
        # The instance it serves is the project's, created from the template.
        assert (long_training.dagster_home / "dagster.yaml").is_file()
        wait_for_text(up.log, f"Dagster UI ready at http://127.0.0.1:{up.port}", up.proc, 60)
        # Sensors and the schedule are on: the UI shows them running under this daemon.
        states = _instigator_states(up.port)
        assert "nightly_training" in states and "resource_watch" in states, states
        assert set(states.values()) == {"RUNNING"}, states

        launch_warm_up(up.port)
        up.seen.extend(_tree_mid_training(long_training, up.proc, up.log))
        roles = Counter(role(p) for p in up.seen)
        assert roles["webserver"] == roles["daemon"] == 1 and roles["code server"] >= 2, roles
        assert roles["run worker"] >= 1, roles

        ENDINGS[ending](up.proc)
        code = up.proc.wait(timeout=STOP_GRACE_SECONDS + KILL_WAIT_SECONDS + 60)
        if ending == "sigkill":  # the OS and the guardian stop the tree once aivj up is dead
            left = wait_gone(up.seen, STOP_GRACE_SECONDS + KILL_WAIT_SECONDS + 30)
        else:  # aivj up itself stopped the whole tree before it exited
            left = [p for p in up.seen if not gone(p)]
            assert code == 0, up.log.read_text()
            assert "did not stop" not in up.log.read_text(), "everything should stop on the grace signal, unkilled"
        assert not left, {p.pid: role(p) for p in left}
        assert not answers(f"http://127.0.0.1:{up.port}/server_info")


@pytest.mark.timeout(300)
def test_up_reports_a_child_that_dies_and_stops_everything_else(aivj_env, tmp_path):
    with up_running(tmp_path) as up:
        up.seen.extend(descendants(up.proc))
        up.children["webserver"].kill()  # SIGKILL: the webserver dies on its own, its code server orphaned
        code = up.proc.wait(timeout=STOP_GRACE_SECONDS + KILL_WAIT_SECONDS + 60)
        assert code != 0
        text = up.log.read_text()
        assert "dagster-webserver exited with code -9" in text, text
        left = [p for p in up.seen if not gone(p)]
        assert not left, {p.pid: role(p) for p in left}  # the daemon, and both code servers
