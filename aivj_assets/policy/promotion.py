"""Judge a candidate against the champion on the same rows, record the verdict, move the champion.

No Dagster here: the gate checks call :func:`judge_candidate` and :func:`record_verdict`,
``promoted_model`` calls :func:`promote_best`.
A rejection is a normal outcome: the version is marked ``rejected`` with its reasons, the
owner is told (through the ``notify`` callable each caller hands in), the champion stays.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import torch

from aivj_assets.data.atomic import file_sha256
from aivj_assets.policy.export import export_champion
from aivj_assets.policy.gates import (
    Evidence,
    Gate,
    Judgement,
    Outcomes,
    gate_weights_finite,
    gate_weights_hash,
    judge,
)
from aivj_assets.policy.report import gate_table, plain, write_report
from aivj_assets.policy.retention import apply_retention
from aivj_assets.policy.rows import elite_split, gate_rows
from aivj_assets.registry import Registry
from aivj_assets.settings import Settings, version_settings
from aivj_assets.training.dataset import PairTensors
from aivj_assets.training.metrics import evaluate_rows
from aivj_assets.training.model import build_model, load_state_dict

# notify(event, text, details): tells the owner; never raises (ops' notifier)
Notify = Callable[[str, str, "dict[str, Any] | None"], None]

# The rows a measurement was taken on: the split's sizes and scheme. A recorded measurement
# with another signature, or on other partitions, is stale: nothing is compared with it.
SPLIT_SCHEME = "row-hash parts: gate < gate_fraction <= selection < gate_fraction + selection_fraction"


def split_signature(settings: Settings) -> dict[str, Any]:
    """What decides which rows judge: compared with a recorded measurement's before trusting it."""
    return {"scheme": SPLIT_SCHEME, "selection_fraction": settings.selection_fraction,
            "gate_fraction": settings.gate_fraction, "elite_judge_fraction": settings.elite_judge_fraction}


@dataclass
class Verdict:
    """A candidate's judgement plus the numbers behind it."""

    judgement: Judgement
    champion: str | None  # the champion it was judged against
    candidate_metrics: dict[str, Any]
    champion_metrics: dict[str, Any] | None
    paired: dict[str, Any] | None  # the gate rows' paired test


def _measure(settings: Settings, weights: dict[str, torch.Tensor], dims: tuple[int, int], gate: PairTensors,
             elite: PairTensors) -> tuple[dict[str, Any], Outcomes, Outcomes]:
    """A model's figures on the gate rows and the elite judging rows, and its per-row outcomes."""
    model = build_model(settings, *dims)
    model.load_state_dict(weights)
    v, v_logit = evaluate_rows(model, gate)
    e, e_logit = evaluate_rows(model, elite)
    on_gate, on_elite = Outcomes(v_logit, gate.label.numpy()), Outcomes(e_logit, elite.label.numpy())
    metrics = {"elite_accuracy": e["accuracy"], "elite_rows": e["n"], "val_accuracy": v["accuracy"],
               "val_rows": v["n"], "f1": v["f1"], "val_loss": v["loss"], "precision": v["precision"],
               "recall": v["recall"], "ece": on_gate.ece}
    return metrics, on_gate, on_elite


def _integrity(registry: Registry, version: str) -> tuple[list[Gate], dict[str, torch.Tensor]]:
    entry = registry.get(version)
    path = registry.weights_path(version)
    weights = load_state_dict(path)
    floats = [t for t in weights.values() if t.is_floating_point()]
    nonfinite = int(sum(int((~torch.isfinite(t)).sum()) for t in floats))
    total = int(sum(t.numel() for t in floats))
    gates = [gate_weights_finite(nonfinite, total), gate_weights_hash(file_sha256(path), entry["model_hash"])]
    return gates, weights


def weight_integrity(registry: Registry, version: str) -> list[Gate]:
    """The two integrity gates (finite weights, file matches the registry's hash) of ``version``."""
    return _integrity(registry, version)[0]


def _by_gates(run_id: str) -> str:
    """Who a gate decision is recorded as made by."""
    return f"gates (run {run_id})" if run_id else "gates"


# log_excerpt(): the run's log lines a report quotes; read only when a report is sent
LogExcerpt = Callable[[], str]


def _no_log() -> str:
    return ""


def report_details(version: str, gates: list[dict[str, Any]], *, run_id: str, log_excerpt: LogExcerpt,
                   **facts: Any) -> dict[str, Any]:
    """What an email report carries: the gate table (:meth:`Gate.row` rows), the facts, the run's log."""
    return {"version": version, "run_id": run_id, "gates": gates, **facts, "log": log_excerpt()}


def record_integrity(settings: Settings, registry: Registry, version: str, gates: list[Gate], *, run_id: str,
                     notify: Notify, log_excerpt: LogExcerpt = _no_log) -> bool:
    """True when every integrity gate passed; otherwise ``version`` is rejected and the owner told
    (the run then ends as a normal outcome, so no failure alert would say it)."""
    reasons = [g.reason for g in gates if not g.passed]
    if not reasons:
        return True
    registry.reject(version, reasons, by=_by_gates(run_id))
    stage = registry.get(version).get("stage") or "model"
    notify("gate_rejected", f"{stage} version {version} rejected: " + "; ".join(reasons),
           report_details(version, [g.row() for g in gates], run_id=run_id, log_excerpt=log_excerpt,
                          reasons=reasons))
    return False


def judge_candidate(settings: Settings, registry: Registry, version: str,
                    log: Callable[[str], None] = print) -> Verdict:
    """Measure ``version`` and the champion, now, on the gate rows and the held-out elite judging part."""
    integrity, weights = _integrity(registry, version)
    meta = registry.meta(version)
    dims = (int(meta["dims"]["audio_dim"]), int(meta["dims"]["preset_dim"]))
    _, elite = elite_split(settings)
    rows = gate_rows(settings)
    cand, on_gate, on_elite = _measure(version_settings(settings, meta), weights, dims, rows.rows, elite)
    signature = {**split_signature(settings), "data_hash": rows.data_hash}
    cand["split"] = signature
    champ_entry = registry.champion()
    champ = paired = None
    evidence = Evidence(on_gate, on_elite, sources=rows.sources, group=rows.group)
    if champ_entry is not None and champ_entry["version"] != version:
        name = champ_entry["version"]
        log(_remeasure_note(name, champ_entry.get("measured"), signature, len(rows.rows), len(elite)))
        champ_weights = load_state_dict(registry.weights_path(name))
        champ, champ_gate, champ_elite = _measure(version_settings(settings, registry.meta(name)), champ_weights,
                                                  dims, rows.rows, elite)
        champ["split"] = signature
        evidence = Evidence(on_gate, on_elite, champ_gate, champ_elite, rows.sources, rows.group)
    judgement = judge(version, settings=settings, integrity=integrity, evidence=evidence,
                      history=meta.get("history") or [])
    if evidence.gate_paired is not None:
        beat = judgement.gate("beats_champion")
        paired = {"rule": settings.beat_rule, "alpha": settings.promote_alpha,
                  "margin_points": settings.promote_min_gain, **evidence.gate_paired.as_dict(),
                  **({"p_value": beat.detail["p_value"]} if "p_value" in beat.detail else {})}
    return Verdict(judgement, champ_entry["version"] if champ_entry else None, cand, champ, paired)


def _remeasure_note(champion: str, recorded: Mapping[str, Any] | None, signature: Mapping[str, Any],
                    gate_n: int, elite_n: int) -> str:
    """The log line saying the champion's numbers are measured now, and why its recorded ones are not used."""
    where = f"today's {gate_n:,} gate rows and {elite_n:,} elite judging rows"
    if not recorded:
        return f"champion {champion} has no recorded measurement: measured on {where}"
    if recorded.get("split") != signature:
        return (f"champion {champion}'s recorded numbers are from other rows (another split or other data): "
                f"measured again on {where}, never compared with stale numbers")
    return f"champion {champion} measured again on {where}, the same rows as the candidate"


def record_verdict(settings: Settings, registry: Registry, verdict: Verdict, *, run_id: str, notify: Notify,
                   log_excerpt: LogExcerpt = _no_log) -> None:
    """Store the verdict in the registry; a failed candidate is rejected, reported and notified.

    A version judged again (a stage reused it) keeps a decision already made about it: one
    that was promoted or rolled back keeps that status whatever the verdict, and a rejected
    one that now passes (the gates or the champion changed) becomes a candidate again.
    """
    j = verdict.judgement
    standing = registry.get(j.version)["status"]
    registry.update(j.version, judgement=plain(j.as_dict()), measured=plain(verdict.candidate_metrics),
                    champion_measured=plain(verdict.champion_metrics), paired=plain(verdict.paired),
                    judged_against=verdict.champion, judged_in_run=run_id, warnings=j.warnings,
                    summary=j.summary, judged_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def details(reasons: list[str]) -> dict[str, Any]:
        return report_details(j.version, plain(j.table()), run_id=run_id, log_excerpt=log_excerpt,
                              champion=verdict.champion or "none", summary=j.summary, reasons=reasons)

    if j.warnings:
        notify("degradation", f"model {j.version}: " + "; ".join(j.warnings), details(j.warnings))
    if standing in ("promoted", "rolled_back"):
        return
    if j.passed:
        if standing == "rejected":
            registry.reopen(j.version, by=_by_gates(run_id),
                            reason="judged again, it passed every blocking gate")
        return
    registry.reject(j.version, j.reasons, by=_by_gates(run_id))
    write_report(settings, registry, j.version, "rejected")
    champion = verdict.champion or "none"
    notify("gate_rejected", f"model {j.version} not promoted, kept the champion {champion}: {j.evidence}",
           details(j.reasons))
    apply_retention(settings, registry)


def promote_best(settings: Settings, registry: Registry, versions: list[str], *, run_id: str, notify: Notify,
                 log_excerpt: LogExcerpt = _no_log) -> dict[str, Any]:
    """Promote the best of this run's judged, passing candidates; the rest stay as they are.

    Returns ``{"promoted": version | None, "champion": version | None, "pruned": [...],
    "held": ["version (status)", ...]}``, ``held`` naming this run's versions not promoted
    because an earlier decision about them stands.
    """
    entries = [registry.get(v) for v in versions]
    passing = [e for e in entries if e["status"] == "candidate" and (e.get("judgement") or {}).get("passed")]
    # A reused version that was promoted or rolled back before is not promoted again: after a
    # rollback the same recipe comes up each night until new data arrives, and the owner's
    # rollback stands.
    held = [f"{e['version']} ({e['status']})" for e in entries if e["status"] in ("promoted", "rolled_back")]
    promoted = None
    if passing:
        # Two passing candidates (full and incremental) were each judged against this champion.
        best = max(passing, key=lambda e: (e["measured"]["val_accuracy"], e["measured"]["elite_accuracy"]))
        promoted = best["version"]
        registry.promote(promoted, by=f"run {run_id}" if run_id else "promotion",
                         reason="passed every blocking gate", expected_champion=best.get("judged_against"))
        for other in passing:
            if other["version"] != promoted:
                registry.reject(other["version"], [f"{promoted} from the same run was promoted instead"],
                                by=f"run {run_id}")
        write_report(settings, registry, promoted, "promoted")
        export_champion(settings, registry, notify)
        m, pair = best["measured"], best.get("paired") or {}
        gain = (f", {100 * pair['gain']:+.2f} points over {best.get('judged_against')} on {pair['rows']:,} gate rows, "
                f"p = {pair['p_value']:.2g}") if "p_value" in pair else ""
        notify("promoted", f"model {promoted} is the new champion (val {m['val_accuracy']:.4f}, "
                           f"elite {m['elite_accuracy']:.4f}{gain})",
               report_details(promoted, gate_table(best), run_id=run_id, log_excerpt=log_excerpt,
                              previous=best.get("judged_against") or "none", summary=best.get("summary", "")))
    pruned = apply_retention(settings, registry)
    champion = registry.champion()
    return {"promoted": promoted, "champion": champion["version"] if champion else None, "pruned": pruned,
            "held": held}
