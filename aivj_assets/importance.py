"""Which input features a model relies on: permutation importance on the validation set.

A feature's importance is how much accuracy falls when that one column is shuffled across
rows (its link to the label broken, its distribution kept). Names follow the input
vectors: ``audio[3]``, ``preset[12]``. Plain PyTorch, no Dagster.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from aivj_assets.settings import Settings

MAX_ROWS = 2000  # rows scored: a stable top-10 ranking at a few seconds for the default model on 2 cores
MAX_BATCH_ROWS = 65536  # permuted rows scored per forward pass


def feature_names(audio_dim: int, preset_dim: int) -> list[str]:
    """Column names in model input order: audio first, then preset."""
    return [f"audio[{i}]" for i in range(audio_dim)] + [f"preset[{j}]" for j in range(preset_dim)]


@torch.no_grad()
def permutation_importance(
    model: nn.Module,
    data: Any,
    *,
    top: int = 10,
    seed: int = 0,
    audio_dim: int,
    preset_dim: int,
    max_rows: int = MAX_ROWS,
) -> list[tuple[str, float]]:
    """The ``top`` features by accuracy drop when permuted, largest first: ``[(name, drop)]``.

    ``data`` holds ``audio [N, A]``, ``preset [N, P]`` and ``label [N]`` tensors (a
    ``PairTensors``); at most ``max_rows`` rows, drawn with ``seed``, are scored.
    """
    audio, preset, label = data.audio, data.preset, data.label
    if audio.shape[1] != audio_dim or preset.shape[1] != preset_dim:
        raise ValueError(
            f"importance: data has audio {audio.shape[1]} / preset {preset.shape[1]} columns, "
            f"expected {audio_dim} / {preset_dim}"
        )
    n = audio.shape[0]
    if n == 0:
        raise ValueError("importance: no validation rows to score")
    gen = torch.Generator().manual_seed(seed)
    if n > max_rows:
        rows = torch.randperm(n, generator=gen)[:max_rows]
        audio, preset, label = audio[rows], preset[rows], label[rows]
        n = max_rows
    device = next(iter(model.parameters()), torch.empty(0)).device
    x = torch.cat([audio, preset], dim=1).float().to(device)
    truth = label.to(device) > 0.5
    width = audio_dim + preset_dim

    was_training = model.training
    model.eval()
    try:
        base = ((model(x[:, :audio_dim], x[:, audio_dim:]) > 0) == truth).float().mean().item()
        drops = torch.empty(width)
        per_batch = max(1, MAX_BATCH_ROWS // n)
        for start in range(0, width, per_batch):
            cols = torch.arange(start, min(start + per_batch, width))
            k = len(cols)
            # k copies of the rows, copy i with column cols[i] shuffled by its own permutation.
            batch = x.repeat(k, 1).view(k, n, width)
            perms = torch.argsort(torch.rand(k, n, generator=gen), dim=1).to(device)
            shuffled = x[:, cols.to(device)].T.gather(1, perms)  # [k, n]
            batch[torch.arange(k, device=device), :, cols.to(device)] = shuffled
            flat = batch.view(k * n, width)
            hit = (model(flat[:, :audio_dim], flat[:, audio_dim:]) > 0).view(k, n) == truth
            drops[start : start + k] = base - hit.float().mean(dim=1).cpu()
    finally:
        model.train(was_training)
    names = feature_names(audio_dim, preset_dim)
    order = torch.argsort(drops, descending=True, stable=True)[:top]
    return [(names[i], float(drops[i])) for i in order.tolist()]


def importance_markdown(items: list[tuple[str, float]]) -> str:
    """A Markdown table of ``(feature, accuracy drop)`` pairs for asset metadata."""
    lines = ["| rank | feature | accuracy drop when permuted |", "| ---: | --- | ---: |"]
    for rank, (name, drop) in enumerate(items, 1):
        lines.append(f"| {rank} | `{name}` | {drop:+.4f} |")
    return "\n".join(lines)


def importance_for_version(settings: Settings, version: str, *, top: int = 10, seed: int = 0) -> list[tuple[str, float]]:
    """Permutation importance of a registered version on the validation rows of the data it saw."""
    import pyarrow as pa

    from aivj_assets.data.split import validation_mask
    from aivj_assets.data.store import Store
    from aivj_assets.registry import Registry
    from aivj_assets.training.dataset import tensors_from_table
    from aivj_assets.training.model import build_model, load_state_dict

    registry = Registry(settings.models_dir)
    keys = registry.meta(version).get("data_partitions") or None
    table = Store(settings).read_partitions(keys)
    # Pick validation rows on the hash column first: only those become tensors.
    val = validation_mask(table.column("row_hash").to_numpy(zero_copy_only=False), settings.val_fraction)
    data = tensors_from_table(table.filter(pa.array(val)), "store (validation rows)")
    model = build_model(settings, data.audio_dim, data.preset_dim)
    model.load_state_dict(load_state_dict(registry.weights_path(version)))
    return permutation_importance(model, data, top=top, seed=seed,
                                  audio_dim=data.audio_dim, preset_dim=data.preset_dim)
