"""Small data files for tests, drawn from the demo's coupling function."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from aivj_assets.data.demo import draw_pairs


def rows(n: int, seed: int = 0, audio_dim: int = 32, preset_dim: int = 24) -> list[dict]:
    """``n`` valid rows as dicts."""
    a, p, _, labels = draw_pairs(n, np.random.default_rng(seed), audio_dim, preset_dim)
    return [
        {"audio": np.round(a[i].astype(float), 4).tolist(), "preset": np.round(p[i].astype(float), 4).tolist(),
         "label": int(labels[i])}
        for i in range(n)
    ]


def write_jsonl(path: Path, records: list, extra_lines: list[str] | None = None) -> Path:
    """Write records (dicts, or raw strings written as they are) one a line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records] + (extra_lines or [])
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_parquet(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(records), path)
    return path
