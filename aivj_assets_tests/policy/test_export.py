"""The champion exported to the app's path: its format, every way the champion moves, a file the
app holds open, and the README's loading snippet run on an exported file."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch

from aivj_assets.data import atomic
from aivj_assets.policy.export import export_champion, pending_export, roll_back
from aivj_assets.policy.importing import import_champion
from aivj_assets.registry import Registry
from aivj_assets.settings import PROJECT_ROOT, load_settings
from aivj_assets.training.model import CouplingNet, load_state_dict
from aivj_assets_tests.builders import register_state

AUDIO, PRESET, HIDDEN, EMBED = 12, 8, 16, 8


class Told:
    """The notify callable policy code is handed: records what the owner would be told."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def __call__(self, event: str, text: str, details: dict | None = None) -> None:
        self.events.append((event, text))


@pytest.fixture
def settings(aivj_env, monkeypatch, tmp_path):
    monkeypatch.setenv("AIVJ_HIDDEN_DIM", str(HIDDEN))
    monkeypatch.setenv("AIVJ_EMBED_DIM", str(EMBED))
    monkeypatch.setenv("AIVJ_EXPORT_PATH", str(tmp_path / "app" / "coupling_net_best.pth"))
    return load_settings()


def _state(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return CouplingNet(AUDIO, PRESET, hidden_dim=HIDDEN, embed_dim=EMBED).state_dict()


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _owners_wrapped_file(tmp_path: Path) -> Path:
    path = tmp_path / "owner" / "coupling_net_best.pth"
    path.parent.mkdir()
    torch.save({"state_dict": _state(1), "epoch": 40}, path)
    return path


def test_a_wrapped_import_is_exported_wrapped_after_every_promotion_and_rollback(settings, tmp_path) -> None:
    registry, told = Registry(settings.models_dir), Told()
    imported = import_champion(settings, registry, _owners_wrapped_file(tmp_path), notify=told)
    # The version itself is bare, like every trained version; the app's file keeps the wrapper.
    assert _same(torch.load(registry.weights_path(imported), weights_only=True), _state(1))
    exported = torch.load(settings.export_path, weights_only=True)
    assert set(exported) == {"state_dict"} and _same(exported["state_dict"], _state(1))

    trained = register_state(registry, _state(2), {"stage": "full"})
    registry.promote(trained, by="test")
    assert export_champion(settings, registry, told).status == "exported"
    exported = torch.load(settings.export_path, weights_only=True)
    assert set(exported) == {"state_dict"} and _same(exported["state_dict"], _state(2))
    assert export_champion(settings, registry, told).status == "current"  # nothing to write twice

    assert roll_back(settings, registry, None, by="test", notify=told) == imported
    assert _same(torch.load(settings.export_path, weights_only=True)["state_dict"], _state(1))
    assert told.events == []  # nothing went wrong: nothing to tell
    assert [p.name for p in settings.export_path.parent.iterdir()] == ["coupling_net_best.pth"]


def test_a_bare_champion_is_exported_byte_for_byte(settings) -> None:
    registry = Registry(settings.models_dir)
    version = register_state(registry, _state(3), {"stage": "full"})
    registry.promote(version, by="test")
    assert export_champion(settings, registry, Told()).status == "exported"
    assert settings.export_path.read_bytes() == registry.weights_path(version).read_bytes()


def test_no_export_path_writes_nothing(settings) -> None:
    registry = Registry(settings.models_dir)
    registry.promote(register_state(registry, _state(3), {"stage": "full"}), by="test")
    assert export_champion(settings.replace(export_path=None), registry, Told()).status == "off"
    assert not settings.export_path.exists()


def _hold_open_like_windows(monkeypatch, held: Path, holding: list[bool]) -> None:
    """Windows refuses to replace a file another process has open: os.replace raises
    PermissionError while ``holding[0]`` is true and the target is ``held``."""
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        if holding[0] and Path(dst) == held:
            raise PermissionError(13, "The process cannot access the file because it is being used by "
                                      "another process", str(dst))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(atomic, "_WINDOWS", True)
    monkeypatch.setattr(atomic, "_REPLACE_TRIES", 3)
    monkeypatch.setattr(atomic.os, "replace", replace)


def test_a_file_the_app_holds_open_is_a_pending_export_retried_until_written(settings, monkeypatch) -> None:
    registry, told = Registry(settings.models_dir), Told()
    old = register_state(registry, _state(4), {"stage": "full"})
    registry.promote(old, by="test")
    export_champion(settings, registry, told)
    old_bytes = settings.export_path.read_bytes()

    holding = [True]
    _hold_open_like_windows(monkeypatch, settings.export_path, holding)
    new = register_state(registry, _state(5), {"stage": "full"})
    registry.promote(new, by="test")
    outcome = export_champion(settings, registry, told, retry_seconds=0)
    assert outcome.status == "pending" and "PermissionError" in outcome.detail
    # The promotion stands; the app's file is the old champion, whole; no temp file is left.
    assert registry.champion()["version"] == new
    assert settings.export_path.read_bytes() == old_bytes
    assert [p.name for p in settings.export_path.parent.iterdir()] == ["coupling_net_best.pth"]
    assert pending_export(settings)["version"] == new
    assert [e for e, _ in told.events] == ["export_pending"] and str(settings.export_path) in told.events[0][1]

    assert export_champion(settings, registry, told, retry_seconds=0).status == "pending"
    assert len(told.events) == 1  # told once, not at every tick

    holding[0] = False  # the app let go of the file
    assert export_champion(settings, registry, told, retry_seconds=0).status == "exported"
    assert settings.export_path.read_bytes() == registry.weights_path(new).read_bytes()
    assert pending_export(settings) is None
    assert [e for e, _ in told.events] == ["export_pending", "export_done"]


def _readme_snippet() -> str:
    text = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### Loading the champion in your app", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.parametrize("wrapped", [True, False], ids=["wrapped", "bare"])
def test_the_readmes_loading_snippet_loads_an_exported_champion(settings, tmp_path, wrapped) -> None:
    registry = Registry(settings.models_dir)
    if wrapped:
        import_champion(settings, registry, _owners_wrapped_file(tmp_path))
    else:
        registry.promote(register_state(registry, _state(1), {"stage": "full"}), by="test")
        export_champion(settings, registry, Told())
    snippet = _readme_snippet()
    assert "weights_only=True" in snippet
    code = snippet.replace(r'r"D:\aidata\coupling_net_best.pth"', repr(str(settings.export_path)))
    assert code != snippet, "the snippet no longer loads the path the README names"
    audio, preset = torch.randn(5, AUDIO), torch.randn(5, PRESET)
    scope = {"audio_features": audio, "preset_features": preset}
    exec(compile(code, "README.md", "exec"), scope)
    reference = CouplingNet(AUDIO, PRESET, hidden_dim=HIDDEN, embed_dim=EMBED)
    reference.load_state_dict(load_state_dict(registry.weights_path(registry.champion()["version"])))
    with torch.no_grad():
        assert torch.equal(scope["score"], torch.sigmoid(reference.eval()(audio, preset)))


def test_an_export_lock_held_elsewhere_makes_the_export_pending_not_a_failed_promotion(settings, monkeypatch) -> None:
    from aivj_assets_tests.processes import hold_lock_in_another_process, kill_tree

    registry = Registry(settings.models_dir)
    registry.promote(register_state(registry, _state(3), {"stage": "full"}), by="test")
    holder = hold_lock_in_another_process(settings.state_dir / ".export.lock")
    monkeypatch.setattr(atomic, "LOCK_TIMEOUT_SECONDS", 0.2)
    try:
        outcome = export_champion(settings, registry, Told())
        assert outcome.status == "pending" and ".export.lock" in outcome.detail
    finally:
        kill_tree(holder)
    assert export_champion(settings, registry, Told()).status == "exported"  # the next tick writes it
