"""Model gates as asset checks on every candidate; raw_pairs' data checks travel with that asset.

Each gate's metadata carries what was measured (``value``) and against what (``bound``);
thresholds come from the settings. Blocking gates (ERROR) stop ``promoted_model`` in the
same run; a rejection is recorded in the registry, reported and notified by the gate step
itself, and the run is tagged as a normal outcome (no retry, no crash alert).
"""


import math
from collections.abc import Iterator
from typing import Any

import dagster as dg
from dagster import AssetCheckExecutionContext

from aivj_assets.orchestration.resources import NotifierResource
from aivj_assets.orchestration.runs import mark_final_outcome, run_log_excerpt
from aivj_assets.policy.gates import MODEL_GATES, Gate
from aivj_assets.registry import Registry
from aivj_assets.settings import load_settings

INTEGRITY_GATES = MODEL_GATES[:2]


def _meta_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if isinstance(value, int | float | str | bool) or value is None else str(value)


def gate_result(gate: Gate, *, asset: str | None = None, **metadata: Any) -> dg.AssetCheckResult:
    """A gate as an asset check result: ERROR when blocking (stops the run's downstream steps),
    WARN otherwise; its metadata says what was measured, against what bound, with which interval."""
    metadata = {**metadata, "value": _meta_value(gate.value), "bound": _meta_value(gate.bound)}
    if gate.candidate is not None:
        metadata["candidate"] = _meta_value(gate.candidate)
    if gate.champion is not None:
        metadata["champion"] = _meta_value(gate.champion)
    if gate.interval is not None:
        metadata["interval_95"] = f"[{gate.interval[0]:.4f}, {gate.interval[1]:.4f}]"
    metadata.update({k: dg.MetadataValue.md(v) if k == "table" else _meta_value(v) for k, v in gate.detail.items()})
    return dg.AssetCheckResult(
        asset_key=asset, check_name=gate.name, passed=gate.passed, description=gate.description,
        severity=dg.AssetCheckSeverity.ERROR if gate.blocking else dg.AssetCheckSeverity.WARN, metadata=metadata)


def _mark_rejected(context: AssetCheckExecutionContext) -> None:
    """Tag the run so that its failure is neither retried nor alerted as a crash."""
    mark_final_outcome(context.instance, context.run.run_id, "gate_rejected")


def candidate_gates(asset: str) -> dg.AssetChecksDefinition:
    """Every gate of the candidate asset ``asset``, judged in one step against the champion."""
    specs = [dg.AssetCheckSpec(name, asset=asset, blocking=blocking, description=desc)
             for name, blocking, desc in MODEL_GATES]

    @dg.multi_asset_check(name=f"{asset}_gates", specs=specs, ins={"version": dg.AssetIn(asset)},
                          description=f"Quality gates of {asset}: blocking ones decide promotion.")
    def gates(context: AssetCheckExecutionContext, version: str,
              notifier: NotifierResource) -> Iterator[dg.AssetCheckResult]:
        # torch: imported when a gate step runs, not when the code location loads (every ingest run loads it)
        from aivj_assets.policy.promotion import judge_candidate, record_verdict

        settings = load_settings()
        registry = Registry(settings.models_dir)
        verdict = judge_candidate(settings, registry, version, log=context.log.info)
        context.log.info(f"{version}: {verdict.judgement.summary}")
        record_verdict(settings, registry, verdict, run_id=context.run.run_id, notify=notifier.notify,
                       log_excerpt=lambda: run_log_excerpt(context.instance, context.run.run_id))
        if not verdict.judgement.passed:
            _mark_rejected(context)  # before the failing results: the run's failure is a normal outcome
        for gate in verdict.judgement.gates:
            yield gate_result(gate, asset=asset, version=version)

    return gates


def integrity_gates(asset: str) -> dg.AssetChecksDefinition:
    """Finite weights matching the registry's hash: what an intermediate stage must satisfy."""
    specs = [dg.AssetCheckSpec(name, asset=asset, blocking=blocking, description=desc)
             for name, blocking, desc in INTEGRITY_GATES]

    @dg.multi_asset_check(name=f"{asset}_integrity", specs=specs, ins={"version": dg.AssetIn(asset)},
                          description=f"Integrity of {asset}'s registered weights.")
    def integrity(context: AssetCheckExecutionContext, version: str,
                  notifier: NotifierResource) -> Iterator[dg.AssetCheckResult]:
        # torch: imported when a gate step runs, not when the code location loads (every ingest run loads it)
        from aivj_assets.policy.promotion import record_integrity, weight_integrity

        settings = load_settings()
        registry = Registry(settings.models_dir)
        gates = weight_integrity(registry, version)
        if not record_integrity(settings, registry, version, gates, run_id=context.run.run_id, notify=notifier.notify,
                                log_excerpt=lambda: run_log_excerpt(context.instance, context.run.run_id)):
            _mark_rejected(context)
        for gate in gates:
            yield gate_result(gate, asset=asset, version=version)

    return integrity


# raw_pairs' checks are emitted by its materialisation (check specs on the asset), so they are not here.
CHECKS = [integrity_gates("warmed_model"), candidate_gates("full_model"), candidate_gates("incremental_model")]
