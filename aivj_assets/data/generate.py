"""Demo data with a known coupling function, so every test and benchmark knows the best possible.

Audio and preset vectors are standard normal. The coupling score is a rank-1 bilinear form
plus linear terms, ``s = (u1.a)(v1.p) + 0.5 w.a + 0.5 v2.p``; a pair is good
with probability ``sigmoid(K s)``. The function is fixed (its own seed), so corpora drawn
with different seeds pose the same task. Elite pairs are clean: confident (probability
beyond ``ELITE_CONFIDENCE``) and labelled with the likelier label.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from aivj_assets.data.atomic import write_atomic, write_text_atomic

AUDIO_DIM = 32
PRESET_DIM = 24
FUNCTION_SEED = 20240601
SHARPNESS = 12.0  # K: sets the label noise, hence the Bayes-optimal accuracy (~0.96)
ELITE_CONFIDENCE = 0.99
REFINED_DIR = "aivj_coupled_refinery_v2"
ELITE_DIR = "AIVJ_FINAL_ELITE"
MANIFEST_NAME = "demo_manifest.json"
DECIMALS = 4  # JSON carries 4 decimals; probabilities are computed on the stored values


def _unit(rng: np.random.Generator, dim: int) -> np.ndarray:
    v = rng.standard_normal(dim)
    return v / np.linalg.norm(v)


def coupling_probability(audio: np.ndarray, preset: np.ndarray) -> np.ndarray:
    """P(label = 1) of each pair under the demo's coupling function."""
    rng = np.random.default_rng(FUNCTION_SEED)
    u1, w = (_unit(rng, audio.shape[1]) for _ in range(2))
    v1, v2 = (_unit(rng, preset.shape[1]) for _ in range(2))
    a = audio.astype(np.float64)
    p = preset.astype(np.float64)
    score = (a @ u1) * (p @ v1) + 0.5 * (a @ w) + 0.5 * (p @ v2)
    return 1.0 / (1.0 + np.exp(-SHARPNESS * score))


def draw_pairs(n: int, rng: np.random.Generator, audio_dim: int = AUDIO_DIM, preset_dim: int = PRESET_DIM):
    """``n`` pairs: (audio, preset, probability, label drawn from the probability)."""
    audio = np.round(rng.standard_normal((n, audio_dim)), DECIMALS).astype(np.float32)
    preset = np.round(rng.standard_normal((n, preset_dim)), DECIMALS).astype(np.float32)
    prob = coupling_probability(audio, preset)
    labels = (rng.random(n) < prob).astype(np.int8)
    return audio, preset, prob, labels


def draw_elite(n: int, rng: np.random.Generator, audio_dim: int = AUDIO_DIM, preset_dim: int = PRESET_DIM):
    """``n`` clean, confident pairs labelled with the likelier label."""
    kept_a, kept_p, kept_prob = [], [], []
    have = 0
    while have < n:
        a, p, prob, _ = draw_pairs(max(4 * n, 1024), rng, audio_dim, preset_dim)
        sure = np.maximum(prob, 1 - prob) >= ELITE_CONFIDENCE
        kept_a.append(a[sure])
        kept_p.append(p[sure])
        kept_prob.append(prob[sure])
        have += int(sure.sum())
    audio = np.concatenate(kept_a)[:n]
    preset = np.concatenate(kept_p)[:n]
    prob = np.concatenate(kept_prob)[:n]
    return audio, preset, prob, (prob >= 0.5).astype(np.int8)


def write_demo_data(
    directory: Path, *, pairs: int = 104_040, elite: int = 512, seed: int = 0,
    audio_dim: int = AUDIO_DIM, preset_dim: int = PRESET_DIM,
) -> dict:
    """Write refined pairs (several .jsonl and .parquet files), an elite folder and a manifest."""
    directory = Path(directory)
    for option, value in (("--pairs", pairs), ("--elite", elite)):
        if value < 1:
            raise ValueError(f"demo data: {option} must be at least 1, got {value}")
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"demo data: {directory} is a file, not a folder")
    rng = np.random.default_rng(seed)
    audio, preset, prob, labels = draw_pairs(pairs, rng, audio_dim, preset_dim)
    n_files = min(6, max(1, pairs // 500))
    bounds = np.linspace(0, pairs, n_files + 1).astype(int)
    files = []
    for i in range(n_files):
        lo, hi = bounds[i], bounds[i + 1]
        ids = [f"s{seed}-{j}" for j in range(lo, hi)]
        if i % 2 == 0:
            path = directory / REFINED_DIR / f"pairs_{seed}_{i:02d}.jsonl"
            _write_jsonl(path, audio[lo:hi], preset[lo:hi], labels[lo:hi], ids)
        else:
            path = directory / REFINED_DIR / f"pairs_{seed}_{i:02d}.parquet"
            _write_parquet(path, audio[lo:hi], preset[lo:hi], labels[lo:hi], ids)
        files.append(str(path))
    ea, ep, eprob, elabels = draw_elite(elite, np.random.default_rng([seed, 1]), audio_dim, preset_dim)
    elite_path = directory / ELITE_DIR / f"elite_pairs_{seed}.jsonl"
    _write_jsonl(elite_path, ea, ep, elabels, [f"e{seed}-{j}" for j in range(len(elabels))])
    manifest = {
        "pairs": int(pairs),
        "elite": int(len(elabels)),
        "files": files,
        "elite_files": [str(elite_path)],
        "seed": seed,
        "audio_dim": audio_dim,
        "preset_dim": preset_dim,
        "function": "sigmoid(K*((u1.a)(v1.p) + 0.5 w.a + 0.5 v2.p))",
        "sharpness": SHARPNESS,
        "bayes_accuracy": float(np.mean(np.maximum(prob, 1 - prob))) if pairs else 0.0,
        "bayes_accuracy_realised": float(np.mean((prob >= 0.5) == labels)) if pairs else 0.0,
        "positive_share": float(labels.mean()) if pairs else 0.0,
        "elite_min_confidence": ELITE_CONFIDENCE,
        "elite_bayes_accuracy": float(np.mean(np.maximum(eprob, 1 - eprob))) if len(eprob) else 0.0,
    }
    write_text_atomic(directory / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")
    return manifest


def _write_jsonl(path: Path, audio, preset, labels, ids) -> None:
    a = np.round(audio.astype(np.float64), DECIMALS).tolist()
    p = np.round(preset.astype(np.float64), DECIMALS).tolist()
    lines = [
        json.dumps({"pair_id": i, "audio": ra, "preset": rp, "label": int(lab)}, separators=(",", ":"))
        for i, ra, rp, lab in zip(ids, a, p, labels.tolist(), strict=True)
    ]
    write_text_atomic(path, "\n".join(lines) + "\n")


def _write_parquet(path: Path, audio, preset, labels, ids) -> None:
    n = len(labels)
    table = pa.table(
        {
            "pair_id": pa.array(ids, pa.string()),
            "audio": pa.FixedSizeListArray.from_arrays(pa.array(audio.ravel(), pa.float32()), audio.shape[1]),
            "preset": pa.FixedSizeListArray.from_arrays(pa.array(preset.ravel(), pa.float32()), preset.shape[1]),
            "label": pa.array(labels.astype(bool)),
            "weight": pa.array(np.ones(n, np.float32)),
        }
    )
    write_atomic(path, lambda f: pq.write_table(table, f))
