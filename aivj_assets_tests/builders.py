"""The one set of test data builders: rows, files, corpora, stored tables, weights and homes.

Everything is generated (the demo's coupling function, or a simple alignment rule for the
training loop's own tests), small, and seeded: a test says what it needs in one call.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from aivj_assets.data.elite import build_elite_set
from aivj_assets.data.generate import REFINED_DIR, draw_elite, draw_pairs
from aivj_assets.data.ingest import ingest_partition
from aivj_assets.data.scan import scan_tick
from aivj_assets.data.split import row_hashes
from aivj_assets.registry import Registry
from aivj_assets.settings import Settings, load_settings
from aivj_assets.training.model import CouplingNet, save_state_dict

# Small, fast models that still clear the real gates on the demo task in a few seconds.
TRAINING_ENV = {
    "AIVJ_HIDDEN_DIM": "64", "AIVJ_EMBED_DIM": "32", "AIVJ_BATCH_SIZE": "128", "AIVJ_LEARNING_RATE": "0.003",
    "AIVJ_WARMUP_EPOCHS": "2", "AIVJ_FULL_EPOCHS": "8", "AIVJ_INCREMENTAL_EPOCHS": "4",
    "AIVJ_CHECKPOINT_EVERY": "1000", "AIVJ_DEVICE": "cpu",
}


# --- rows and files ---------------------------------------------------------------------------
def rows(n: int, seed: int = 0, audio_dim: int = 32, preset_dim: int = 24) -> list[dict]:
    """``n`` valid rows of the demo task as dicts (what a JSON-lines file holds)."""
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
    """Write dict records as a Parquet file (pyarrow infers the column types)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(records), path)
    return path


def write_pairs(path: Path, audio: np.ndarray, preset: np.ndarray, labels: np.ndarray) -> Path:
    """Matrices of pairs as a Parquet data file (fixed-size float lists, int8 labels)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({
        "audio": pa.FixedSizeListArray.from_arrays(pa.array(audio.ravel(), pa.float32()), audio.shape[1]),
        "preset": pa.FixedSizeListArray.from_arrays(pa.array(preset.ravel(), pa.float32()), preset.shape[1]),
        "label": pa.array(labels.astype(np.int8)),
    }), path)
    return path


# --- corpora in a data folder -----------------------------------------------------------------------
def write_new_file(settings: Settings, name: str, n: int, seed: int, *, shuffle_labels: bool = False) -> Path:
    """One more data file of the demo task; ``shuffle_labels`` breaks the feature-label link."""
    rng = np.random.default_rng(seed)
    audio, preset, _, labels = draw_pairs(n, rng)
    if shuffle_labels:
        labels = rng.permutation(labels)
    return write_pairs(settings.data_dir / REFINED_DIR / f"{name}.parquet", audio, preset, labels)


def write_base_corpus(settings: Settings, pairs: int = 8000, elite: int = 400) -> None:
    """The demo task's corpus as one file (each file costs a raw_pairs run) and its elite folder."""
    write_new_file(settings, "base", pairs, seed=0)
    audio, preset, _, labels = draw_elite(elite, np.random.default_rng(1))
    write_pairs(settings.elite_path / "elite.parquet", audio, preset, labels)


def home_settings(root: Path, **env: str) -> Settings:
    """Settings of a fresh home under ``root`` (data, home, instance) with the small-model training
    values, read from an explicit environment: two of them side by side are two machines."""
    base = {"AIVJ_HOME": str(root / "home"), "AIVJ_DATA_DIR": str(root / "data"),
            "DAGSTER_HOME": str(root / "dagster_home"), "AIVJ_SETTLE_SECONDS": "0", **TRAINING_ENV, **env}
    return load_settings(env=base, env_file=root / "no.env")


def ingest_plainly(settings: Settings) -> list[str]:
    """Ingest every settled file and the elite folder through the data layer alone (no Dagster):
    what the raw_pairs and elite_set assets do, for tests that train stages directly."""
    plan = scan_tick(settings, 0)
    keys = [r.partition for r in plan.requests]
    for key in keys:
        ingest_partition(settings, key)
    scan_tick(settings, plan.last_seq)
    build_elite_set(settings)
    return keys


# --- tables in the store's schema, for the training loop ---------------------------------------------
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


# --- weights and versions -------------------------------------------------------------------------------
def state_file(path: Path, seed: int, audio_dim: int = 32, preset_dim: int = 24, hidden: int = 16,
               embed: int = 8) -> Path:
    """A CouplingNet state dict saved at ``path`` (the owner's kind of model file)."""
    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_state_dict(path, CouplingNet(audio_dim, preset_dim, hidden_dim=hidden, embed_dim=embed).state_dict())
    return path


def register_state(registry: Registry, state: dict[str, torch.Tensor], meta: dict) -> str:
    """Register a state dict as a version, the way the training stages do."""
    return registry.register(lambda path: save_state_dict(path, state), meta)
