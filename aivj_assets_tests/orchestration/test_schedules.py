"""nightly_training: the plan (full / incremental / skip with a reason) and the runs it requests."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
import torch

from aivj_assets.data.contract import PAIR_SCHEMA
from aivj_assets.data.store import Store
from aivj_assets.ops.control import PauseFlag
from aivj_assets.orchestration.schedules import build_nightly_schedule
from aivj_assets.orchestration.tags import DEADLINE as DEADLINE_TAG
from aivj_assets.policy.nightly import TrainingFacts, plan_nightly, read_facts
from aivj_assets.policy.recipes import new_partitions
from aivj_assets.registry import Registry
from aivj_assets_tests.builders import register_state

NOW = datetime(2026, 3, 10, 2, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


def _facts(**kw) -> TrainingFacts:
    base = dict(paused_by=None, stored=["a", "b"], champion="v1", champion_partitions=["a", "b"],
                last_full_at=NOW - timedelta(days=1), last_improvement=0.02)
    return TrainingFacts(**{**base, **kw})


def _plan(**kw):
    return plan_nightly(_facts(**kw), NOW, full_every_days=7, min_improvement=0.005)


def test_new_partitions_are_the_ones_the_champion_never_saw() -> None:
    assert new_partitions({"c", "a", "b"}, ["a"]) == ["b", "c"]
    assert new_partitions(["a"], ["a", "gone"]) == []


@pytest.mark.parametrize(("facts", "job", "reason"), [
    ({"champion": None, "champion_partitions": []}, "full_training", "no champion yet"),
    ({"last_full_at": NOW - timedelta(days=7)}, "full_training", "last full training 7 days ago (every 7 days)"),
    ({"last_full_at": None}, "full_training", "champion v1 has no full training behind it"),
    ({"stored": ["a", "b", "c", "d", "e", "f"]}, "incremental_training", "4 new partitions since v1: c, d, e, ..."),
    ({"stored": ["a", "b", "c"], "incremental_done": ("v2", "rolled_back")}, None,
     "1 new partition(s) since v1, already trained as v2 (rolled_back): waiting for more data; "
     "launch incremental_training to judge it again"),
    ({"stored": ["a", "b", "c"], "incremental_done": ("v2", "rejected"), "last_full_at": NOW - timedelta(days=8)},
     "full_training", "last full training 8 days ago (every 7 days)"),
    ({"last_improvement": 0.004}, None, "nothing new since v1 and the last improvement was +0.40% (< 0.5%)"),
    ({"last_improvement": -0.01}, None, "nothing new since v1 and the last improvement was -1.00% (< 0.5%)"),
    ({"last_improvement": 0.006}, "full_training", "no new data, but the last training improved by +0.60%: train again"),
    ({"last_improvement": 0.02, "rolled_back": "v2"}, None,
     "nothing new since v1; the last training, v2, was rolled back: waiting for new data"),
    ({"stored": ["a", "b", "c"], "rolled_back": "v2"}, "incremental_training", "1 new partitions since v1: c"),
    ({"stored": ["a", "b", "c"], "new_training_rows": 0}, None,
     "1 new partition(s) since v1 hold no training rows (their rows are bad, selection, gate or elite judging rows): "
     "waiting for more data"),
    ({"stored": ["a", "b", "c"], "architecture_change": "hidden_dim 512 -> 256"}, "full_training",
     "the model's architecture changed since champion v1 (hidden_dim 512 -> 256): a new lineage"),
    ({"stored": ["a", "b", "c"], "architecture_change": "hidden_dim 512 -> 256",
      "new_shape_full": ("v3", "rejected", ["a", "b", "c"])}, None,
     "the model's architecture changed since champion v1 (hidden_dim 512 -> 256); v3 with the new shape was "
     "rejected: waiting for new data"),
    ({"stored": ["a", "b", "c", "d"], "architecture_change": "hidden_dim 512 -> 256",
      "new_shape_full": ("v3", "rejected", ["a", "b", "c"])}, "full_training",
     "the model's architecture changed since champion v1 (hidden_dim 512 -> 256): a new lineage"),
    ({"paused_by": "telegram:owner", "champion": None}, None,
     "training is paused (by telegram:owner); /resume or `aivj resume` to go on"),
    ({"stored": [], "champion": None}, None, "no data ingested yet"),
])
def test_plan(facts, job, reason) -> None:
    plan = _plan(**facts)
    assert (plan.job, plan.reason) == (job, reason)


def _store_partition(settings, key: str, n: int = 0) -> None:
    """Partition ``key`` with ``n`` rows of the demo task (none by default)."""
    table = PAIR_SCHEMA.empty_table()
    if n:
        from aivj_assets.data.contract import read_pairs
        from aivj_assets_tests.builders import rows, write_jsonl

        path = write_jsonl(settings.home / f"{key}.jsonl", rows(n, seed=len(key)))
        table = read_pairs(path, path.read_bytes(), settings, None).table
    Store(settings).write_partition(key, table, {"content_hash": key})


def _version(registry: Registry, stage: str, partitions: list[str], elite: float) -> str:
    version = register_state(registry, {"w": torch.tensor([elite])}, {"stage": stage, "data_partitions": partitions})
    registry.update(version, measured={"elite_accuracy": elite, "val_accuracy": elite})  # as judged
    return version


def test_facts_from_the_registry_and_store(aivj_env) -> None:
    for key in ("p1", "p2", "p3"):
        _store_partition(aivj_env, key)
    registry = Registry(aivj_env.models_dir)
    first = _version(registry, "full", ["p1"], 0.950)
    registry.promote(first, by="test")
    second = _version(registry, "incremental", ["p1", "p2"], 0.960)
    registry.promote(second, by="test")
    facts = read_facts(aivj_env)
    assert facts.champion == second and facts.champion_partitions == ["p1", "p2"]
    assert facts.stored == ["p1", "p2", "p3"]
    assert facts.last_full_at == datetime.fromisoformat(registry.get(first)["time"])
    # A full stage that reused its version and judged it again: the full training of its period.
    registry.update(first, judged_at="2031-05-01T02:00:00+00:00")
    assert read_facts(aivj_env).last_full_at == datetime.fromisoformat("2031-05-01T02:00:00+00:00")
    assert facts.last_improvement == pytest.approx(0.01 / 0.95)  # the champion's gain over its predecessor
    # A rejected newer candidate: the news is its (negative) gain over the champion.
    loser = _version(registry, "incremental", ["p1", "p2", "p3"], 0.958)
    registry.reject(loser, ["does not beat the champion"], by="test")
    assert read_facts(aivj_env).last_improvement == pytest.approx(-0.002 / 0.96)
    # Judged with the paired test: its gain on the gate rows, against the champion measured with it.
    registry.update(loser, paired={"gain": 0.0004}, champion_measured={"val_accuracy": 0.94})
    assert read_facts(aivj_env).last_improvement == pytest.approx(0.0004 / 0.94)
    assert read_facts(aivj_env).incremental_done is None  # p3 is new, and no incremental has tried it
    assert read_facts(aivj_env).new_training_rows == 0  # p3 was stored with no rows
    # A promotion killed before the pointers moved: the nightly tick puts them right.
    best = aivj_env.models_dir / "coupling_net_best.pth"
    best.write_bytes(registry.weights_path(first).read_bytes())
    read_facts(aivj_env)
    assert best.read_bytes() == registry.weights_path(second).read_bytes()
    assert read_facts(aivj_env).rolled_back is None
    registry.rollback(by="owner")  # second goes back to first; the loser stays the newest
    assert read_facts(aivj_env).rolled_back is None
    newest = _version(registry, "incremental", ["p1", "p2", "p3"], 0.97)
    registry.promote(newest, by="test")
    registry.rollback(by="owner")
    assert read_facts(aivj_env).rolled_back == newest


def test_facts_name_the_incremental_that_tonight_would_only_judge_again(aivj_env) -> None:
    from aivj_assets.policy.recipes import incremental_inputs

    for key in ("p1", "p2"):
        _store_partition(aivj_env, key)
    registry = Registry(aivj_env.models_dir)
    champion = _version(registry, "full", ["p1"], 0.95)
    registry.promote(champion, by="test")
    identity = incremental_inputs(aivj_env, registry).identity
    tried = register_state(registry, {"w": torch.tensor([0.9])}, {"stage": "incremental", "identity": identity,
                                                            "data_partitions": ["p1", "p2"]})
    assert read_facts(aivj_env).incremental_done is None  # a candidate not judged yet: run it
    registry.reject(tried, ["does not beat the champion"], by="test")
    assert read_facts(aivj_env).incremental_done == (tried, "rejected")
    registry.update(tried, pruned=True)  # on low disk retention prunes a rejected candidate at once
    assert read_facts(aivj_env).incremental_done == (tried, "rejected")
    # Another setting (here the epochs) is another recipe: tonight trains it.
    other = aivj_env.replace(incremental_epochs=aivj_env.incremental_epochs + 1)
    assert read_facts(other).incremental_done is None
    # New data since: the identity moves on, and so does the plan.
    _store_partition(aivj_env, "p3")
    assert read_facts(aivj_env).incremental_done is None


def _evaluate(settings, instance, when: datetime, clock: datetime | None = None):
    """Evaluate the schedule's tick for ``when`` with the real clock at ``clock`` (default: on time)."""
    from unittest import mock

    from aivj_assets.orchestration import schedules
    from aivj_assets.orchestration.definitions import defs

    schedule = build_nightly_schedule(settings)
    ctx = dg.build_schedule_context(instance=instance, scheduled_execution_time=when,
                                    repository_def=defs.get_repository_def())
    with mock.patch.object(schedules, "utc_now", lambda: (clock or when).astimezone(timezone.utc)):
        return schedule.evaluate_tick(ctx)


def _planned_steps(request) -> list[str]:
    """The steps a run of this request executes: the gates must be among them."""
    from dagster._core.execution.api import create_execution_plan

    from aivj_assets.orchestration.definitions import defs

    job = defs.get_repository_def().get_job("nightly_training_job")
    return [step.key for step in create_execution_plan(job.get_subset(asset_selection=set(request.asset_selection))).steps]


def test_schedule_requests_full_training_with_the_window_deadline(aivj_env, dagster_instance) -> None:
    _store_partition(aivj_env, "p1")
    data = _evaluate(aivj_env, dagster_instance, NOW)
    [request] = data.run_requests
    assert sorted(k.to_user_string() for k in request.asset_selection) == [
        "elite_set", "full_model", "promoted_model", "warmed_model"]
    assert request.tags[DEADLINE_TAG] == "2026-03-10T06:00:00+08:00"
    assert request.tags["aivj/training"] == "true" and request.tags["aivj/plan"] == "full_training"
    assert request.tags["aivj/reason"] == "no champion yet"
    assert request.run_key == "nightly-2026-03-10"
    assert _planned_steps(request) == ["elite_set", "warmed_model", "warmed_model_integrity", "full_model",
                                       "full_model_gates", "promoted_model"]


def test_schedule_requests_incremental_training_for_new_partitions(aivj_env, dagster_instance) -> None:
    for key in ("p1", "p2"):
        _store_partition(aivj_env, key, n=50)
    registry = Registry(aivj_env.models_dir)
    registry.promote(_version(registry, "full", ["p1"], 0.95), by="test")
    [request] = _evaluate(aivj_env, dagster_instance, NOW).run_requests
    assert sorted(k.to_user_string() for k in request.asset_selection) == ["incremental_model", "promoted_model"]
    assert request.tags["aivj/reason"].startswith("1 new partitions since v")
    assert _planned_steps(request) == ["incremental_model", "incremental_model_gates", "promoted_model"]


def test_schedule_skips_visibly(aivj_env, dagster_instance) -> None:
    data = _evaluate(aivj_env, dagster_instance, NOW)
    assert data.run_requests == [] and data.skip_message == "no data ingested yet"
    _store_partition(aivj_env, "p1")
    PauseFlag.for_settings(aivj_env).pause(by="telegram:owner")
    assert _evaluate(aivj_env, dagster_instance, NOW).skip_message.startswith("training is paused (by telegram:owner)")
    late = NOW.astimezone(timezone.utc) + timedelta(hours=5)
    assert "is not open" in _evaluate(aivj_env, dagster_instance, late).skip_message


def test_schedule_runs_at_the_window_start_in_the_owners_zone(aivj_env) -> None:
    schedule = build_nightly_schedule(aivj_env.replace(window="01:30-05:00", timezone="Europe/Berlin"))
    assert schedule.cron_schedule == "0,10,20,30,40,50 1,2,3,4 * * *"
    assert schedule.execution_timezone == "Europe/Berlin"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.name == "nightly_training"


def test_schedule_skips_while_a_training_run_is_running(aivj_env, dagster_instance) -> None:
    _store_partition(aivj_env, "p1")
    running = dg.DagsterRun(job_name="full_training", status=dg.DagsterRunStatus.STARTED,
                           tags={"aivj/training": "true"})
    dagster_instance.add_run(running)
    data = _evaluate(aivj_env, dagster_instance, NOW)
    assert data.run_requests == []
    assert data.skip_message == f"a training run is already queued or running ({running.run_id})"


def test_a_night_whose_first_tick_was_missed_trains_from_a_late_tick_inside_the_window(aivj_env,
                                                                                     dagster_instance) -> None:
    # The PC slept through 02:00 and woke at 03:07: the 03:10 tick launches tonight's training,
    # with tonight's run key and deadline.
    _store_partition(aivj_env, "p1")
    late = NOW.replace(hour=3, minute=10)
    [request] = _evaluate(aivj_env, dagster_instance, late).run_requests
    assert request.run_key == "nightly-2026-03-10" and request.tags[DEADLINE_TAG] == "2026-03-10T06:00:00+08:00"
    # Once tonight's run exists, the later ticks of the night launch nothing.
    dagster_instance.add_run(dg.DagsterRun(job_name="nightly_training_job", status=dg.DagsterRunStatus.SUCCESS,
                                           tags={**request.tags, "dagster/run_key": request.run_key}))
    data = _evaluate(aivj_env, dagster_instance, NOW.replace(hour=3, minute=20))
    assert data.run_requests == [] and data.skip_message.startswith("tonight's training was launched already")
    # The next night has its own key.
    [tomorrow] = _evaluate(aivj_env, dagster_instance, NOW + timedelta(days=1)).run_requests
    assert tomorrow.run_key == "nightly-2026-03-11"


def test_a_tick_caught_up_after_the_window_closed_never_trains(aivj_env, dagster_instance) -> None:
    # The daemon catches up tonight's 02:00 tick when the PC wakes at 07:30: the window is shut.
    _store_partition(aivj_env, "p1")
    data = _evaluate(aivj_env, dagster_instance, NOW, clock=NOW.replace(hour=7, minute=30))
    assert data.run_requests == []
    assert data.skip_message == ("the training window 02:00-06:00 (Asia/Shanghai) is not open at 2026-03-10 07:30 "
                                 "(tick scheduled for 2026-03-10T02:00:00+08:00)")
    # Last night's 05:50 tick caught up at 02:05 tonight belongs to a closed window too.
    yesterday = NOW.replace(hour=5, minute=50) - timedelta(days=1)
    assert _evaluate(aivj_env, dagster_instance, yesterday, clock=NOW.replace(minute=5)).run_requests == []
