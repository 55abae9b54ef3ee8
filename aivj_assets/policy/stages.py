"""The three training stages, as plain functions: warm-up, full, incremental (no Dagster).

Each stage decides its parent version, its rows and its identity, reuses a version already
trained under that identity, or trains from the parent's weights and registers the result as
a ``candidate`` version. The model assets in ``orchestration/assets/models.py`` only wire
these to Dagster; ``promotion.py`` judges what they register.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from aivj_assets.data.parts import elite_digest, split_table
from aivj_assets.data.store import Store
from aivj_assets.policy.importance import TOP_FEATURES, permutation_importance
from aivj_assets.policy.recipes import STAGE_EPOCHS, NothingToTrain, incremental_inputs, training_key
from aivj_assets.policy.rows import elite_split, replay_sample, selection_rows, training_split
from aivj_assets.registry import Registry
from aivj_assets.settings import Settings, architecture_change, describe_change
from aivj_assets.training.dataset import PairTensors, tensors_from_table
from aivj_assets.training.loop import TrainConfig, train
from aivj_assets.training.model import build_model, load_state_dict, save_state_dict
from aivj_assets.training.run_state import seed_everything


@dataclass
class StageResult:
    """What one stage did: ``version`` is set only when it finished and registered a candidate."""

    stage: str
    status: str  # finished | reused | paused | stopped
    version: str | None
    parent: str | None
    identity: str
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    samples: int = 0
    seconds: float = 0.0
    rows: dict[str, int] = field(default_factory=dict)
    checkpoint: str | None = None
    resumed_from: str | None = None


def _train_stage(settings: Settings, registry: Registry, *, stage: str, parent: str | None, identity: str,
                 data: PairTensors, selection: PairTensors, partitions: list[str], data_hash: str,
                 control: Callable[[dict], str] | None, log: Callable[[str], None], run_id: str, cmd_line: str,
                 extra_meta: dict[str, Any] | None = None, resumes: str | None = None,
                 restart_epoch_on_new_data: bool = False) -> StageResult:
    """Train and register one stage. ``identity`` names the version (for reuse); ``resumes``
    (default: the identity) names the checkpoints a stopped run of it goes on from."""
    epochs = int(getattr(settings, STAGE_EPOCHS[stage]))
    # The run's seed draws the initial weights too: the same data, settings and seed give the
    # same version, bit for bit (a resumed run restores its generators from the checkpoint).
    seed_everything(settings.seed)
    model = build_model(settings, data.audio_dim, data.preset_dim)
    if parent:
        model.load_state_dict(load_state_dict(registry.weights_path(parent)))
    config = TrainConfig.from_settings(settings, epochs=epochs, identity=resumes or identity,
                                       checkpoint_dir=settings.checkpoints_dir / stage, manifest_hash=data_hash,
                                       restart_epoch_on_new_data=restart_epoch_on_new_data)
    result = train(model, data, selection=selection, config=config, control=control, log=log)
    rows = {"train": len(data), "selection": len(selection)}
    out = StageResult(stage=stage, status=result.status, version=None, parent=parent, identity=identity,
                      history=result.history, events=result.events, samples=result.samples,
                      seconds=result.seconds, rows=rows, checkpoint=result.checkpoint,
                      resumed_from=result.resumed_from)
    if result.status != "finished":
        return out
    m = result.metrics
    importance = _importance(settings, model, result.state_dict, selection)
    out.metrics = {"selection_accuracy": m.get("selection_accuracy"), "selection_f1": m.get("selection_f1"),
                   "selection_loss": m.get("selection_loss"), "best_epoch": m.get("epoch"),
                   "samples_trained": result.samples, "duration_seconds": result.seconds}
    state = result.state_dict
    out.version = registry.register(lambda path: save_state_dict(path, state), {
        "stage": stage, "parent": parent, "identity": identity, "data_hash": data_hash,
        "data_partitions": partitions, "metrics": out.metrics, "history": result.history,
        "events": result.events, "rows": rows, "train_config": m.get("config"),
        "settings": settings.public_dict(), "run_id": run_id, "cmd_line": cmd_line,
        "dims": {"audio_dim": data.audio_dim, "preset_dim": data.preset_dim},
        **({"feature_importance": importance} if importance else {}), **(extra_meta or {}),
    })
    return out


def _importance(settings: Settings, model, state_dict: dict[str, Any], rows: PairTensors) -> list[list[Any]]:
    """Top permutation importances of the weights being registered, on the selection rows
    already in memory (the same rows ``importance_for_version`` would read back); [] if none."""
    if len(rows) == 0:
        return []
    model.load_state_dict(state_dict)  # the best epoch's weights: the ones registered
    items = permutation_importance(model, rows, top=TOP_FEATURES, seed=settings.seed,
                                   audio_dim=rows.audio_dim, preset_dim=rows.preset_dim)
    return [[name, drop] for name, drop in items]


def _reusable(registry: Registry, stage: str, identity: str, log: Callable[[str], None]) -> StageResult | None:
    """The intact version already trained under ``identity`` in ``stage``, as this stage's result.

    The same parent, data and training settings train the same model again, so a stage never
    repeats one: a rejected candidate is judged again (gates may have changed), and a version
    the owner rolled back stays rolled back instead of coming back as a fresh twin.
    """
    found = registry.find(identity=identity, stage=stage)
    if found is None:
        return None
    log(f"{stage}: {identity} already trained as {found} ({registry.get(found)['status']}): reusing it")
    return _reused(registry, stage, found)


def _reused(registry: Registry, stage: str, version: str) -> StageResult:
    meta = registry.meta(version)
    return StageResult(stage=stage, status="reused", version=version, parent=meta.get("parent"),
                       identity=meta.get("identity", ""), metrics=meta.get("metrics", {}),
                       history=meta.get("history", []), events=meta.get("events", []), rows=meta.get("rows", {}))


def train_warmup(settings: Settings, registry: Registry, *, control=None, log=print, run_id: str = "",
                 cmd_line: str = "") -> StageResult:
    """Fine-tune the champion (or fresh weights) on the elite warm-up part.

    The same champion, elite rows and settings give the same warm-up: an existing version
    with that identity is reused, so a full training resumed the next night keeps its parent.
    """
    champion = registry.champion()
    parent = champion["version"] if champion else None
    extra: dict[str, Any] = {}
    change = architecture_change(settings, registry.meta(parent)) if parent else {}
    if change:  # the owner changed the model's shape: its weights cannot carry over
        log(f"warm-up: champion {parent} has another architecture ({describe_change(change)}): "
            "a new lineage starts from fresh weights")
        extra, parent = {"lineage_after": parent}, None
    warm, _ = elite_split(settings)
    if len(warm) == 0:
        raise NothingToTrain(f"{Store(settings).elite_path()}: no elite warm-up rows")
    elite_hash = hashlib.sha256(np.sort(warm.row_ids()).tobytes()).hexdigest()[:16]
    identity = f"warmup|from={parent}|elite={elite_hash}|{training_key(settings, settings.warmup_epochs)}"
    reused = _reusable(registry, "warmup", identity, log)
    if reused is not None:
        return reused
    selection = selection_rows(settings, Store(settings).partitions())
    return _train_stage(settings, registry, stage="warmup", parent=parent, identity=identity, data=warm,
                        selection=selection, partitions=[], data_hash=f"elite:{elite_hash}", control=control,
                        log=log, run_id=run_id, cmd_line=cmd_line, extra_meta=extra)


def train_full(settings: Settings, registry: Registry, warm_version: str, *, control=None, log=print,
               run_id: str = "", cmd_line: str = "") -> StageResult:
    """Train from the warmed model on every stored partition."""
    store = Store(settings)
    keys = store.partitions()
    if not keys:
        raise NothingToTrain(f"{store.raw_dir}: no partitions ingested yet")
    data_hash = store.manifest_hash(keys)
    recipe = f"full|from={warm_version}|elite={elite_digest(store)}|{training_key(settings, settings.full_epochs)}"
    identity = f"{recipe}|data={data_hash[:16]}"
    reused = _reusable(registry, "full", identity, log)
    if reused is not None:
        return reused
    train_rows, selection = training_split(settings, keys)
    if len(train_rows) == 0:
        raise NothingToTrain(f"the {len(keys)} stored partitions hold no training rows (every good row, if any, "
                             "is a selection or gate row)")
    # A full training takes several nights while new files keep arriving: its checkpoints are
    # named without the data, so a stopped run goes on with the data as it is now instead of
    # starting again each time a file lands. The interrupted epoch starts again on the current
    # rows, so the version's data manifest names only rows it has trained on.
    return _train_stage(settings, registry, stage="full", parent=warm_version, identity=identity, data=train_rows,
                        selection=selection, partitions=keys, data_hash=data_hash, control=control, log=log,
                        run_id=run_id, cmd_line=cmd_line, resumes=recipe, restart_epoch_on_new_data=True)


def train_incremental(settings: Settings, registry: Registry, *, control=None, log=print, run_id: str = "",
                      cmd_line: str = "") -> StageResult:
    """Train from the champion on the new partitions plus a seeded replay sample of older rows."""
    store = Store(settings)
    inputs = incremental_inputs(settings, registry)
    identity, data_hash, new_keys, old_keys = inputs.identity, inputs.data_hash, inputs.new_keys, inputs.old_keys
    keys = sorted(new_keys + old_keys)
    reused = _reusable(registry, "incremental", identity, log)
    if reused is not None:
        return reused
    new_train, new_sel, _ = split_table(settings, store.read_partitions(new_keys))
    if new_train.num_rows == 0:  # e.g. a file whose rows were all bad: nothing new to learn from
        raise NothingToTrain(f"the {len(new_keys)} partitions since champion {inputs.champion} hold no training "
                             f"rows ({new_sel.num_rows} selection rows): {', '.join(new_keys[:3])}")
    old_train, old_sel, _ = split_table(settings, store.read_partitions(old_keys))
    replay = replay_sample(settings, old_train, new_train.num_rows, settings.replay_ratio, data_hash)
    data = tensors_from_table(pa.concat_tables([new_train, replay]), "store")
    # The best epoch is picked on every selection row, old ones included: forgetting shows as a lower score.
    selection = tensors_from_table(pa.concat_tables([new_sel, old_sel]), "store (selection rows)")
    log(f"incremental: {new_train.num_rows} new rows from {len(new_keys)} partitions + {replay.num_rows} replayed")
    return _train_stage(settings, registry, stage="incremental", parent=inputs.champion, identity=identity,
                        data=data, selection=selection, partitions=keys, data_hash=data_hash,
                        control=control, log=log, run_id=run_id, cmd_line=cmd_line,
                        extra_meta={"new_partitions": new_keys, "replay_rows": replay.num_rows,
                                    "new_rows": new_train.num_rows})
