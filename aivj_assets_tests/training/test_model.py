"""CouplingNet's size and shape, the owner's factory hook, and weight files that never run code."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

from aivj_assets.training.model import (
    CouplingNet,
    UnsafeWeightsError,
    build_model,
    count_parameters,
    file_sha256,
    load_state_dict,
    save_state_dict,
)


def tiny_factory(*, audio_dim: int, preset_dim: int) -> nn.Module:
    """An owner's own architecture, named in settings as package.module:function."""
    return nn.Bilinear(audio_dim, preset_dim, 1)


def test_default_couplingnet_is_about_a_million_parameters():
    model = CouplingNet(128, 64)
    # The owner's coupling_net_best.pth is ~4.6 MB of float32: ~1.15M parameters.
    assert 0.7e6 < count_parameters(model) < 1.5e6
    logits = model(torch.randn(7, 128), torch.randn(7, 64))
    assert logits.shape == (7,)


def test_forward_is_towers_then_head_and_one_side_can_be_held_fixed():
    torch.manual_seed(0)
    model = CouplingNet(6, 5, hidden_dim=16, embed_dim=8).eval()
    audio, preset = torch.randn(7, 6), torch.randn(7, 5)
    a, p = model.embed_audio(audio), model.embed_preset(preset)
    assert torch.equal(model(audio, preset), model.couple(a, p))
    # Three stacked copies of one side against the other side's same rows: as couple() on repeats.
    a3, p3 = model.embed_audio(torch.randn(21, 6)), model.embed_preset(torch.randn(21, 5))
    with torch.no_grad():
        assert torch.allclose(model.couple_with_fixed(a3, p, audio_varies=True), model.couple(a3, p.repeat(3, 1)),
                              atol=1e-5)
        assert torch.allclose(model.couple_with_fixed(p3, a, audio_varies=False), model.couple(a.repeat(3, 1), p3),
                              atol=1e-5)


def test_build_model_uses_settings_widths_and_factory(aivj_env):
    model = build_model(aivj_env.replace(hidden_dim=32, embed_dim=8), 10, 4)
    assert isinstance(model, CouplingNet) and model.head[0].in_features == 4 * 8
    own = build_model(aivj_env.replace(model_factory=f"{__name__}:tiny_factory"), 10, 4)
    assert isinstance(own, nn.Bilinear) and own.in1_features == 10 and own.in2_features == 4
    with pytest.raises(ValueError, match="AIVJ_MODEL_FACTORY.*package.module:function"):
        build_model(aivj_env.replace(model_factory="no_colon_here"), 10, 4)
    with pytest.raises(ValueError, match="cannot import"):
        build_model(aivj_env.replace(model_factory="aivj_assets.nope:f"), 10, 4)


def test_save_and_load_round_trip(tmp_path: Path):
    state = CouplingNet(6, 3, 16, 4).state_dict()
    path = tmp_path / "w" / "coupling_net_best.pth"
    digest = save_state_dict(path, state)
    assert digest == file_sha256(path) and len(digest) == 64
    loaded = load_state_dict(path)
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left behind


def test_wrapped_checkpoint_is_unwrapped(tmp_path: Path):
    state = CouplingNet(6, 3, 16, 4).state_dict()
    path = tmp_path / "ckpt.pth"
    torch.save({"model_state_dict": state, "epoch": 3, "best_acc": 0.9}, path)
    assert load_state_dict(path).keys() == state.keys()


class _Payload:
    """Unpickling this would create a marker file: what a booby-trapped .pth does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pth_that_runs_code_is_refused_and_runs_nothing(tmp_path: Path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "coupling_net_best.pth"
    torch.save({"weight": torch.zeros(2), "trap": _Payload(marker)}, evil)
    with pytest.raises(UnsafeWeightsError, match=r"coupling_net_best\.pth: refused to load"):
        load_state_dict(evil)
    assert not marker.exists()
    assert isinstance(UnsafeWeightsError("x"), ValueError)


def test_plain_values_that_are_not_weights_are_refused(tmp_path: Path):
    path = tmp_path / "notes.pth"
    torch.save({"hello": "world"}, path)
    with pytest.raises(UnsafeWeightsError, match=r"notes\.pth.*entry 'hello' is str"):
        load_state_dict(path)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file at all")
    with pytest.raises(UnsafeWeightsError, match="garbage.pth"):
        load_state_dict(garbage)
