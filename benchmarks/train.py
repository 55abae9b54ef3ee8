"""Our training loop against a bare minimal PyTorch loop, achieved FLOP/s, and checkpoint cost.

In one run, on demo-function data (``aivj_assets.data.generate.draw_pairs``) held in memory:
  A. ``aivj_assets.training.loop.train``: one epoch, as the assets run it (schedule, loss
     read-back, control polls, the step-0 and epoch-end checkpoints, and the epoch-end
     evaluation on the selection rows, a twentieth), with no step checkpoints;
  B. a bare loop: same model and initial weights, same rows, batch size and AdamW, a
     shuffled permutation and nothing else.
Repetitions interleave A and B (ABAB...) because the machine is shared; medians are reported.
Achieved FLOP/s counts 3x the forward multiply-adds x2 per sample (forward + backward);
the peak is a measured fp32 matrix product on this machine. Checkpoint cost: the median
time to write one checkpoint, over the median time of 500 steps of A; and, as a direct
check, A with a checkpoint every ``--direct-every`` steps against A without.

    .venv/bin/python benchmarks/train.py [--rows 104040] [--batch 512] [--reps 5] [--device auto]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from aivj_assets.data.generate import draw_pairs
from aivj_assets.data.split import row_hashes
from aivj_assets.training.checkpoints import CheckpointManager
from aivj_assets.training.dataset import PairTensors, split_parts
from aivj_assets.training.loop import TrainConfig, resolve_device, train
from aivj_assets.training.model import CouplingNet, atomic_torch_save, count_parameters


def make_data(rows: int) -> PairTensors:
    audio, preset, _, labels = draw_pairs(rows, np.random.default_rng(0))
    return PairTensors(
        torch.from_numpy(audio), torch.from_numpy(preset), torch.from_numpy(labels.astype(np.float32)),
        torch.ones(rows), np.asarray(row_hashes(audio, preset, labels)),
    )


def fresh_model(audio_dim: int, preset_dim: int, fit_on: PairTensors) -> nn.Module:
    torch.manual_seed(0)
    model = CouplingNet(audio_dim, preset_dim)  # default widths: the size of the owner's model
    model.fit_input_scaling(fit_on.audio, fit_on.preset)
    return model


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_ours(model: nn.Module, data: PairTensors, val: PairTensors, batch: int, device: str, every: int,
             work: Path, bf16: bool = False) -> float:
    """Seconds for one epoch of our loop."""
    config = TrainConfig(epochs=1, batch_size=batch, learning_rate=1e-3, weight_decay=1e-2, seed=0,
                         checkpoint_every=every, checkpoint_keep=5, checkpoint_dir=Path(tempfile.mkdtemp(dir=work)),
                         identity="bench", resume=False, device=device, bf16=bf16)
    started = time.perf_counter()
    result = train(model, data, selection=val, config=config, log=lambda line: None)
    seconds = time.perf_counter() - started
    assert result.status == "finished" and result.samples == len(data)
    return seconds


def run_bare(model: nn.Module, data: PairTensors, batch: int, device: torch.device, bf16: bool = False) -> float:
    """Seconds for one epoch of the minimal loop."""
    started = time.perf_counter()  # like ours, from CPU data and a CPU model
    model.to(device)
    d = data.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    perm = torch.randperm(len(d), generator=torch.Generator().manual_seed(0)).to(device)
    for i in range(0, len(d), batch):
        idx = perm[i : i + batch]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(d.audio[idx], d.preset[idx])
        loss = F.binary_cross_entropy_with_logits(logits.float(), d.label[idx], weight=d.weight[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(device)
    return time.perf_counter() - started


def forward_macs(model: nn.Module) -> int:
    """Multiply-adds of one sample's forward pass through every Linear layer."""
    return sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, nn.Linear))


def matmul_peak(device: torch.device, n: int, reps: int = 10) -> float:
    """Measured fp32 FLOP/s of an n x n x n matrix product (median of ``reps``)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(3):
        a @ b
    sync(device)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times)


def checkpoint_seconds(model: nn.Module, data: PairTensors, work: Path, reps: int = 7) -> tuple[float, float, float]:
    """Median seconds to write one checkpoint of the loop's size: the whole write, and the part
    the loop waits for in background mode (the CPU snapshot); plus its size in MiB."""
    device = next(model.parameters()).device
    opt = torch.optim.AdamW(model.parameters())
    model(data.audio[:8].to(device), data.preset[:8].to(device)).sum().backward()
    opt.step()
    payload = {"model": model.state_dict(), "optimizer": opt.state_dict(), "best_model": model.state_dict(),
               "epoch_rows": {"ids": torch.zeros(len(data), dtype=torch.int64)}}
    whole, blocking = [], []
    manager = CheckpointManager(work / "bg", "bench", keep=2, background=True)
    for i in range(reps):
        t = time.perf_counter()
        atomic_torch_save(work / f"ckpt_{i}.pth", payload)
        whole.append(time.perf_counter() - t)
        t = time.perf_counter()
        manager.save(i, payload)
        blocking.append(time.perf_counter() - t)
        manager.wait()
    manager.close()
    size = (work / "ckpt_0.pth").stat().st_size / 2**20
    return statistics.median(whole), statistics.median(blocking), size


def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"nproc {os.cpu_count()}, {cpu}, {ram:.0f} GiB RAM{gpu}, torch {torch.__version__}, {torch.get_num_threads()} threads"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=104_040)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast in both loops")
    ap.add_argument("--direct-every", type=int, default=50, help="checkpoint interval of the direct check (0: skip)")
    args = ap.parse_args()
    device = resolve_device(args.device)
    data_all = make_data(args.rows)
    data, val, _ = split_parts(data_all, 0.05, 0.1)
    work = Path(tempfile.mkdtemp(prefix="aivj-bench-"))
    print(machine())
    probe = fresh_model(data.audio_dim, data.preset_dim, data)
    print(f"model CouplingNet {count_parameters(probe):,} parameters; {len(data):,} training rows, "
          f"{len(val):,} selection rows, batch {args.batch}, device {device}{' bf16' if args.bf16 else ''}, "
          f"{args.reps} reps interleaved")

    ours, bare = [], []
    for rep in range(args.reps + 1):  # the first pair warms caches and allocators: not counted
        t_ours = run_ours(fresh_model(data.audio_dim, data.preset_dim, data), data, val, args.batch, args.device, 0,
                          work, args.bf16)
        t_bare = run_bare(fresh_model(data.audio_dim, data.preset_dim, data), data, args.batch, device, args.bf16)
        if rep:
            ours.append(t_ours)
            bare.append(t_bare)
        print(f"  rep {rep}{' (warm-up)' if not rep else ''}: ours {t_ours:.2f}s  bare {t_bare:.2f}s")
    n = len(data)
    ours_rate, bare_rate = n / statistics.median(ours), n / statistics.median(bare)
    print(f"samples/s: ours {ours_rate:,.0f}, bare {bare_rate:,.0f}; ratio {ours_rate / bare_rate:.3f} (target >= 0.95)")
    print(f"  per-rep ratios: {', '.join(f'{b / o:.3f}' for o, b in zip(ours, bare, strict=True))}")

    flops_per_sample = 3 * 2 * forward_macs(probe)
    peak = matmul_peak(device, 4096 if device.type == "cuda" else 1024)
    achieved = flops_per_sample * ours_rate
    print(f"achieved {achieved / 1e9:,.1f} GFLOP/s (ours; bare {flops_per_sample * bare_rate / 1e9:,.1f}) against a "
          f"measured fp32 matmul peak of {peak / 1e9:,.1f} GFLOP/s: {100 * achieved / peak:.1f}% of peak")

    steps_per_epoch = math.ceil(n / args.batch)
    step_seconds = statistics.median(ours) / steps_per_epoch
    whole, blocking, size = checkpoint_seconds(probe.to(device), data, work)
    print(f"checkpoint: {size:.1f} MiB; written in {1000 * whole:.1f} ms, of which the loop waits "
          f"{1000 * blocking:.1f} ms (CPU snapshot; the write runs in the background); 500 steps take "
          f"{500 * step_seconds:.2f} s: overhead at every 500 steps {100 * blocking / (500 * step_seconds):.2f}% "
          f"({100 * whole / (500 * step_seconds):.2f}% if written in the foreground; target < 2%)")
    if args.direct_every:
        with_c, without = [], []
        for _ in range(max(2, args.reps // 2)):
            with_c.append(run_ours(fresh_model(data.audio_dim, data.preset_dim, data), data, val, args.batch,
                                   args.device, args.direct_every, work, args.bf16))
            without.append(run_ours(fresh_model(data.audio_dim, data.preset_dim, data), data, val, args.batch,
                                    args.device, 0, work, args.bf16))
        extra = statistics.median(with_c) - statistics.median(without)
        count = steps_per_epoch // args.direct_every
        per = extra / count if count else float("nan")
        print(f"direct check: a checkpoint every {args.direct_every} steps ({count} per epoch) added "
              f"{extra:+.2f}s to {statistics.median(without):.2f}s, {1000 * per:+.1f} ms each; scaled to every 500 "
              f"steps: {100 * per / (500 * step_seconds):+.2f}%")


if __name__ == "__main__":
    main()
