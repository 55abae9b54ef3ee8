"""Permutation importance finds the features a model really uses, within bounded work."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from aivj_assets.importance import importance_markdown, permutation_importance
from aivj_assets.training.dataset import PairTensors

AUDIO, PRESET = 8, 16


class KnownCoupling(nn.Module):
    """A model whose answer depends on audio[3] and preset[12] only, the first more strongly."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([4.0, -1.5]))
        self.rows_seen: list[int] = []

    def forward(self, audio: torch.Tensor, preset: torch.Tensor) -> torch.Tensor:
        self.rows_seen.append(audio.shape[0])
        return self.scale[0] * audio[:, 3] + self.scale[1] * preset[:, 12]


def pairs(n: int, seed: int = 1) -> PairTensors:
    """Rows labelled by the known function itself, so the model is right on every one."""
    g = torch.Generator().manual_seed(seed)
    audio = torch.randn(n, AUDIO, generator=g)
    preset = torch.randn(n, PRESET, generator=g)
    label = ((4.0 * audio[:, 3] - 1.5 * preset[:, 12]) > 0).float()
    return PairTensors(audio, preset, label, torch.ones(n), np.array([f"{i:016x}" for i in range(n)]))


def test_ranks_the_features_the_model_uses_and_only_those():
    model = KnownCoupling()
    items = permutation_importance(model, pairs(3000), top=10, seed=0, audio_dim=AUDIO, preset_dim=PRESET)
    assert len(items) == 10
    names = [name for name, _ in items]
    assert names[:2] == ["audio[3]", "preset[12]"]
    drops = dict(items)
    # Shuffling the dominant feature costs far more than the weak one; unused ones cost nothing.
    assert drops["audio[3]"] > 0.3
    assert 0.05 < drops["preset[12]"] < drops["audio[3]"]
    assert all(drop == 0.0 for _, drop in items[2:])


def test_scores_a_bounded_sample_deterministically_and_leaves_the_model_as_it_was():
    model = KnownCoupling()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = pairs(12_000)
    first = permutation_importance(model, data, seed=7, audio_dim=AUDIO, preset_dim=PRESET, max_rows=1000)
    # One baseline pass plus one permuted copy per feature, of 1000 rows each, in few batches.
    assert sum(model.rows_seen) == 1000 * (1 + AUDIO + PRESET)
    assert len(model.rows_seen) <= 3
    again = permutation_importance(model, data, seed=7, audio_dim=AUDIO, preset_dim=PRESET, max_rows=1000)
    assert again == first
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_refuses_data_whose_vector_lengths_do_not_match():
    with pytest.raises(ValueError, match="audio 8 / preset 16 columns, expected 9 / 16"):
        permutation_importance(KnownCoupling(), pairs(10), audio_dim=9, preset_dim=PRESET)


def test_markdown_table_lists_rank_feature_and_drop():
    text = importance_markdown([("audio[3]", 0.41), ("preset[12]", 0.125)])
    lines = text.splitlines()
    assert lines[0].startswith("| rank | feature |")
    assert lines[2] == "| 1 | `audio[3]` | +0.4100 |"
    assert lines[3] == "| 2 | `preset[12]` | +0.1250 |"
