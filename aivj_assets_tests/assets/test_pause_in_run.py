"""A pause during a real run checkpoints, waits, and goes on from the checkpoint in the same run."""

from __future__ import annotations

import threading
import time

import dagster as dg
import pytest

from aivj_assets.registry import Registry
from aivj_assets.resources.control import PauseFlag
from aivj_assets_tests.assets.corpus import (
    ingest,
    materialisations,
    run_job,
    small_model_settings,
    write_base_corpus,
)


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

