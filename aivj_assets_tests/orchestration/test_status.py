"""``aivj status`` reads every source for real and degrades part by part, never crashing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg
import torch

from aivj_assets.ops.control import PauseFlag
from aivj_assets.orchestration.status import format_status
from aivj_assets.registry import Registry
from aivj_assets_tests.builders import register_state

ROOT = Path(__file__).resolve().parents[2]
LABELS = ["paused", "champion", "export", "partitions", "runs", "training", "resources"]


def lines_by_label(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        label, _, rest = line.partition(": ")
        out[label] = rest
    assert list(out) == LABELS, text
    return out


def test_fresh_home_reports_nothing_yet_and_no_instance(aivj_env):
    parts = lines_by_label(format_status(aivj_env))
    assert parts["paused"] == "no"
    assert parts["champion"].startswith("none yet")
    assert parts["export"] == "off (set AIVJ_EXPORT_PATH to the file the app loads)"
    assert parts["partitions"].startswith("none ingested")
    assert parts["runs"].startswith(f"unknown (no Dagster instance at {aivj_env.dagster_home}")
    assert parts["training"] == "no training progress recorded"
    assert "RAM" in parts["resources"] and "disk free" in parts["resources"]


@dg.asset
def tiny_step() -> int:
    return 1


def test_shows_who_paused_the_champion_and_the_last_run(aivj_env, dagster_instance):
    PauseFlag.for_settings(aivj_env).pause(by="telegram")
    registry = Registry(aivj_env.models_dir)
    version = register_state(
        registry,
        {"w": torch.zeros(2)},
        {"stage": "full", "metrics": {}},
    )
    registry.update(version, measured={"elite_accuracy": 0.97, "val_accuracy": 0.93, "f1": 0.92})  # as judged
    registry.promote(version, by="test")
    result = dg.materialize([tiny_step], instance=dagster_instance)

    parts = lines_by_label(format_status(aivj_env))
    assert parts["paused"].startswith("yes (by telegram at ")
    assert parts["champion"].startswith(f"{version} (full, ")
    assert "elite accuracy 0.9700 (gate 0.95)" in parts["champion"]
    assert "validation accuracy 0.9300 (gate 0.90)" in parts["champion"]
    assert "last __ephemeral_asset_job__ SUCCESS started " in parts["runs"]
    assert f"(run {result.run_id[:8]})" in parts["runs"]


def test_each_damaged_source_reads_unknown_and_the_rest_still_shows(aivj_env, dagster_instance):
    aivj_env.models_dir.mkdir(parents=True)
    (aivj_env.models_dir / "model_registry.json").write_text("{not json", encoding="utf-8")
    (aivj_env.dagster_home / "dagster.yaml").write_text("run_launcher: [unclosed\n", encoding="utf-8")

    parts = lines_by_label(format_status(aivj_env))
    assert parts["champion"].startswith("unknown (")
    assert parts["runs"].startswith("unknown (")
    assert parts["paused"] == "no"
    assert "RAM" in parts["resources"]


def test_aivj_status_command_prints_it(aivj_env):
    out = subprocess.run(
        [sys.executable, "-m", "aivj_assets", "status"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    lines_by_label(out.stdout.strip())


def test_training_progress_shows_an_eta_only_while_a_training_run_is_active(aivj_env, dagster_instance):
    from aivj_assets.ops.control import progress_path

    progress_path(aivj_env).parent.mkdir(parents=True, exist_ok=True)
    progress_path(aivj_env).write_text(
        '{"step": 120, "total_steps": 400, "samples": 61440, "eta_seconds": 720, "at": "2026-12-07T02:10:00+00:00"}')
    # The run that wrote it has ended (none is active): the last figures, no ETA.
    assert lines_by_label(format_status(aivj_env))["training"] == (
        "none running (the last run reported step 120/400, 61,440 samples at 2026-12-07T02:10:00+00:00)")
    # A training run is active: its progress, with the ETA.
    job = dg.define_asset_job("nightly_like", selection=[tiny_step]).resolve(
        asset_graph=dg.Definitions(assets=[tiny_step]).resolve_asset_graph())
    run = dagster_instance.create_run_for_job(job_def=job, tags={"aivj/training": "true"})
    dagster_instance.report_dagster_event(dg.DagsterEvent(dg.DagsterEventType.RUN_START.value, job_name=run.job_name),
                                          run_id=run.run_id)
    assert lines_by_label(format_status(aivj_env))["training"] == (
        "step 120/400, 61,440 samples, ETA 12 min (at 2026-12-07T02:10:00+00:00)")


def test_a_pending_export_is_shown_until_it_is_written(aivj_env, tmp_path, monkeypatch):
    from aivj_assets.data import atomic
    from aivj_assets.policy.export import export_champion

    settings = aivj_env.replace(export_path=tmp_path / "app" / "coupling_net_best.pth")
    registry = Registry(settings.models_dir)
    registry.promote(register_state(registry, {"w": torch.ones(2)}, {"stage": "full"}), by="test")

    real_replace = atomic.os.replace

    def held_by_the_app(src, dst):
        if Path(dst) != settings.export_path:
            return real_replace(src, dst)
        raise PermissionError(13, "The process cannot access the file because it is being used", str(dst))

    with monkeypatch.context() as patched:
        patched.setattr(atomic.os, "replace", held_by_the_app)
        assert export_champion(settings, registry, lambda *a: None, retry_seconds=0).status == "pending"
    line = lines_by_label(format_status(settings))["export"]
    assert line.startswith(f"PENDING: champion {registry.champion()['version']} not yet written to "
                           f"{settings.export_path} since ")
    assert "PermissionError" in line
    export_champion(settings, registry, lambda *a: None)
    assert lines_by_label(format_status(settings))["export"] == str(settings.export_path)
