"""``aivj demo`` on small data: a promoted champion, DESIGN's files in place, and a rerun that reuses."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from aivj_assets.orchestration.status import format_status
from aivj_assets.policy.importance import importance_for_version
from aivj_assets.registry import Registry
from aivj_assets.settings import load_settings
from aivj_assets.training.model import file_sha256

ROOT = Path(__file__).resolve().parents[2]

# Small enough for CI's 2 cores, still learning the demo function past the gates.
SMALL_TRAINING = {
    "AIVJ_HIDDEN_DIM": "64",
    "AIVJ_EMBED_DIM": "32",
    "AIVJ_WARMUP_EPOCHS": "2",
    "AIVJ_FULL_EPOCHS": "8",
    "AIVJ_BATCH_SIZE": "128",
    "AIVJ_LEARNING_RATE": "0.003",
    "AIVJ_CHECKPOINT_EVERY": "100",
    "OMP_NUM_THREADS": "1",
}
SMALL_DEMO = ["--pairs", "8000", "--elite", "400", "--seed", "0"]


def aivj_demo() -> subprocess.CompletedProcess:
    """The real command, as the owner types it, on the test's temporary tree."""
    return subprocess.run([sys.executable, "-m", "aivj_assets", "demo", *SMALL_DEMO], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def design_files_in_place(settings) -> str:
    """Assert DESIGN's on-disk table for a home with one champion; return the champion version."""
    registry = Registry(settings.models_dir)
    champion = registry.champion()
    assert champion is not None and champion["status"] == "promoted"
    version = champion["version"]
    assert re.fullmatch(r"v\d+_[0-9a-f]{4}", version)
    # models/latest -> the champion's complete version; coupling_net_best.pth holds its weights.
    assert registry.latest_version() == version
    weights = registry.weights_path(version)
    assert (settings.models_dir / version / "meta.json").is_file()
    assert file_sha256(settings.models_dir / "coupling_net_best.pth") == file_sha256(weights)
    with (settings.models_dir / "versions.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert {"ver", "time", "data_hash", "model_hash", "cmd_line", "status"} <= set(rows[0])
    assert any(r["ver"] == version and r["status"] == "promoted" for r in rows)
    doc = json.loads((settings.models_dir / "model_registry.json").read_text(encoding="utf-8"))
    assert doc["champion"] == version
    report = json.loads(settings.report_path.read_text(encoding="utf-8"))
    assert report["model_performance"]["cv_accuracy"] >= settings.val_min_accuracy
    assert "f1_score" in report["model_performance"]
    # Checkpoints, the store and the ingest ledger.
    assert list(settings.checkpoints_dir.rglob("step_*.pth")) and list(settings.checkpoints_dir.rglob("train_state.json"))
    assert len(list((settings.store_dir / "raw_pairs").glob("*.parquet"))) == 6
    assert (settings.store_dir / "elite_set.parquet").is_file()
    assert json.loads((settings.store_dir / "lineage.json").read_text())["audio_dim"] > 0
    assert (settings.data_dir / ".last_seen").is_file()
    ledger = (settings.data_dir / "processed_hashes.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(ledger) >= 6
    return version


@pytest.mark.timeout(600)
def test_demo_promotes_a_champion_leaves_designs_files_and_a_rerun_reuses_them(aivj_env, monkeypatch):
    for key, value in SMALL_TRAINING.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()

    first = aivj_demo()
    assert first.returncode == 0, first.stdout + first.stderr
    version = design_files_in_place(settings)
    out = first.stdout
    assert "aivj demo: promoted in " in out
    assert f"champion: {version} (full stage)" in out
    assert re.search(r"elite accuracy \(held-out judging part\) [01]\.\d{4}  gate >= 0\.95", out), out
    assert re.search(r"validation accuracy \(gate rows\)\s+[01]\.\d{4}  gate >= 0\.90  \(\d+ rows\)", out), out
    assert str(settings.models_dir / "coupling_net_best.pth") in out and "aivj up" in out

    # The whole training ran through Dagster on the persistent instance in DAGSTER_HOME.
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs(filters=dg.RunsFilter(job_name="full_training"))
        assert [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS]
        for key in ("elite_set", "warmed_model", "full_model", "promoted_model"):
            assert instance.get_latest_materialization_event(dg.AssetKey(key)) is not None, key
        assert len(instance.get_materialized_partitions(dg.AssetKey("raw_pairs"))) == 6
        ingest_runs = len(instance.get_runs())

    # Again: nothing generated, ingested or trained; the champion stands and it says so.
    versions_before = [e["version"] for e in Registry(settings.models_dir).entries()]
    ledger_before = (settings.data_dir / "processed_hashes.jsonl").read_bytes()
    second = aivj_demo()
    assert second.returncode == 0, second.stdout + second.stderr
    assert "using the data already in" in second.stdout
    assert "no new data files; nothing to ingest" in second.stdout
    assert f"champion {version} exists; nothing to retrain" in second.stdout
    assert "aivj demo: up_to_date in " in second.stdout
    assert [e["version"] for e in Registry(settings.models_dir).entries()] == versions_before
    assert (settings.data_dir / "processed_hashes.jsonl").read_bytes() == ledger_before
    with dg.DagsterInstance.get() as instance:
        assert len(instance.get_runs(filters=dg.RunsFilter(job_name="full_training"))) == 1
        assert len(instance.get_runs()) <= ingest_runs + 1  # at most the elite_set refresh

    # What the owner sees next: status, and which features the champion relies on.
    status = format_status(settings)
    assert f"champion: {version} (full, " in status
    assert "partitions: 6 ingested" in status
    assert "runs: last " in status
    top = importance_for_version(settings, version, top=5)
    assert len(top) == 5 and all(re.fullmatch(r"(audio|preset)\[\d+\]", name) for name, _ in top)
    assert top[0][1] > 0.0, "a model past the gates must rely on some feature"


@pytest.mark.timeout(600)
def test_a_rerun_after_a_rejection_reports_the_rejection_again_not_a_failure(aivj_env, monkeypatch):
    from aivj_assets.cli.tour import tour

    for key, value in {**SMALL_TRAINING, "AIVJ_FULL_EPOCHS": "1", "AIVJ_VAL_MIN_ACCURACY": "0.999"}.items():
        monkeypatch.setenv(key, value)  # one epoch cannot reach 99.9%: the candidate is rejected
    settings = load_settings()
    first = tour(settings, pairs=3000, elite=300, seed=0)
    assert first.outcome == "rejected" and first.champion is None
    # Again: the full stage reuses the rejected version (same recipe) and judges it in this run.
    second = tour(settings, pairs=3000, elite=300, seed=0)
    assert second.outcome == "rejected" and second.run_id != first.run_id
    assert [c["version"] for c in second.candidates] == [c["version"] for c in first.candidates
                                                         if c.get("stage") == "full"]
