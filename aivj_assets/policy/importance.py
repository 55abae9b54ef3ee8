"""Which input features a model relies on: permutation importance on its selection rows.

A feature's importance is how much accuracy falls when that one column is shuffled across
rows (its link to the label broken, its distribution kept). Names follow the input
vectors: ``audio[3]``, ``preset[12]``. Plain PyTorch, no Dagster.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from aivj_assets.policy.rows import selection_rows
from aivj_assets.registry import Registry
from aivj_assets.settings import Settings, version_settings
from aivj_assets.training.model import build_model, load_state_dict

TOP_FEATURES = 10  # how many features a model materialisation lists
# Rows scored. Each feature's drop is a mean over these rows of (hit before - hit after); its
# standard error is at most sqrt(flip rate / rows): enough rows to rank the top features the
# same way as all selection rows do, few enough to score within a second or so.
MAX_ROWS = 2000
# Permuted rows per forward pass: small enough that one pass's activations (rows x the head's
# input width) stay in cache and need no fresh pages.
MAX_BATCH_ROWS = 4096
_TOWERS = ("embed_audio", "embed_preset", "couple")


def feature_names(audio_dim: int, preset_dim: int) -> list[str]:
    """Column names in model input order: audio first, then preset."""
    return [f"audio[{i}]" for i in range(audio_dim)] + [f"preset[{j}]" for j in range(preset_dim)]


def _shuffled_copies(x: torch.Tensor, cols: torch.Tensor, perms: torch.Tensor) -> torch.Tensor:
    """``len(cols)`` copies of ``x`` stacked, copy i with column ``cols[i]`` reordered by ``perms[i]``."""
    k, n = len(cols), x.shape[0]
    batch = x.repeat(k, 1).view(k, n, x.shape[1])
    batch[torch.arange(k, device=x.device), :, cols] = x[:, cols].T.gather(1, perms)
    return batch.view(k * n, x.shape[1])


def _couple_fixed(model: nn.Module, varied: torch.Tensor, fixed: torch.Tensor, *, audio_varies: bool) -> torch.Tensor:
    """Logits of stacked copies of one side's embeddings against the other side's fixed ones."""
    if callable(getattr(model, "couple_with_fixed", None)):  # CouplingNet: the fixed side's head term once
        return model.couple_with_fixed(varied, fixed, audio_varies=audio_varies)
    k = varied.shape[0] // fixed.shape[0]
    return model.couple(varied, fixed.repeat(k, 1)) if audio_varies else model.couple(fixed.repeat(k, 1), varied)


@torch.no_grad()
def permutation_importance(
    model: nn.Module,
    data: Any,
    *,
    top: int = TOP_FEATURES,
    seed: int = 0,
    audio_dim: int,
    preset_dim: int,
    max_rows: int = MAX_ROWS,
) -> list[tuple[str, float]]:
    """The ``top`` features by accuracy drop when permuted, largest first: ``[(name, drop)]``.

    ``data`` holds ``audio [N, A]``, ``preset [N, P]`` and ``label [N]`` tensors (a
    ``PairTensors``); at most ``max_rows`` rows, drawn with ``seed``, are scored. A model
    with ``embed_audio``/``embed_preset``/``couple`` (CouplingNet) embeds the side whose
    columns stay put once and reuses it, and its head's share of that side too
    (``couple_with_fixed``): every prediction is still the model's own on the permuted
    rows (equal to its forward up to float rounding), only repeated work is skipped.
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
    audio, preset = audio.float().to(device), preset.float().to(device)
    truth = label.to(device) > 0.5
    width = audio_dim + preset_dim
    # One permutation per column, drawn up front: the result does not depend on batching.
    perms = torch.argsort(torch.rand(width, n, generator=gen), dim=1).to(device)
    towers = all(callable(getattr(model, name, None)) for name in _TOWERS)

    was_training = model.training
    model.eval()
    try:
        if towers:
            a0, p0 = model.embed_audio(audio), model.embed_preset(preset)
            base_logits = model.couple(a0, p0)
        else:
            base_logits = model(audio, preset)
        base = ((base_logits > 0) == truth).float().mean().item()
        drops = torch.empty(width)
        per_batch = max(1, MAX_BATCH_ROWS // n)
        for offset, dim in ((0, audio_dim), (audio_dim, preset_dim)):
            is_audio = offset == 0
            for start in range(0, dim, per_batch):
                k = min(per_batch, dim - start)
                cols = torch.arange(start, start + k, device=device)
                first = offset + start
                shuffled = _shuffled_copies(audio if is_audio else preset, cols, perms[first : first + k])
                if towers and is_audio:
                    logits = _couple_fixed(model, model.embed_audio(shuffled), p0, audio_varies=True)
                elif towers:
                    logits = _couple_fixed(model, model.embed_preset(shuffled), a0, audio_varies=False)
                elif is_audio:
                    logits = model(shuffled, preset.repeat(k, 1))
                else:
                    logits = model(audio.repeat(k, 1), shuffled)
                hit = (logits > 0).view(k, n) == truth
                drops[first : first + k] = base - hit.float().mean(dim=1).cpu()
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


def importance_for_version(settings: Settings, version: str, *, top: int = TOP_FEATURES, seed: int = 0) -> list[tuple[str, float]]:
    """Permutation importance of a registered version on the selection rows of the data it saw."""
    registry = Registry(settings.models_dir)
    meta = registry.meta(version)
    data = selection_rows(settings, meta.get("data_partitions") or None)
    model = build_model(version_settings(settings, meta), data.audio_dim, data.preset_dim)
    model.load_state_dict(load_state_dict(registry.weights_path(version)))
    return permutation_importance(model, data, top=top, seed=seed,
                                  audio_dim=data.audio_dim, preset_dim=data.preset_dim)
