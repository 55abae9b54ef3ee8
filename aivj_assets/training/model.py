"""CouplingNet, the owner's model factory hook, and weight files that are never unpickled.

Weights are written atomically and read with ``torch.load(..., weights_only=True)``: a
``.pth`` that holds anything but tensors and plain values is refused, never executed.
"""

from __future__ import annotations

import importlib
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from aivj_assets.data.atomic import file_sha256, write_atomic
from aivj_assets.settings import Settings


class UnsafeWeightsError(ValueError):
    """A weights or checkpoint file holds something other than tensors and plain values."""


class Standardize(nn.Module):
    """Per-feature (x - mean) / std with statistics fitted once from training rows, kept as buffers.

    The owner's features come in their own units (a spectral centroid in Hz next to a
    0-1 energy); the buffers travel in the state dict, so a warm-started model keeps them.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("inv_std", torch.ones(dim))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def fit(self, x: Tensor) -> None:
        x = x.float()
        self.mean.copy_(x.mean(0))
        self.inv_std.copy_(1.0 / x.std(0, correction=0).clamp_min(1e-6))
        self.fitted.fill_(True)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) * self.inv_std


class CouplingNet(nn.Module):
    """Scores how well a preset couples with the audio: two towers meeting in a small head."""

    def __init__(self, audio_dim: int, preset_dim: int, hidden_dim: int = 512, embed_dim: int = 256) -> None:
        super().__init__()
        self.audio_scale, self.preset_scale = Standardize(audio_dim), Standardize(preset_dim)
        self.audio_tower = _tower(audio_dim, hidden_dim, embed_dim)
        self.preset_tower = _tower(preset_dim, hidden_dim, embed_dim)
        # The head sees both embeddings and how they interact (product, difference):
        # coupling is a relation between the two, not a property of either alone.
        self.head = nn.Sequential(
            nn.Linear(4 * embed_dim, hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, 1),
        )

    @classmethod
    def from_state_dict(cls, state_dict: dict[str, Tensor]) -> CouplingNet:
        """The model a state dict describes, its sizes read off the weights, loaded and in eval
        mode: what the app needs from an exported champion, with no setting to keep in step."""
        first = state_dict["audio_tower.0.weight"]
        model = cls(int(first.shape[1]), int(state_dict["preset_tower.0.weight"].shape[1]),
                    hidden_dim=int(first.shape[0]), embed_dim=int(state_dict["audio_tower.2.weight"].shape[0]))
        model.load_state_dict(state_dict)
        return model.eval()

    def fit_input_scaling(self, audio: Tensor, preset: Tensor) -> bool:
        """Fit the input standardisation from training rows, once; False if already fitted."""
        if bool(self.audio_scale.fitted) and bool(self.preset_scale.fitted):
            return False
        self.audio_scale.fit(audio)
        self.preset_scale.fit(preset)
        return True

    def forward(self, audio: Tensor, preset: Tensor) -> Tensor:
        return self.couple(self.embed_audio(audio), self.embed_preset(preset))

    # The towers never see each other's input, so a caller that changes only one side
    # (permutation importance) embeds the other side once and reuses it.
    def embed_audio(self, audio: Tensor) -> Tensor:
        """The audio tower's embedding of raw audio features."""
        return self.audio_tower(self.audio_scale(audio))

    def embed_preset(self, preset: Tensor) -> Tensor:
        """The preset tower's embedding of raw preset features."""
        return self.preset_tower(self.preset_scale(preset))

    def couple(self, a: Tensor, p: Tensor) -> Tensor:
        """The coupling logit of an audio embedding and a preset embedding."""
        return self.head(torch.cat([a, p, a * p, a - p], dim=-1)).squeeze(-1)

    def couple_with_fixed(self, varied: Tensor, fixed: Tensor, *, audio_varies: bool) -> Tensor:
        """``couple`` of k stacked copies ``varied [k*n, E]`` of one side against the same
        ``fixed [n, E]`` embeddings of the other side: logits ``[k*n]``.

        The head's first layer is linear in its four blocks: W [a, p, a*p, a-p] =
        (Wa + Wd) a + (Wp - Wd) p + Wm (a*p). The fixed side's term is computed once for
        the n rows instead of k times: two E-wide products per row instead of one 4E-wide.
        """
        first = self.head[0]
        n, e = fixed.shape
        k = varied.shape[0] // n
        w_a, w_p, w_m, w_d = first.weight.split(e, dim=1)
        w_var, w_fix = (w_a + w_d, w_p - w_d) if audio_varies else (w_p - w_d, w_a + w_d)
        pre = torch.addmm(((varied.view(k, n, e) * fixed).view(k * n, e)) @ w_m.T, varied, w_var.T)
        pre = (pre.view(k, n, -1) + (torch.addmm(first.bias, fixed, w_fix.T))).view(k * n, -1)
        return self.head[1:](pre).squeeze(-1)


def _tower(in_dim: int, hidden_dim: int, embed_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim),
        nn.GELU(),
        nn.Linear(hidden_dim, embed_dim),
    )


def build_model(settings: Settings, audio_dim: int, preset_dim: int) -> nn.Module:
    """CouplingNet with the settings' widths, or the owner's ``package.module:function`` factory."""
    if not settings.model_factory:
        return CouplingNet(audio_dim, preset_dim, hidden_dim=settings.hidden_dim, embed_dim=settings.embed_dim)
    spec = settings.model_factory
    module_name, sep, func_name = spec.partition(":")
    if not sep or not module_name or not func_name:
        raise ValueError(f"setting AIVJ_MODEL_FACTORY={spec!r}: expected 'package.module:function'")
    try:
        factory = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"setting AIVJ_MODEL_FACTORY={spec!r}: cannot import it: {exc}") from None
    model = factory(audio_dim=audio_dim, preset_dim=preset_dim)
    if not isinstance(model, nn.Module):
        raise ValueError(f"setting AIVJ_MODEL_FACTORY={spec!r} returned {type(model).__name__}, not a torch nn.Module")
    return model


def atomic_torch_save(path: str | Path, obj: Any) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``."""
    write_atomic(Path(path), lambda f: torch.save(obj, f))


def save_state_dict(path: str | Path, state_dict: dict[str, Tensor]) -> str:
    """Write a state dict atomically (tensors only); returns the file's sha256."""
    plain = {str(k): v.detach().cpu() for k, v in state_dict.items()}
    atomic_torch_save(path, plain)
    return file_sha256(path)


def safe_load(path: str | Path) -> Any:
    """Load a ``.pth`` with ``weights_only=True``; anything needing code to unpickle is refused."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except IsADirectoryError:
        raise UnsafeWeightsError(f"{path}: is a folder, not a weights file") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, TypeError, ValueError, KeyError,
            IndexError) as exc:  # whatever torch's reader raises on bytes that are not a checkpoint
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnsafeWeightsError(
            f"{path}: refused to load: not a file of plain tensors and values ({reason[:300]})"
        ) from None


# Keys under which training scripts commonly wrap the weights in a checkpoint dict.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")


def read_weights(path: str | Path) -> tuple[dict[str, Tensor], str]:
    """A state dict (name -> tensor) from ``path``, loaded safely, and the key it was wrapped under
    (``{"state_dict": ...}`` and the like; "" for a bare state dict)."""
    obj = safe_load(path)
    wrapper = ""
    if isinstance(obj, dict) and not _is_state_dict(obj):
        for key in _WRAPPER_KEYS:
            if key in obj and _is_state_dict(obj[key]):
                obj, wrapper = obj[key], key
                break
    if not _is_state_dict(obj):
        raise UnsafeWeightsError(f"{path}: refused: expected a dict of parameter name -> tensor, got {_describe(obj)}")
    return dict(obj), wrapper


def load_state_dict(path: str | Path) -> dict[str, Tensor]:
    """A state dict (name -> tensor) from ``path``, loaded safely; unwraps ``{"state_dict": ...}``."""
    return read_weights(path)[0]


def save_app_weights(path: str | Path, state_dict: dict[str, Tensor], wrapper: str) -> str:
    """Write a state dict atomically as the app loads it: bare, or under ``wrapper``; its sha256."""
    plain = {str(k): v.detach().cpu() for k, v in state_dict.items()}
    atomic_torch_save(path, {wrapper: plain} if wrapper else plain)
    return file_sha256(path)


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()
    )


def _describe(obj: Any) -> str:
    if isinstance(obj, dict):
        bad = next(((k, v) for k, v in obj.items() if not (isinstance(k, str) and isinstance(v, Tensor))), None)
        if bad is None:
            return "an empty dict"
        return f"a dict whose entry {str(bad[0])[:60]!r} is {type(bad[1]).__name__}"
    return type(obj).__name__


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
