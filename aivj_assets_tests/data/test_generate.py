"""Demo data: files, manifest with the Bayes-optimal accuracy, clean elite, and learnable."""

from __future__ import annotations

import json

import numpy as np
import torch

from aivj_assets.data.contract import read_pairs
from aivj_assets.data.generate import MANIFEST_NAME, coupling_probability, write_demo_data


def test_demo_data_files_manifest_and_elite(tmp_path, aivj_env):
    manifest = write_demo_data(tmp_path, pairs=3000, elite=64, seed=3)
    assert manifest == json.loads((tmp_path / MANIFEST_NAME).read_text())
    suffixes = sorted({f.rsplit(".", 1)[1] for f in manifest["files"]})
    assert suffixes == ["jsonl", "parquet"] and len(manifest["files"]) >= 4
    total = 0
    for f in manifest["files"]:
        out = read_pairs(f, open(f, "rb").read(), aivj_env, None)
        assert not out.bad and (out.audio_dim, out.preset_dim) == (32, 24)
        total += out.rows
    assert total == 3000 and manifest["pairs"] == 3000
    assert 0.93 <= manifest["bayes_accuracy"] <= 0.98
    elite = read_pairs(manifest["elite_files"][0], open(manifest["elite_files"][0], "rb").read(), aivj_env, None)
    prob = coupling_probability(elite.audio, elite.preset)
    labels = elite.table.column("label").to_numpy()
    assert elite.rows == 64 and np.all(np.where(labels == 1, prob, 1 - prob) >= 0.98)
    # Same seed, same corpus.
    again = write_demo_data(tmp_path / "again", pairs=3000, elite=64, seed=3)
    assert again["bayes_accuracy"] == manifest["bayes_accuracy"]


def test_a_small_mlp_learns_the_coupling_in_seconds(tmp_path, aivj_env):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    from aivj_assets.data.generate import draw_pairs

    a, p, _, y = draw_pairs(6000, np.random.default_rng(0))
    x = torch.tensor(np.concatenate([a, p], 1))
    t = torch.tensor(y, dtype=torch.float32)
    model = torch.nn.Sequential(torch.nn.Linear(56, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 1))
    opt = torch.optim.AdamW(model.parameters(), 1e-3, weight_decay=1e-2)
    for _ in range(8):
        for idx in torch.randperm(5000).split(128):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x[idx]).squeeze(1), t[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        accuracy = ((model(x[5000:]).squeeze(1) > 0).float() == t[5000:]).float().mean().item()
    assert accuracy >= 0.88
