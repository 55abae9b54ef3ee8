"""``aivj import-model``: the owner's existing model as the first champion, checked before it counts."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from aivj_assets.data.atomic import file_sha256
from aivj_assets.data.store import Store
from aivj_assets.policy.export import export_champion
from aivj_assets.registry import Registry
from aivj_assets.settings import Settings
from aivj_assets.training.model import build_model, read_weights, save_state_dict


def architecture_mismatch(expected: Mapping[str, Any], given: Mapping[str, Any]) -> list[str]:
    """What differs between two state dicts' keys and tensor shapes (empty when they match)."""
    problems = []
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    if missing:
        problems.append(f"missing keys {missing[:8]}" + (f" (+{len(missing) - 8} more)" if len(missing) > 8 else ""))
    if unexpected:
        problems.append(f"unexpected keys {unexpected[:8]}"
                        + (f" (+{len(unexpected) - 8} more)" if len(unexpected) > 8 else ""))
    for key in expected:
        if key in given and tuple(expected[key].shape) != tuple(getattr(given[key], "shape", ())):
            problems.append(f"{key}: shape {tuple(given[key].shape)} in the file, {tuple(expected[key].shape)} expected")
    return problems


def _input_dims(settings: Settings, state_dict: Mapping[str, Any]) -> tuple[int, int]:
    """(audio_dim, preset_dim): the store's lineage when data exists, else read off the first
    2-D weights of the file's audio and preset branches."""
    lineage = Store(settings).lineage()
    if lineage:
        return int(lineage["audio_dim"]), int(lineage["preset_dim"])
    dims = {}
    for branch in ("audio", "preset"):
        for key, value in state_dict.items():
            if key.startswith(branch) and getattr(value, "ndim", 0) == 2:
                dims[branch] = int(value.shape[1])
                break
    if len(dims) != 2:
        raise ValueError("cannot tell audio/preset input sizes: ingest data first so the store records them")
    return dims["audio"], dims["preset"]


def _no_notify(event: str, text: str, details: dict[str, Any] | None) -> None:
    return None


def import_champion(settings: Settings, registry: Registry, path: Path,
                    notify: Callable[[str, str, dict[str, Any] | None], None] = _no_notify) -> str:
    """Register the state dict at ``path`` as the first champion (``aivj import-model``); its version.

    Refuses (``ValueError``) a file whose keys or shapes differ from the configured model. The
    version holds the bare state dict, as every trained version does; the key the file wrapped it
    under (``{"state_dict": ...}``) is recorded, and the export to the app's path keeps that form.
    """
    if path.is_dir():
        raise ValueError(f"{path}: is a folder, not a weights file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    champion = registry.champion()
    if champion is not None:
        raise ValueError(
            f"{settings.models_dir} already has champion {champion['version']}; import-model only "
            f"sets the first champion (use `aivj rollback` to change champions, or `aivj reset --yes` "
            f"to forget the demo's models, store and instance first)"
        )
    given, wrapper = read_weights(path)
    audio_dim, preset_dim = _input_dims(settings, given)
    expected = build_model(settings, audio_dim, preset_dim).state_dict()
    problems = architecture_mismatch(expected, given)
    if problems:
        raise ValueError(
            f"{path}: architecture does not match the configured model (audio_dim={audio_dim}, "
            f"preset_dim={preset_dim}, hidden_dim={settings.hidden_dim}, embed_dim={settings.embed_dim}): "
            + "; ".join(problems)
        )
    version = registry.register(lambda target: save_state_dict(target, given), {
        "stage": "import", "parent": None, "identity": f"import|{file_sha256(path)}",
        "source": str(path.resolve()), "metrics": {}, "history": [],
        "dims": {"audio_dim": audio_dim, "preset_dim": preset_dim},
        "cmd_line": f"aivj import-model {path}", "run_id": "", "data_hash": "", "data_partitions": [],
        "settings": settings.public_dict(), "app_wrapper": wrapper,
    })
    registry.update(version, app_wrapper=wrapper)
    registry.promote(version, by="import-model", reason=f"imported from {path}")
    export_champion(settings, registry, notify)
    return version
