"""Test-then-train: the champion scored on every new file before any model trains on it.

A new file's rows are data the champion has never seen, so its accuracy on them is a true
out-of-time accuracy: the one number that says how the model does on tomorrow's music.
Each partition's score is recorded in ``store/out_of_time.json``; a score more than
``drift_drop`` points under the trailing mean of the last ``drift_window`` files warns once:
the world changed, or the data went bad.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from aivj_assets.data.atomic import file_lock, read_json, write_json_atomic
from aivj_assets.data.store import Store
from aivj_assets.policy.data_gates import OUT_OF_TIME
from aivj_assets.policy.evidence import wilson_interval
from aivj_assets.policy.gates import Gate
from aivj_assets.registry import Registry
from aivj_assets.settings import Settings, version_settings
from aivj_assets.training.dataset import tensors_from_table
from aivj_assets.training.metrics import predict
from aivj_assets.training.model import build_model, load_state_dict

MIN_HISTORY = 3  # files needed before a trailing mean means anything


@dataclass(frozen=True)
class OutOfTime:
    """The champion's accuracy on one new partition, against the recent files' trailing mean."""

    partition: str
    champion: str
    accuracy: float
    rows: int
    interval: tuple[float, float]
    trailing_mean: float | None  # None until MIN_HISTORY earlier files were scored
    trailing_files: int
    scored_at: str
    alerted: bool = False

    @property
    def drop_points(self) -> float:
        """Points under the trailing mean (negative: above it); 0 without a trailing mean."""
        return 0.0 if self.trailing_mean is None else 100.0 * (self.trailing_mean - self.accuracy)

    def passed(self, max_drop_points: float) -> bool:
        return self.drop_points <= max_drop_points

    def line(self) -> str:
        mean = "no trailing mean yet" if self.trailing_mean is None else (
            f"trailing mean {self.trailing_mean:.4f} of {self.trailing_files} files, {-self.drop_points:+.2f} points")
        return f"champion {self.champion} on {self.rows:,} new rows of {self.partition}: {self.accuracy:.4f} ({mean})"


def gate_out_of_time(result: OutOfTime | None, settings: Settings, error: str = "") -> Gate:
    """Warning: the new file's out-of-time score is not far under the trailing mean. No score is no
    pass when scoring failed (``error``); with no champion, or one trained on the file, it passes."""
    if error:
        return Gate(OUT_OF_TIME, False, "not scored", settings.drift_drop, False, f"could not score the champion: {error}"[:500])
    if result is None:
        return Gate(OUT_OF_TIME, True, "not scored", settings.drift_drop, False,
                    "no champion, the champion was trained on this file, or the file had no good rows")
    return Gate(OUT_OF_TIME, result.passed(settings.drift_drop), result.drop_points, settings.drift_drop, False, result.line(),
                candidate=result.accuracy, interval=result.interval,
                detail={"champion_accuracy": result.accuracy, "champion_version": result.champion, "rows": result.rows,
                        "drop_points": result.drop_points, "bound_points": settings.drift_drop,
                        "trailing_mean": result.trailing_mean if result.trailing_mean is not None else -1.0,
                        "trailing_files": result.trailing_files})


def _path(settings: Settings):
    return settings.store_dir / "out_of_time.json"


def records(settings: Settings) -> dict[str, dict[str, Any]]:
    """Every partition's recorded score by partition key."""
    doc = read_json(_path(settings), {})
    return doc.get("records", {}) if isinstance(doc, dict) else {}


def score_partition(settings: Settings, registry: Registry, key: str, *,
                    notify: Callable[[str, str, dict[str, Any] | None], None],
                    log: Callable[[str], None] = print) -> OutOfTime | None:
    """Score the champion on partition ``key``'s rows and record it; None when there is no champion,
    the champion has already trained on them (then it is not out of time), or they are none."""
    champion = registry.champion()
    if champion is None:
        log(f"{key}: no champion yet, nothing to score out of time")
        return None
    name = champion["version"]
    meta = registry.meta(name)
    if key in (meta.get("data_partitions") or []):
        log(f"{key}: champion {name} was trained on it: not an out-of-time score")
        return None
    correct, rows = _champion_correct(settings, registry, name, meta, key)
    if rows == 0:  # every row was bad: there is nothing to score, and no score joins the mean
        log(f"{key}: no good rows to score the champion on")
        return None
    with file_lock(settings.store_dir / ".out_of_time.lock"):
        doc = records(settings)
        earlier = sorted((r for k, r in doc.items() if k != key), key=lambda r: r["scored_at"])
        recent = [r for r in earlier if math.isfinite(r["accuracy"])][-settings.drift_window:] \
            if settings.drift_window > 0 else []
        mean = sum(r["accuracy"] for r in recent) / len(recent) if len(recent) >= MIN_HISTORY else None
        result = OutOfTime(key, name, correct / rows, rows, wilson_interval(correct, rows), mean,
                           len(recent), datetime.now(timezone.utc).isoformat(timespec="seconds"),
                           alerted=bool(doc.get(key, {}).get("alerted")))
        log(result.line())
        if not result.passed(settings.drift_drop) and not result.alerted:
            notify("drift", f"the champion scored {result.accuracy:.4f} on new file {key}, "
                                  f"{result.drop_points:.1f} points under the trailing mean of the last "
                                  f"{result.trailing_files} files: the world changed, or the data went bad",
                   {"partition": key, "champion": name, "accuracy": result.accuracy,
                    "trailing_mean": result.trailing_mean, "drop_points": result.drop_points,
                    "bound_points": settings.drift_drop, "rows": rows})
            result = OutOfTime(**{**asdict(result), "alerted": True})
        doc[key] = {**asdict(result), "interval": list(result.interval)}
        write_json_atomic(_path(settings), {"records": doc})
    return result


def _champion_correct(settings: Settings, registry: Registry, name: str, meta: dict[str, Any],
                      key: str) -> tuple[int, int]:
    """How many of partition ``key``'s rows the champion gets right, of how many."""
    rows = tensors_from_table(Store(settings).read_partitions([key]), f"partition {key}")
    if len(rows) == 0:
        return 0, 0
    model = build_model(version_settings(settings, meta), rows.audio_dim, rows.preset_dim)
    model.load_state_dict(load_state_dict(registry.weights_path(name)))
    correct = predict(model, rows) == (rows.label.numpy() > 0.5)
    return int(correct.sum()), len(rows)
