"""``training_report.json``: the latest judged candidate, as the owner's scripts read it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from aivj_assets.data.atomic import write_json_atomic
from aivj_assets.policy.evidence import ECE_BINS
from aivj_assets.registry import Registry
from aivj_assets.settings import Settings


def write_report(settings: Settings, registry: Registry, version: str, decision: str) -> dict[str, Any]:
    """Write ``training_report.json`` (atomically) for a judged candidate; returns it."""
    entry = registry.get(version)
    meta = registry.meta(version)
    measured = entry.get("measured") or {}
    gates = (entry.get("judgement") or {}).get("gates") or {}
    val_gate = gates.get("val_accuracy") or {}
    report = {
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "version": version, "stage": entry.get("stage"), "decision": decision,
        "summary": entry.get("summary"), "reasons": entry.get("reasons") or [],
        "champion": registry.load().get("champion"), "judged_against": entry.get("judged_against"),
        "model_performance": {
            "cv_accuracy": measured.get("val_accuracy"), "f1_score": measured.get("f1"),
            "elite_accuracy": measured.get("elite_accuracy"), "val_loss": measured.get("val_loss"),
            "precision": measured.get("precision"), "recall": measured.get("recall"),
            "val_rows": measured.get("val_rows"), "elite_rows": measured.get("elite_rows"),
            "ece": measured.get("ece"),
        },
        # cv_accuracy is one hold-out accuracy: on the gate rows, which no model trains or picks epochs on.
        "evaluation": {"method": "holdout", "split": "gate", "rows": measured.get("val_rows"),
                       "interval": val_gate.get("interval"), "interval_method": "Wilson 95%",
                       "signature": measured.get("split")},
        "paired_test": entry.get("paired"),
        "calibration": {"ece": measured.get("ece"), "champion_ece": (entry.get("champion_measured") or {}).get("ece"),
                        "bins": ECE_BINS, "bound": settings.max_ece},
        "champion_performance": entry.get("champion_measured"),
        "gates": gates,
        "warnings": entry.get("warnings") or [],
        "training": {"metrics": meta.get("metrics"), "history": meta.get("history"), "rows": meta.get("rows"),
                     "parent": meta.get("parent"), "data_hash": meta.get("data_hash")},
    }
    write_json_atomic(settings.report_path, plain(report))
    return report


def gate_table(entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A judged version's gates as the owner's table rows, from its registry entry."""
    return list(((entry.get("judgement") or {}).get("gates") or {}).values())


def plain(obj: Any) -> Any:
    """JSON-safe: NaN/Inf become None (strict JSON readers reject them)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [plain(v) for v in obj]
    return obj
