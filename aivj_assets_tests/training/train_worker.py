"""A tiny training run in its own process, for the crash test: ``python -m ... CKPT_DIR LOSS_LOG``.

Each step is slowed by the control callable (polled every step) so that a test has time
to kill the process mid-epoch; the training itself is the real loop.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from aivj_assets.training.dataset import PairTensors, split_parts, tensors_from_table
from aivj_assets.training.loop import TrainConfig, train
from aivj_assets.training.model import CouplingNet
from aivj_assets_tests.builders import pair_table

EPOCHS = 3
BATCH = 32


def pairs() -> tuple[PairTensors, PairTensors]:
    """(train, selection) rows of the crash test: the same in every process."""
    data = tensors_from_table(pair_table(n=3300, audio_dim=12, preset_dim=6, seed=3, weights=True))
    train_rows, selection, _ = split_parts(data, 0.1, 0.05)
    return train_rows, selection


def main(checkpoint_dir: Path, loss_log: Path, step_seconds: float) -> None:
    torch.set_num_threads(1)
    train_rows, selection = pairs()
    torch.manual_seed(1)
    model = CouplingNet(12, 6, hidden_dim=32, embed_dim=8)
    config = TrainConfig(
        epochs=EPOCHS, batch_size=BATCH, learning_rate=3e-3, weight_decay=1e-2, seed=7, checkpoint_every=25,
        checkpoint_keep=5, checkpoint_dir=checkpoint_dir, identity="crash-test", control_poll_seconds=0.0,
        warmup_steps=20, loss_log=loss_log,
    )

    def slow(progress: dict) -> str:
        time.sleep(step_seconds)
        return "continue"

    result = train(model, train_rows, selection=selection, config=config, control=slow,
                   log=lambda line: print(line, flush=True))
    print(f"RESULT {result.status} steps={result.steps} resumed_from={result.resumed_from}", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]))
