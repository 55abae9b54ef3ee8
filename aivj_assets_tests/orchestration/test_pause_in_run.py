"""A pause during a real run checkpoints, waits, and goes on from the checkpoint in the same run."""

from __future__ import annotations

import threading
import time

import dagster as dg
import pytest

from aivj_assets.ops.control import PauseFlag
from aivj_assets.registry import Registry
from aivj_assets_tests.builders import write_base_corpus, write_new_file
from aivj_assets_tests.orchestration.helpers import ingest, materialisations, run_job, small_model_settings


@pytest.mark.timeout(300)
def test_paused_run_waits_then_finishes_from_its_checkpoint(aivj_env, dagster_instance, monkeypatch) -> None:
    settings = small_model_settings(monkeypatch)
    write_base_corpus(settings, pairs=3000, elite=300)
    ingest(settings, dagster_instance)
    flag = PauseFlag.for_settings(settings)
    flag.pause(by="telegram:owner")  # paused before the run: the loop checkpoints at its first poll

    seen_waiting = threading.Event()

    def owner_resumes_later() -> None:
        # Resume only once the stage has checkpointed and is waiting: the checkpoint dir exists.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if any((settings.checkpoints_dir / "warmup").glob("step_*.pth")):
                seen_waiting.set()
                time.sleep(1.0)
                flag.resume(by="telegram:owner")
                return
            time.sleep(0.2)

    resumer = threading.Thread(target=owner_resumes_later, daemon=True)
    resumer.start()
    result = run_job(dagster_instance, "full_training", asset_selection=[dg.AssetKey("elite_set"), dg.AssetKey("warmed_model")])
    resumer.join(timeout=5)

    assert seen_waiting.is_set(), "the paused stage never checkpointed"
    assert result.success
    warmed = materialisations(result)["warmed_model"]
    assert warmed["resumed_from"].startswith("step_")  # went on from the pause's checkpoint
    assert Registry(settings.models_dir).meta(warmed["version"])["stage"] == "warmup"
    assert flag.state().paused is False



@pytest.mark.timeout(300)
def test_a_full_training_stopped_by_the_window_goes_on_after_new_data_arrived(aivj_env, dagster_instance,
                                                                             monkeypatch) -> None:
    from aivj_assets.policy.stages import train_full

    settings = small_model_settings(monkeypatch)
    write_base_corpus(settings, pairs=3000, elite=300)
    seq = ingest(settings, dagster_instance)
    result = run_job(dagster_instance, "full_training", asset_selection=[dg.AssetKey("elite_set"), dg.AssetKey("warmed_model")])
    warm = materialisations(result)["warmed_model"]["version"]
    registry = Registry(settings.models_dir)

    polls = []

    def window_closes(progress: dict) -> str:  # the deadline passes at the loop's second poll
        polls.append(progress)
        return "stop" if len(polls) >= 2 else "continue"

    first = train_full(settings, registry, warm, control=window_closes)
    assert first.status == "stopped" and first.version is None and first.checkpoint.startswith("step_")
    stopped_at = first.checkpoint

    # During the day a new file arrives: the next night goes on from the checkpoint (new rows
    # join at the next epoch) instead of starting the full training again.
    write_new_file(settings, "during_the_day", 500, seed=9)
    seq = ingest(settings, dagster_instance, seq)
    logged: list[str] = []
    second = train_full(settings, registry, warm, log=logged.append)
    assert second.status == "finished" and second.resumed_from == stopped_at
    # Scores on other validation rows are not compared with the new ones, and an epoch cut off
    # mid-way starts again on the current rows, so every recorded partition was trained on.
    assert "data changed since the checkpoint: the best epoch is chosen again on the current data" in logged
    assert len(second.history) == settings.full_epochs
    assert any(k.startswith("during_the_day") for k in registry.meta(second.version)["data_partitions"])

    # Finished on that data, its checkpoints are not resumed for other data: more data later
    # trains afresh rather than handing back the finished model.
    write_new_file(settings, "next_day", 500, seed=10)
    ingest(settings, dagster_instance, seq)
    third = train_full(settings, registry, warm)
    assert third.status == "finished" and third.resumed_from is None and third.version != second.version
