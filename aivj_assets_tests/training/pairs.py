"""Small pair tables in the store schema, with a known coupling rule, for the training tests."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from aivj_assets.data.split import row_hashes


def pair_table(n: int = 2000, audio_dim: int = 12, preset_dim: int = 6, seed: int = 0,
               weights: bool = False) -> pa.Table:
    """Rows whose label is whether the audio's first ``preset_dim`` features align with the preset."""
    rng = np.random.default_rng(seed)
    audio = rng.normal(size=(n, audio_dim)).astype(np.float32)
    preset = rng.normal(size=(n, preset_dim)).astype(np.float32)
    label = ((audio[:, :preset_dim] * preset).sum(axis=1) > 0).astype(np.int8)
    weight = rng.uniform(0.5, 1.5, size=n).astype(np.float32) if weights else np.ones(n, np.float32)
    return pa.table({
        "audio": pa.array(list(audio), type=pa.list_(pa.float32())),
        "preset": pa.array(list(preset), type=pa.list_(pa.float32())),
        "label": pa.array(label, type=pa.int8()),
        "weight": pa.array(weight, type=pa.float32()),
        "pair_id": pa.array([None] * n, type=pa.string()),
        "row_hash": pa.array(row_hashes(audio, preset, label), type=pa.string()),
    })
