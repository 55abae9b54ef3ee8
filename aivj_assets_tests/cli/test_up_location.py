"""``aivj up`` says "ready" only once the code location loaded: a real one whose module raises on
import is reported with its error, and ``aivj up`` stops everything and exits non-zero.

Runs on Windows too (no POSIX call here): there it exercises the real Windows stop."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import psutil
import pytest

from aivj_assets_tests.cli.up_helpers import (
    START_TIMEOUT,
    descendants,
    gone,
    kill_all,
    role,
    start_up,
    up_command,
)
from aivj_assets_tests.loopback import free_port

BROKEN_MODULE = 'raise RuntimeError("coupling defs cannot load (test)")\n'
WORKSPACE = """load_from:
  - python_file:
      relative_path: broken_defs.py
      location_name: broken_location
"""


def _wait_exit_seeing_tree(proc: subprocess.Popen, log: Path, timeout: float) -> tuple[int, dict[psutil.Process, str]]:
    """Wait for ``proc`` to exit; its exit code and every descendant seen meanwhile, with its role."""
    seen: dict[psutil.Process, str] = {}
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        assert "Dagster UI ready" not in log.read_text(), log.read_text()
        assert time.monotonic() < deadline, f"aivj up still running after {timeout}s"
        for p in descendants(proc):
            seen.setdefault(p, role(p))
        time.sleep(0.2)
    return proc.returncode, seen


@pytest.mark.timeout(300)
def test_up_reports_a_code_location_that_fails_to_load_and_exits_non_zero(aivj_env, tmp_path: Path):
    (tmp_path / "broken_defs.py").write_text(BROKEN_MODULE, encoding="utf-8")
    (tmp_path / "workspace.yaml").write_text(WORKSPACE, encoding="utf-8")
    log = tmp_path / "up.log"
    proc = start_up(up_command(free_port(), tmp_path / "workspace.yaml"), log)
    seen: dict[psutil.Process, str] = {}
    try:
        code, seen = _wait_exit_seeing_tree(proc, log, START_TIMEOUT)
    finally:
        kill_all(proc, list(seen))
    text = log.read_text()
    assert code == 1, text
    assert "Dagster UI ready" not in text, text
    assert "code location 'broken_location' failed to load:" in text, text
    assert "RuntimeError: coupling defs cannot load (test)" in text, text  # the message
    assert 'broken_defs.py", line 1, in <module>' in text, text  # the stack's last lines: where
    assert {"webserver", "daemon"} <= set(seen.values()), seen
    assert [p for p in seen if not gone(p)] == [], "aivj up exited before stopping its children"
