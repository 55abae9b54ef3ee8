"""A real failing run on a real instance: the daemon retries it 3 times, then one alert."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
from dagster._core.scheduler.instigation import TickStatus

from aivj_assets.orchestration.instance import ensure_instance
from aivj_assets_tests.loopback import TOKEN, BotApi, telegram_env
from aivj_assets_tests.processes import kill_tree, script, spawn

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BIN = Path(sys.executable).parent


def _wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen, log: Path):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            raise AssertionError(f"dagster-daemon exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        time.sleep(1.0)
    raise AssertionError(f"timed out waiting for {what}; daemon log tail:\n{log.read_text()[-3000:]}")


def test_failing_run_is_retried_three_times_then_alerted_once(aivj_env, tmp_path, monkeypatch) -> None:
    api = BotApi(TOKEN)
    telegram_env(monkeypatch, api)
    ensure_instance(aivj_env)  # the project's dagster.yaml: run retries 3, queued coordinator
    with dg.DagsterInstance.get():  # create the SQLite storage before two processes race to do it
        pass
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        "load_from:\n  - python_file:\n"
        f"      relative_path: {HERE / 'retry_workspace' / 'doomed_defs.py'}\n"
        f"      working_directory: {ROOT}\n"
        "      location_name: retry_test\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DAGSTER_HOME": str(aivj_env.dagster_home)}
    log = tmp_path / "daemon.log"
    with open(log, "wb") as out:
        daemon = spawn([script("dagster-daemon"), "run", "-w", str(workspace)], env=env, stdout=out,
                       stderr=subprocess.STDOUT)
    try:
        launch = subprocess.run([script("dagster"), "job", "launch", "-w", str(workspace), "-j", "doomed"],
                                env=env, capture_output=True, text=True, timeout=120)
        assert launch.returncode == 0, launch.stderr[-3000:]
        with dg.DagsterInstance.get() as instance:
            def all_failed():
                runs = instance.get_runs(dg.RunsFilter(job_name="doomed"))
                # Dagster stores a failed run's status first and its will_retry tag just after.
                done = [r for r in runs if r.status == dg.DagsterRunStatus.FAILURE and "dagster/will_retry" in r.tags]
                return runs if len(runs) == 4 and len(done) == 4 else None

            runs = _wait_for(all_failed, 240, "the first run and its 3 retries to fail", daemon, log)
            assert sorted(int(r.tags.get("dagster/retry_number", 0)) for r in runs) == [0, 1, 2, 3]
            [first] = [r for r in runs if "dagster/retry_number" not in r.tags]
            assert {r.root_run_id or r.run_id for r in runs} == {first.run_id}  # one run group
            last = max(runs, key=lambda r: int(r.tags.get("dagster/retry_number", 0)))
            assert last.tags["dagster/will_retry"] == "false"

            texts = _wait_for(api.texts, 120, "the failure alert", daemon, log)
            # Let the sensor tick again after the alert: it must not repeat itself.
            state = next(s for s in instance.all_instigator_state() if s.instigator_name == "run_failure_alert")

            def finished_ticks() -> int:
                ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=100)
                return sum(t.status != TickStatus.STARTED for t in ticks)

            seen = finished_ticks()
            _wait_for(lambda: finished_ticks() > seen, 120, "one more finished sensor tick", daemon, log)
        assert len(api.texts()) == 1, api.texts()
        [text] = texts
        assert text.startswith(f"[AIVJ] Run doomed ({last.run_id[:8]}) failed for good after 3 retries: ")
        assert "always_fails: RuntimeError: disk on fire (test)" in text
        assert f"{aivj_env.dagster_home / 'storage' / last.run_id / 'compute_logs'}" in text
    finally:
        kill_tree(daemon)  # the daemon, its code server and any run worker
        api.close()


def test_instance_template_queues_training_one_at_a_time(aivj_env) -> None:
    home = ensure_instance(aivj_env)
    assert (home / "dagster.yaml").read_text() == (ROOT / "dagster.yaml").read_text()
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        queue = instance.run_coordinator.get_run_queue_config()
        assert queue.tag_concurrency_limits == [{"key": "aivj/training", "limit": 1}]
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 3
        assert instance.run_monitoring_enabled
    # An owner's own dagster.yaml is never overwritten.
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    ensure_instance(aivj_env)
    assert (home / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"
