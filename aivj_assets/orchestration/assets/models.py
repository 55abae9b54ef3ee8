"""The model stages as assets: warmed_model, full_model, incremental_model and promoted_model.

Each candidate asset trains through ``aivj_assets.policy.stages``, registers a version and outputs
its version id (lineage: the next stage and the gates read that id, never "the newest file").
A stage that the window or the owner paused outputs nothing: downstream steps skip, the run
ends successfully, and an observation says where the checkpoint is; the next run resumes it.
"""


import math
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import dagster as dg
from dagster import AssetExecutionContext, DagsterEventType

from aivj_assets.ops.control import training_control, wait_while_paused
from aivj_assets.orchestration import tags
from aivj_assets.orchestration.assets.elite_set import elite_set
from aivj_assets.orchestration.assets.raw_pairs import raw_pairs
from aivj_assets.orchestration.resources import NotifierResource
from aivj_assets.orchestration.runs import run_log_excerpt
from aivj_assets.policy.recipes import STAGE_EPOCHS, NothingToTrain
from aivj_assets.registry import Registry
from aivj_assets.settings import Settings, load_settings

OWNERS = ["team:aivj"]
CANDIDATE_ASSETS = ("full_model", "incremental_model")


class ModelStageConfig(dg.Config):
    """Per-run overrides from the launchpad; unset fields keep the settings' values."""

    epochs: int | None = None
    learning_rate: float | None = None
    batch_size: int | None = None
    weight_decay: float | None = None
    seed: int | None = None
    replay_ratio: float | None = None  # incremental only: old rows replayed per new row


def stage_settings(config: ModelStageConfig, stage: str) -> Settings:
    """The settings read now, with this run's overrides applied."""
    settings = load_settings()
    changes: dict[str, Any] = {k: getattr(config, k) for k in
                               ("learning_rate", "batch_size", "weight_decay", "seed", "replay_ratio")
                               if getattr(config, k) is not None}
    if config.epochs is not None:
        changes[STAGE_EPOCHS[stage]] = config.epochs
    return settings.replace(**changes) if changes else settings


def run_deadline(context: AssetExecutionContext) -> datetime | None:
    """The run tag ``aivj/deadline`` (ISO-8601 with offset): automatic runs stop resumably then."""
    raw = context.run.tags.get(tags.DEADLINE)
    if not raw:
        return None
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        raise dg.Failure(f"run tag {tags.DEADLINE}={raw!r} is not an ISO-8601 time", allow_retries=False) from None


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(float(value)) else None


def epoch_table(history: list[dict[str, Any]]) -> str:
    """The per-epoch history as a Markdown table (selection rows: they pick the best epoch)."""
    cols = ("epoch", "train_loss", "selection_loss", "selection_accuracy", "selection_f1", "lr", "seconds")
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for h in history:
        cells = [f"{h[c]:.4g}" if isinstance(h.get(c), float) else str(h.get(c, "")) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def extra_metadata(settings: Settings, version: str) -> dict[str, Any]:
    """Top-10 permutation feature importances of a registered candidate on its selection rows."""
    # torch: imported when a model step runs, not when the code location loads (every ingest run loads it)
    from aivj_assets.policy.importance import TOP_FEATURES, importance_for_version, importance_markdown

    # The stage scores them right after training, on the rows it holds, and records them
    # with the version; a version registered without them (older, or reused) is scored here.
    recorded = Registry(settings.models_dir).meta(version).get("feature_importance")
    if recorded:
        items = [(str(name), float(drop)) for name, drop in recorded]
    else:
        items = importance_for_version(settings, version, top=TOP_FEATURES, seed=settings.seed)
    out: dict[str, Any] = {"feature_importance": dg.MetadataValue.md(importance_markdown(items))}
    if items:
        out["top_feature"] = items[0][0]
    return out


def _stage_output(context: AssetExecutionContext, settings: Settings, result) -> Iterator[Any]:
    """An Output with the version id and its metadata, or an observation for a paused stage."""
    if result.version is None:
        context.log.warning(f"{result.stage} {result.status} before the end: resumable from "
                            f"{result.checkpoint}; nothing registered, the next run resumes it")
        yield dg.AssetObservation(asset_key=context.asset_key, metadata={
            "status": result.status, "resumable": True, "checkpoint": result.checkpoint or "",
            "identity": result.identity, "samples_trained": result.samples})
        return
    m = result.metrics
    metadata: dict[str, Any] = {
        "version": dg.MetadataValue.text(result.version),
        "parent": dg.MetadataValue.text(result.parent or "none"),
        "status": result.status,
        "selection_accuracy": _num(m.get("selection_accuracy")), "selection_f1": _num(m.get("selection_f1")),
        "selection_loss": _num(m.get("selection_loss")), "best_epoch": m.get("best_epoch") or -1,
        "samples_trained": int(m.get("samples_trained") or result.samples),
        "duration": _num(m.get("duration_seconds") or result.seconds),
        "rows": result.rows, "resumed_from": result.resumed_from or "",
        "epochs": dg.MetadataValue.md(epoch_table(result.history)),
    }
    metadata.update(extra_metadata(settings, result.version))
    yield dg.Output(result.version, metadata=metadata)


def _nothing(context: AssetExecutionContext, reason: str) -> Iterator[Any]:
    context.log.info(f"nothing to train: {reason}")
    yield dg.AssetObservation(asset_key=context.asset_key, metadata={"status": "nothing to train", "reason": reason})


def _run_stage(context: AssetExecutionContext, config: ModelStageConfig, stage: str, **kwargs: Any):
    # torch: imported when a model step runs, not when the code location loads (every ingest run loads it)
    from aivj_assets.policy.stages import train_full, train_incremental, train_warmup

    settings = stage_settings(config, stage)
    registry = Registry(settings.models_dir)
    trainer = {"warmup": train_warmup, "full": train_full, "incremental": train_incremental}[stage]
    deadline = run_deadline(context)
    control = training_control(settings, deadline)
    try:
        while True:
            result = trainer(settings, registry, control=control, log=context.log.info, run_id=context.run.run_id,
                             cmd_line=f"dagster job {context.run.job_name} run {context.run.run_id}", **kwargs)
            # A pause (owner's command, hot GPU) has checkpointed: wait here, then go on from that
            # checkpoint in the same run; the window's end instead ends the stage resumably.
            if result.status != "paused" or wait_while_paused(settings, deadline, checkpoint=result.checkpoint) != "resume":
                break
            context.log.info(f"{stage}: resumed after pause, continuing from {result.checkpoint}")
    except NothingToTrain as exc:
        yield from _nothing(context, str(exc))
        return
    yield from _stage_output(context, settings, result)


@dg.asset(group_name="models", kinds={"pytorch"}, owners=OWNERS, deps=[elite_set], output_required=False,
          description="Elite warm-up: the champion (or fresh weights) fine-tuned on the elite warm-up part. "
                      "Outputs its version id.")
def warmed_model(context: AssetExecutionContext, config: ModelStageConfig) -> Iterator[Any]:
    """Warm-up stage; an identical earlier warm-up is reused."""
    yield from _run_stage(context, config, "warmup")


@dg.asset(group_name="models", kinds={"pytorch"}, owners=OWNERS, deps=[raw_pairs], output_required=False,
          description="Full training from the warmed model on every ingested partition. Outputs its version id.")
def full_model(context: AssetExecutionContext, config: ModelStageConfig, warmed_model: str) -> Iterator[Any]:
    """Full stage, parent = this lineage's warmed model."""
    yield from _run_stage(context, config, "full", warm_version=warmed_model)


@dg.asset(group_name="models", kinds={"pytorch"}, owners=OWNERS, deps=[raw_pairs], output_required=False,
          description="Incremental fusion: the champion trained on partitions that arrived since its data "
                      "manifest plus a seeded replay sample of older rows. Outputs its version id.")
def incremental_model(context: AssetExecutionContext, config: ModelStageConfig) -> Iterator[Any]:
    """Incremental stage; materialises nothing when no partition is new."""
    yield from _run_stage(context, config, "incremental")


def candidates_in_run(context: AssetExecutionContext) -> list[str]:
    """Version ids that this run's candidate materialisations recorded (lineage, not file times).

    A run re-executed from failure (the daemon's retries) runs only the steps that failed: a
    candidate materialised by the run it retries is still this run's candidate, unless this
    run materialised that asset again. So the chain of parent runs is read, oldest first.
    """
    instance = context.instance
    chain, run = [], context.run
    while run is not None:
        chain.append(run.run_id)
        run = instance.get_run_by_id(run.parent_run_id) if run.parent_run_id else None
    by_asset: dict[str, str] = {}
    for run_id in reversed(chain):
        for record in instance.get_records_for_run(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION).records:
            mat = record.event_log_entry.asset_materialization
            key = mat.asset_key.to_user_string() if mat is not None else ""
            if key in CANDIDATE_ASSETS and "version" in mat.metadata:
                by_asset[key] = str(mat.metadata["version"].value)
    return list(by_asset.values())


@dg.asset(group_name="models", kinds={"pytorch"}, owners=OWNERS, deps=[full_model, incremental_model],
          description="The champion. Moves only to a candidate of this run that passed every blocking gate; "
                      "models/latest and models/coupling_net_best.pth follow it atomically.")
def promoted_model(context: AssetExecutionContext, notifier: NotifierResource) -> dg.Output:
    """Promote this run's best judged candidate (blocking gates already stopped any failing one)."""
    # torch: imported when a model step runs, not when the code location loads (every ingest run loads it)
    from aivj_assets.policy.promotion import promote_best

    settings = load_settings()
    registry = Registry(settings.models_dir)
    versions = candidates_in_run(context)
    unjudged = [v for v in versions if not registry.get(v).get("judgement")]
    if unjudged:
        raise dg.Failure(f"candidates {unjudged} have no verdict: their gate checks did not run in this run",
                         allow_retries=False)
    outcome = promote_best(settings, registry, versions, run_id=context.run.run_id, notify=notifier.notify,
                           log_excerpt=lambda: run_log_excerpt(context.instance, context.run.run_id))
    champion = registry.champion()
    measured = (champion or {}).get("measured") or {}
    paired = (champion or {}).get("paired") or {}
    metadata = {
        "champion": dg.MetadataValue.text(outcome["champion"] or "none"),
        "promoted": outcome["promoted"] is not None,
        "candidates": ", ".join(versions) or "none in this run",
        "elite_accuracy": _num(measured.get("elite_accuracy")), "val_accuracy": _num(measured.get("val_accuracy")),
        "f1": _num(measured.get("f1")), "gain_points": _num(100 * paired["gain"]) if paired else None,
        "p_value": _num(paired.get("p_value")),
        "pruned_versions": ", ".join(outcome["pruned"]) or "none",
        "held_back": ", ".join(outcome["held"]) or "none",
    }
    if outcome["held"]:
        context.log.info(f"not promoted again (an earlier decision stands): {', '.join(outcome['held'])}")
    return dg.Output(outcome["champion"] or "", metadata=metadata)


MODEL_ASSETS: list = [warmed_model, full_model, incremental_model, promoted_model]
