"""What each stage would train on now, and the identity that names it (no torch, no Dagster).

A stage's identity is its parent version, its data and the settings that change a training:
the same identity trains the same model, so a stage never repeats one (``stages.py`` reuses
the version), and the nightly plan can tell, without training, that tonight's incremental
would only repeat a version already judged.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from aivj_assets.data.parts import elite_digest
from aivj_assets.data.store import Store
from aivj_assets.registry import Registry
from aivj_assets.settings import Settings, architecture_change, describe_change

STAGE_EPOCHS = {"warmup": "warmup_epochs", "full": "full_epochs", "incremental": "incremental_epochs"}


class NothingToTrain(RuntimeError):
    """The stage has no rows to learn from (e.g. no partition arrived since the champion)."""


def training_key(settings: Settings, epochs: int) -> str:
    """What about the settings makes two trainings different (so they do not share checkpoints)."""
    keys = ("learning_rate", "batch_size", "weight_decay", "seed", "hidden_dim", "embed_dim", "model_factory",
            "selection_fraction", "gate_fraction", "replay_ratio")
    blob = json.dumps({k: getattr(settings, k) for k in keys} | {"epochs": epochs}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def new_partitions(stored: list[str] | set[str], seen: list[str] | set[str]) -> list[str]:
    """Stored partitions a model has not been trained on (``seen``: its data manifest), sorted."""
    known = set(seen)
    return sorted(k for k in stored if k not in known)


@dataclass(frozen=True)
class IncrementalInputs:
    """What the incremental stage would train on now, and the identity that names it."""

    champion: str
    new_keys: list[str]
    old_keys: list[str]
    data_hash: str
    identity: str


def incremental_inputs(settings: Settings, registry: Registry) -> IncrementalInputs:
    """The incremental stage's inputs as of now; NothingToTrain when no partition arrived since the champion."""
    champion = registry.champion()
    if champion is None:
        raise NothingToTrain("no champion yet: run full_training first")
    store = Store(settings)
    stored, seen = store.partitions(), registry.meta(champion["version"]).get("data_partitions") or []
    new_keys = new_partitions(stored, seen)
    old_keys = sorted(set(stored) - set(new_keys))
    if not new_keys:
        raise NothingToTrain(f"no partition arrived since champion {champion['version']}")
    change = architecture_change(settings, registry.meta(champion["version"]))
    if change:
        raise NothingToTrain(f"champion {champion['version']} has another architecture ({describe_change(change)}): "
                             "a full training starts the new lineage")
    data_hash = store.manifest_hash(sorted(new_keys + old_keys))
    key = training_key(settings, settings.incremental_epochs)
    return IncrementalInputs(champion["version"], new_keys, old_keys, data_hash,
                             f"incremental|from={champion['version']}|data={data_hash[:16]}|"
                             f"elite={elite_digest(store)}|{key}")


