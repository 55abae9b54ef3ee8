"""A training killed with SIGKILL mid-epoch and restarted ends bit-identical to one never killed."""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from aivj_assets.training.checkpoints import CheckpointManager

from .train_worker import BATCH, EPOCHS, pairs

ROOT = Path(__file__).resolve().parents[2]
STEPS_PER_EPOCH = math.ceil(len(pairs()[0]) / BATCH)
FINAL = EPOCHS * STEPS_PER_EPOCH


def _start(ckpt: Path, log: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "aivj_assets_tests.training.train_worker", str(ckpt), str(log), "0.01"],
        cwd=ROOT, env=env, stdout=open(out, "w"), stderr=subprocess.STDOUT,
    )


def _tensors(obj, prefix=""):
    """Every tensor inside nested dicts/lists, keyed by its path."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _tensors(v, f"{prefix}/{k}")
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{prefix}/{i}")


def test_sigkill_mid_epoch_then_restart_is_bit_identical(tmp_path: Path):
    ref_dir, ref_log, ref_out = tmp_path / "ref", tmp_path / "ref.log", tmp_path / "ref.out"
    run_dir, run_log, run_out = tmp_path / "run", tmp_path / "run.log", tmp_path / "run.out"
    reference = _start(ref_dir, ref_log, ref_out)
    victim = _start(run_dir, run_log, run_out)
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "step_0050.pth").exists():
            assert victim.poll() is None, run_out.read_text()
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.01)
        victim.kill()  # SIGKILL; TerminateProcess on Windows: no chance to clean up either way
        assert victim.wait(timeout=30) == (1 if os.name == "nt" else -signal.SIGKILL)
    finally:
        if victim.poll() is None:
            victim.kill()
    assert "RESULT" not in run_out.read_text()
    killed_at = CheckpointManager(run_dir, "crash-test").latest()
    killed_step = int(killed_at.stem.split("_")[1])
    assert killed_step < FINAL and killed_step % STEPS_PER_EPOCH != 0  # a position inside an epoch

    resumed = _start(run_dir, run_log, tmp_path / "resumed.out")
    assert resumed.wait(timeout=300) == 0, (tmp_path / "resumed.out").read_text()
    assert reference.wait(timeout=300) == 0, ref_out.read_text()
    out = (tmp_path / "resumed.out").read_text()
    assert f"resumed from {killed_at.stem}" in out
    assert re.search(rf"RESULT finished steps={FINAL} resumed_from={killed_at.stem}", out)

    ref_final = CheckpointManager(ref_dir, "crash-test").load(ref_dir / f"step_{FINAL:04d}.pth")
    run_final = CheckpointManager(run_dir, "crash-test").load(run_dir / f"step_{FINAL:04d}.pth")
    for part in ("model", "optimizer", "best_model"):
        ref_t, run_t = dict(_tensors(ref_final[part])), dict(_tensors(run_final[part]))
        assert ref_t.keys() == run_t.keys() and ref_t
        unequal = [k for k in ref_t if not torch.equal(ref_t[k], run_t[k])]
        assert not unequal, f"{part} differs after resume: {unequal[:5]}"
    assert _same_history(ref_final["history"], run_final["history"])
    # The per-step losses of the surviving trajectory are the uninterrupted run's, step by step.
    ref_losses, run_losses = ref_log.read_text().splitlines(), run_log.read_text().splitlines()
    assert len(ref_losses) == FINAL
    assert run_losses == ref_losses


def _same_history(a: list[dict], b: list[dict]) -> bool:
    """Histories agree on everything but wall-clock seconds."""
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in a]
    return strip == [{k: v for k, v in h.items() if k != "seconds"} for h in b]
