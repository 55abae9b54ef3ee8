"""Jobs: a full training, an incremental one, and a rollback the owner can launch from the UI."""


import dagster as dg
from dagster import OpExecutionContext

from aivj_assets.ops.notifier import Notifier
from aivj_assets.orchestration import tags
from aivj_assets.orchestration.assets.elite_set import elite_set
from aivj_assets.orchestration.assets.models import (
    full_model,
    incremental_model,
    promoted_model,
    warmed_model,
)
from aivj_assets.policy.export import roll_back
from aivj_assets.registry import Registry
from aivj_assets.settings import load_settings

full_training = dg.define_asset_job(
    "full_training",
    selection=dg.AssetSelection.assets(elite_set, warmed_model, full_model, promoted_model),
    tags=tags.TRAINING_TAGS,
    description="Elite set, elite warm-up, full training on every partition, gates, promotion.",
)

incremental_training = dg.define_asset_job(
    "incremental_training",
    selection=dg.AssetSelection.assets(incremental_model, promoted_model),
    tags=tags.TRAINING_TAGS,
    description="The champion trained on new partitions plus replay, gates, promotion.",
)


class RollbackConfig(dg.Config):
    """Which version becomes the champion again (empty: the previous champion)."""

    version: str = ""


@dg.op(description="Make an earlier version the champion again (atomic, recorded in the registry).")
def rollback_champion(context: OpExecutionContext, config: RollbackConfig) -> str:
    """Roll back and record the new champion as a promoted_model materialisation."""
    settings = load_settings()
    registry = Registry(settings.models_dir)
    previous = (registry.champion() or {}).get("version")
    version = roll_back(settings, registry, config.version or None, by=f"dagster run {context.run.run_id}",
                        notify=Notifier(settings))
    context.log.info(f"champion rolled back from {previous} to {version}")
    context.log_event(dg.AssetMaterialization(
        asset_key="promoted_model",
        metadata={"champion": dg.MetadataValue.text(version), "rolled_back_from": previous or "none",
                  "promoted": False}))
    return version


@dg.job(description="Roll the champion back to an earlier version (default: the previous champion).",
        tags={tags.MAX_RETRIES: "0"})
def rollback() -> None:
    rollback_champion()


JOBS: list = [full_training, incremental_training, rollback]
