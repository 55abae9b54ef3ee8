"""Quality gates as asset checks: data checks from raw_pairs, model gates on every candidate.

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

from aivj_assets.assets.raw_pairs import RAW_PAIRS_CHECKS
from aivj_assets.registry import Registry
from aivj_assets.settings import load_settings

# (name, blocking, description): the order in which the gate step reports them.
MODEL_GATES = (
    ("weights_finite", True, "every weight is a finite number"),
    ("weights_match_registry", True, "the weights file has the sha256 the registry recorded"),
    ("elite_accuracy", True, "accuracy on the held-out elite judging part >= elite_min_accuracy"),
    ("val_accuracy", True, "validation accuracy >= val_min_accuracy"),
    ("beats_champion", True, "elite > champion x beat_elite_factor and val > champion's, on the same rows; "
                             "metadata has the exact McNemar test"),
    ("val_loss_rising", False, "validation loss rose val_loss_rise_epochs epochs in a row"),
    ("loss_oscillation", False, "an epoch's validation loss rose more than loss_change_max"),
    ("val_accuracy_drop", False, "validation accuracy more than val_drop_alert below the previous version's"),
)
INTEGRITY_GATES = MODEL_GATES[:2]


def _meta_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if isinstance(value, int | float | str | bool) or value is None else str(value)


def _result(asset: str, gate, version: str) -> dg.AssetCheckResult:
    metadata = {"version": version, "value": _meta_value(gate.value), "bound": _meta_value(gate.bound)}
    metadata.update({k: _meta_value(v) for k, v in gate.detail.items()})
    return dg.AssetCheckResult(
        asset_key=asset, check_name=gate.name, passed=gate.passed, description=gate.description,
        severity=dg.AssetCheckSeverity.ERROR if gate.blocking else dg.AssetCheckSeverity.WARN, metadata=metadata)


def _mark_rejected(context: AssetCheckExecutionContext) -> None:
    """Tag the run so that its failure is neither retried nor alerted as a crash."""
    from aivj_assets.ops_sensors import mark_final_outcome

    mark_final_outcome(context.instance, context.run.run_id, "gate_rejected")


def candidate_gates(asset: str) -> dg.AssetChecksDefinition:
    """Every gate of the candidate asset ``asset``, judged in one step against the champion."""
    specs = [dg.AssetCheckSpec(name, asset=asset, blocking=blocking, description=desc)
             for name, blocking, desc in MODEL_GATES]

    @dg.multi_asset_check(name=f"{asset}_gates", specs=specs, ins={"version": dg.AssetIn(asset)},
                          description=f"Quality gates of {asset}: blocking ones decide promotion.")
    def gates(context: AssetCheckExecutionContext, version: str) -> Iterator[dg.AssetCheckResult]:
        from aivj_assets.promotion import judge_candidate, record_verdict

        settings = load_settings()
        registry = Registry(settings.models_dir)
        verdict = judge_candidate(settings, registry, version)
        record_verdict(settings, registry, verdict, run_id=context.run.run_id)
        if not verdict.judgement.passed:
            _mark_rejected(context)  # before the failing results: the run's failure is a normal outcome
        for gate in verdict.judgement.gates:
            yield _result(asset, gate, version)

    return gates


def integrity_gates(asset: str) -> dg.AssetChecksDefinition:
    """Finite weights matching the registry's hash: what an intermediate stage must satisfy."""
    specs = [dg.AssetCheckSpec(name, asset=asset, blocking=blocking, description=desc)
             for name, blocking, desc in INTEGRITY_GATES]

    @dg.multi_asset_check(name=f"{asset}_integrity", specs=specs, ins={"version": dg.AssetIn(asset)},
                          description=f"Integrity of {asset}'s registered weights.")
    def integrity(context: AssetCheckExecutionContext, version: str) -> Iterator[dg.AssetCheckResult]:
        from aivj_assets.promotion import record_integrity, weight_integrity

        settings = load_settings()
        registry = Registry(settings.models_dir)
        gates = weight_integrity(registry, version)
        if not record_integrity(settings, registry, version, gates, run_id=context.run.run_id):
            _mark_rejected(context)
        for gate in gates:
            yield _result(asset, gate, version)

    return integrity


MODEL_CHECKS = [integrity_gates("warmed_model"), candidate_gates("full_model"), candidate_gates("incremental_model")]
CHECKS = [*RAW_PAIRS_CHECKS, *MODEL_CHECKS]
