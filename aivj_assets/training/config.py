"""What a training is asked to do (:class:`TrainConfig`) and what it did (:class:`TrainResult`).

Both are importable from :mod:`aivj_assets.training.loop`, the module the assets call.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from aivj_assets.settings import Settings


class TrainError(RuntimeError):
    """Training cannot go on: the loss kept diverging after every allowed recovery."""


@dataclass
class TrainConfig:
    """How to train; build it from the settings with :meth:`from_settings`."""

    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    seed: int
    checkpoint_every: int
    checkpoint_keep: int
    checkpoint_dir: Path
    identity: str = ""
    resume: bool | Path = True  # True: latest checkpoint of this identity; a Path: that file
    device: str = "auto"
    bf16: bool = False
    control_poll_seconds: float = 2.0
    val_loss_rise_epochs: int = 3
    loss_change_max: float = 0.5
    nan_max_recoveries: int = 3
    worsen_epochs: int = 2
    warmup_steps: int = 100
    min_lr_fraction: float = 0.05  # cosine decays to this share of the learning rate
    grad_clip: float = 0.0  # max gradient norm; 0 = off
    checkpoint_background: bool = True  # write checkpoints from a CPU snapshot while training goes on
    progress_seconds: float = 30.0
    manifest_hash: str = ""  # the data manifest hash, recorded in every checkpoint
    # Resumed on other data mid-epoch: True restarts that epoch on the current rows (so every
    # row of the data a version records has been trained on); False finishes it on its rows.
    restart_epoch_on_new_data: bool = False
    loss_log: Path | None = None  # "step loss" lines, exactly those of the surviving trajectory

    @classmethod
    def from_settings(
        cls, settings: Settings, *, epochs: int, identity: str, checkpoint_dir: Path | None = None, **extra: Any
    ) -> TrainConfig:
        """The settings' training values for a run of ``epochs`` named ``identity``."""
        s = settings
        return cls(
            epochs=epochs, batch_size=s.batch_size, learning_rate=s.learning_rate, weight_decay=s.weight_decay,
            seed=s.seed, checkpoint_every=s.checkpoint_every, checkpoint_keep=s.checkpoint_keep,
            checkpoint_dir=Path(checkpoint_dir) if checkpoint_dir is not None else s.checkpoints_dir,
            identity=identity, device=s.device, bf16=s.bf16, control_poll_seconds=s.control_poll_seconds,
            val_loss_rise_epochs=s.val_loss_rise_epochs, loss_change_max=s.loss_change_max,
            nan_max_recoveries=s.nan_max_recoveries, worsen_epochs=s.worsen_epochs, **extra,
        )


@dataclass
class TrainResult:
    """What a call to :func:`train` did; ``state_dict`` is the best epoch's weights when finished."""

    status: str  # "finished" | "paused" | "stopped"
    state_dict: dict[str, torch.Tensor]
    history: list[dict[str, Any]]
    events: list[dict[str, Any]]
    metrics: dict[str, Any]
    steps: int
    samples: int
    seconds: float
    resumed_from: str | None
    checkpoint: str | None = None  # the last checkpoint written or resumed
    best_epoch: int = -1


def resolve_device(name: str) -> torch.device:
    """"auto" is CUDA when present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
