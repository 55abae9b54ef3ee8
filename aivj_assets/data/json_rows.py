"""Parsed JSON rows as columns of the contract's types, for the rules that judge whole columns.

A JSON-lines file that pyarrow cannot parse whole is parsed line by line; its objects become
columns here. A value of another type than the contract's (a string for a number, a list of
booleans) becomes null, with its row's reason; every other rule is judged on the columns.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from aivj_assets.settings import Settings

_LIST = pa.list_(pa.float64())


def typed_columns(objects: list[dict], settings: Settings) -> tuple[pa.Table, dict[int, str]]:
    """The parsed rows as columns of the contract's types; a value of another type becomes null,
    with its row's reason (index -> reason: the first problem found in the row)."""
    wrong: dict[int, str] = {}
    columns: dict[str, list] = {name: [] for name in (settings.audio_field, settings.preset_field,
                                                        settings.label_field, settings.weight_field,
                                                        settings.pair_id_field)}
    for i, obj in enumerate(objects):
        for name in columns:
            value, reason = _typed(name, obj.get(name), settings)
            columns[name].append(value)
            if reason and i not in wrong:
                wrong[i] = reason
    types = {settings.audio_field: _LIST, settings.preset_field: _LIST, settings.label_field: pa.float64(),
             settings.weight_field: pa.float64(), settings.pair_id_field: pa.string()}
    return pa.table({name: pa.array(values, types[name]) for name, values in columns.items()}), wrong


def nonfinite_reason(name: str) -> str:
    """Why a row whose vector ``name`` holds NaN, Inf, null or a number beyond float32 is bad."""
    return f"{name} has NaN, Inf or null values"


WEIGHT_REASON = "weight must be a finite number >= 0"


def label_reason(shown: str) -> str:
    """Why a row whose label is ``shown`` (not 0, 1 or a boolean) is bad."""
    return f"label must be 0/1 or a boolean, got {shown}"


def _typed(name: str, value: Any, f: Settings) -> tuple[Any, str | None]:
    """``value`` as its column's type, or (None, why not); a missing value is None, no reason.
    Only the type is judged here: the values are judged on the columns, by the contract's rules."""
    if value is None:
        return None, None
    try:
        if name in (f.audio_field, f.preset_field):
            if not isinstance(value, list) or not all(x is None or _is_number(x) for x in value):
                return None, f"{name} must be a list of numbers"
            return [None if x is None else float(x) for x in value], None
        if name == f.label_field:
            if isinstance(value, bool) or _is_number(value):
                return float(value), None
            return None, label_reason(repr(value)[:40])
        if name == f.weight_field:
            return (float(value), None) if _is_number(value) else (None, WEIGHT_REASON)
        return (str(value), None) if isinstance(value, str | int) and not isinstance(value, bool) else (
            None, "pair_id must be a string")
    except OverflowError:  # an integer beyond even float64: beyond float32 too, as the rules say
        return None, (nonfinite_reason(name) if name in (f.audio_field, f.preset_field)
                      else WEIGHT_REASON if name == f.weight_field else label_reason(repr(value)[:40]))


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)
