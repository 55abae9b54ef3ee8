"""On demo data from the store, training gets within 2 points of the best any model can do."""

from __future__ import annotations

from pathlib import Path

import torch

from aivj_assets.data.contract import read_pairs
from aivj_assets.data.generate import write_demo_data
from aivj_assets.data.store import Store
from aivj_assets.training.dataset import split_parts, tensors_from_table
from aivj_assets.training.loop import TrainConfig, train
from aivj_assets.training.metrics import evaluate
from aivj_assets.training.model import build_model


def test_training_reaches_bayes_accuracy_within_two_points(aivj_env, tmp_path: Path):
    settings = aivj_env.replace(hidden_dim=64, embed_dim=32)
    manifest = write_demo_data(settings.data_dir, pairs=30_000, elite=64, seed=0)
    store = Store(settings)
    for i, name in enumerate(manifest["files"]):  # the store, as ingest leaves it
        rows = read_pairs(Path(name), Path(name).read_bytes(), settings, store.lineage())
        store.write_partition(f"demo-{i}", rows.table, {"content_hash": str(i)})
    train_rows, selection, gate = split_parts(tensors_from_table(store.read_partitions()),
                                              settings.selection_fraction, settings.gate_fraction)
    torch.manual_seed(0)
    model = build_model(settings, manifest["audio_dim"], manifest["preset_dim"])
    config = TrainConfig.from_settings(settings, epochs=6, identity="bayes")
    config.batch_size, config.learning_rate = 256, 5e-3
    result = train(model, train_rows, selection=selection, config=config, log=lambda line: None)
    assert result.status == "finished"
    model.load_state_dict(result.state_dict)
    accuracy = evaluate(model, gate)["accuracy"]  # rows that picked nothing: an unbiased figure
    assert accuracy >= manifest["bayes_accuracy"] - 0.02, (accuracy, manifest["bayes_accuracy"])
