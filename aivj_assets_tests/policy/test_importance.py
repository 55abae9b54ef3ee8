"""Permutation importance finds the features a model really uses, within bounded work."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from aivj_assets.policy.importance import MAX_BATCH_ROWS, importance_markdown, permutation_importance
from aivj_assets.training.dataset import PairTensors
from aivj_assets.training.model import CouplingNet

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
    # One baseline pass plus one permuted copy per feature, of 1000 rows each, in bounded batches.
    assert sum(model.rows_seen) == 1000 * (1 + AUDIO + PRESET)
    assert max(model.rows_seen) <= MAX_BATCH_ROWS
    again = permutation_importance(model, data, seed=7, audio_dim=AUDIO, preset_dim=PRESET, max_rows=1000)
    assert again == first
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


class CountingCouplingNet(CouplingNet):
    """CouplingNet that counts the rows each tower embeds."""

    def __init__(self) -> None:
        super().__init__(AUDIO, PRESET, hidden_dim=32, embed_dim=16)
        self.embedded = {"audio": 0, "preset": 0}

    def embed_audio(self, audio: torch.Tensor) -> torch.Tensor:
        self.embedded["audio"] += audio.shape[0]
        return super().embed_audio(audio)

    def embed_preset(self, preset: torch.Tensor) -> torch.Tensor:
        self.embedded["preset"] += preset.shape[0]
        return super().embed_preset(preset)


class Opaque(nn.Module):
    """The same network seen only through ``forward``, as an owner's model factory may be."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, audio: torch.Tensor, preset: torch.Tensor) -> torch.Tensor:
        return self.inner(audio, preset)


def test_two_tower_model_embeds_the_unchanged_side_once_and_scores_as_its_forward_does():
    torch.manual_seed(0)
    model = CountingCouplingNet()
    data = pairs(1500)
    # A coupling the net can learn a little of, so that some features matter and some do not.
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(model(data.audio, data.preset), data.label).backward()
        opt.step()
    model.embedded = {"audio": 0, "preset": 0}
    reused = permutation_importance(model, data, top=AUDIO + PRESET, seed=3, audio_dim=AUDIO, preset_dim=PRESET,
                                    max_rows=1000)
    # Each tower embeds the 1000 original rows once, then only the copies with its own columns shuffled.
    assert model.embedded == {"audio": 1000 * (1 + AUDIO), "preset": 1000 * (1 + PRESET)}
    full = permutation_importance(Opaque(model), data, top=AUDIO + PRESET, seed=3, audio_dim=AUDIO,
                                  preset_dim=PRESET, max_rows=1000)
    assert [name for name, _ in reused] == [name for name, _ in full]
    assert [drop for _, drop in reused] == pytest.approx([drop for _, drop in full], abs=2e-3)
    assert reused[0][0] == "audio[3]" and reused[0][1] > 0.05


def test_refuses_data_whose_vector_lengths_do_not_match():
    with pytest.raises(ValueError, match="audio 8 / preset 16 columns, expected 9 / 16"):
        permutation_importance(KnownCoupling(), pairs(10), audio_dim=9, preset_dim=PRESET)


def test_markdown_table_lists_rank_feature_and_drop():
    text = importance_markdown([("audio[3]", 0.41), ("preset[12]", 0.125)])
    lines = text.splitlines()
    assert lines[0].startswith("| rank | feature |")
    assert lines[2] == "| 1 | `audio[3]` | +0.4100 |"
    assert lines[3] == "| 2 | `preset[12]` | +0.1250 |"
