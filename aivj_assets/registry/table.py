"""The ``aivj versions`` table: each version as judged, its status, the champion."""

from __future__ import annotations

from typing import Any

from aivj_assets.registry.versions import Registry


def versions_table(registry: Registry) -> str:
    """Each version as judged (on the gate rows, against the champion of the day: gain in points
    with its 95% interval, one-sided p), its status, and which is the champion."""
    doc = registry.load()
    rows = [("", "version", "created", "stage", "status", "val_acc", "elite", "gain (95% CI)", "p", "note")]
    for entry in doc["versions"].values():
        m = entry.get("measured") or {}
        pair = entry.get("paired") or {}
        note = entry.get("summary") or "; ".join(entry.get("reasons") or [])
        if entry.get("pruned"):
            note = ("files pruned; " + note).rstrip("; ")
        gain = (f"{100 * pair['gain']:+.2f} [{100 * pair['gain_low']:+.2f}, {100 * pair['gain_high']:+.2f}]"
                if "gain" in pair else "-")
        rows.append((
            "*" if entry["version"] == doc.get("champion") else "",
            entry["version"], entry.get("time", "")[:19], entry.get("stage", ""), entry["status"],
            _fmt(m.get("val_accuracy")), _fmt(m.get("elite_accuracy")), gain,
            f"{pair['p_value']:.2g}" if "p_value" in pair else "-", note[:70],
        ))
    if len(rows) == 1:
        return f"no model versions in {registry.root}"
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    champion = doc.get("champion")
    lines.append(f"champion: {champion}" if champion else "champion: none")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return f"{float(value):.4f}" if isinstance(value, (int, float)) else "-"
