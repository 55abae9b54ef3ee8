"""The real dagster-daemon on this project's workspace.yaml ingests dropped files by itself,
and a kill -9 of the daemon (and every run it launched) loses no file and duplicates none."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq

from aivj_assets.data.ledger import Ledger
from aivj_assets.orchestration.instance import ensure_instance
from aivj_assets_tests.builders import rows, write_jsonl, write_parquet
from aivj_assets_tests.processes import kill_tree, script, spawn

REPO = Path(__file__).resolve().parents[2]
DAEMON = script("dagster-daemon")


def _start(log: Path) -> subprocess.Popen:
    env = dict(os.environ, AIVJ_SENSOR_INTERVAL_SECONDS="1", AIVJ_SETTLE_SECONDS="1", PYTHONUNBUFFERED="1")
    return spawn([DAEMON, "run", "-w", str(REPO / "workspace.yaml")], cwd=REPO, env=env, stdout=log.open("ab"),
                 stderr=subprocess.STDOUT)


def _kill(proc: subprocess.Popen) -> None:
    """Kill the daemon, its code server and every run worker it started, at once."""
    kill_tree(proc)


def _wait(predicate, timeout: float, what: str, log: Path) -> None:
    started = time.monotonic()
    deadline = started + timeout
    while time.monotonic() < deadline:
        if predicate():
            print(f"{what}: {time.monotonic() - started:.1f} s")
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; daemon log tail:\n{log.read_text()[-3000:]}")


def test_daemon_ingests_exactly_once_across_kill_9(aivj_env, tmp_path):
    ensure_instance(aivj_env)
    data = aivj_env.data_dir
    log = tmp_path / "daemon.log"
    a = write_jsonl(data / "drop" / "a.jsonl", rows(30, seed=1))
    write_parquet(data / "b file.parquet", rows(30, seed=2))
    instance = dg.DagsterInstance.get()
    daemon = _start(log)
    try:
        # Kill everything as soon as a run is on its way: mid-run, mid-tick or between.
        _wait(lambda: any(r.status == dg.DagsterRunStatus.STARTED for r in instance.get_runs()), 120,
              "a run to start", log)
        _kill(daemon)
        # While it is down: a copy of a (a duplicate) and a file that arrives slowly.
        shutil.copy2(a, data / "a_copy.jsonl")
        slow = data / "drop" / "c.jsonl"
        text = "\n".join(json.dumps(r) for r in rows(30, seed=3)) + "\n"
        with slow.open("w") as f:
            f.write(text[: len(text) // 2])
            f.flush()
            daemon = _start(log)
            time.sleep(1.5)
            f.write(text[len(text) // 2 :])
        expected_prefixes = {"a-", "b_file-", "c-"}

        def all_materialised() -> bool:
            done = instance.get_materialized_partitions(dg.AssetKey("raw_pairs"))
            return {k.rsplit("-", 1)[0] + "-" for k in done} == expected_prefixes

        try:
            _wait(all_materialised, 150, "every file to be materialised", log)
        except AssertionError:
            for run in instance.get_runs():
                print(run.run_id, run.status, run.tags.get("dagster/run_key"))
                for rec in instance.get_records_for_run(run.run_id).records:
                    e = rec.event_log_entry
                    print("   ", e.dagster_event_type, (e.dagster_event.message if e.dagster_event else "")[:90])
            raise
    finally:
        _kill(daemon)
    partitions = instance.get_dynamic_partitions("data_files")
    assert sorted(k.rsplit("-", 1)[0] + "-" for k in partitions) == sorted(expected_prefixes)  # none twice
    ledger = Ledger(aivj_env).load()
    owners = [e for e in ledger if e["status"] != "duplicate"]
    assert sorted(e["partition"] for e in owners) == sorted(partitions)
    assert [e["path"] for e in ledger if e["status"] == "duplicate"] == ["a_copy.jsonl"]
    c_key = next(k for k in partitions if k.startswith("c-"))
    assert instance.get_latest_materialization_event(dg.AssetKey("raw_pairs")) is not None
    stored = pq.read_table(aivj_env.store_dir / "raw_pairs" / f"{c_key}.parquet")
    assert stored.num_rows == 30  # the slow file was taken whole, after it settled
