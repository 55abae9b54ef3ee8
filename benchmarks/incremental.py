"""Incremental fusion against a full retrain when 1% new data arrives, in one run.

On the demo corpus (``aivj_assets.data.generate``), ingested into a temporary store:
  0. a champion is trained the way ``full_training`` does it (warm-up + full) on the old files;
  1. a new file with ``--new-share`` of the corpus arrives and is ingested;
  2. then, ``--repeats`` times with a different seed each (ABAB order, the machine is shared):
     A. ``train_incremental``: from the champion, the new rows plus 1:1 replay of old rows;
     B. a full retrain: ``train_warmup`` + ``train_full`` on every partition.
Reported (medians): wall-time ratio A/B (target < 0.1), validation-accuracy difference A-B in
points (target within 0.5), and forgetting: the champion's accuracy on the old validation rows
minus A's (and B's). All models are measured on the same gate rows.

    .venv/bin/python benchmarks/incremental.py [--pairs 104040] [--new-share 0.01] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from aivj_assets.data.elite import build_elite_set
from aivj_assets.data.generate import REFINED_DIR, draw_pairs, write_demo_data
from aivj_assets.data.ingest import ingest_partition
from aivj_assets.data.scan import scan_tick
from aivj_assets.policy.rows import elite_split, gate_rows
from aivj_assets.policy.stages import incremental_inputs, train_full, train_incremental, train_warmup
from aivj_assets.registry import Registry
from aivj_assets.settings import Settings, load_settings
from aivj_assets.training.metrics import evaluate
from aivj_assets.training.model import build_model, load_state_dict


def ingest_new_files(settings: Settings, seq: int) -> tuple[list[str], int]:
    plan = scan_tick(settings, seq)
    for r in plan.requests:
        ingest_partition(settings, r.partition)
    return [r.partition for r in plan.requests], plan.last_seq


def write_new_file(settings: Settings, rows: int) -> None:
    audio, preset, _, labels = draw_pairs(rows, np.random.default_rng(7))
    path = settings.data_dir / REFINED_DIR / "new_arrivals.parquet"
    pq.write_table(pa.table({
        "audio": pa.FixedSizeListArray.from_arrays(pa.array(audio.ravel(), pa.float32()), audio.shape[1]),
        "preset": pa.FixedSizeListArray.from_arrays(pa.array(preset.ravel(), pa.float32()), preset.shape[1]),
        "label": pa.array(labels.astype(np.int8)),
    }), path)


def accuracy(settings: Settings, registry: Registry, version: str, rows) -> float:
    meta = registry.meta(version)
    model = build_model(settings, meta["dims"]["audio_dim"], meta["dims"]["preset_dim"])
    model.load_state_dict(load_state_dict(registry.weights_path(version)))
    device = "cuda" if settings.device != "cpu" and torch.cuda.is_available() else "cpu"
    return float(evaluate(model.to(device), rows, device=device)["accuracy"])


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = next((int(line.split()[1]) // 1024 // 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), 0)
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return (f"{os.cpu_count()} CPUs ({cpu}), {mem} GiB RAM{gpu}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=104_040)
    p.add_argument("--elite", type=int, default=512)
    p.add_argument("--new-share", type=float, default=0.01)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--hidden", type=int, default=512, help="CouplingNet hidden width (the owner's: 512)")
    p.add_argument("--embed", type=int, default=256)
    p.add_argument("--full-epochs", type=int, default=8)
    p.add_argument("--incremental-epochs", type=int, default=3)
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    args = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="aivj-bench-incremental-"))
    settings = load_settings(env={"AIVJ_HOME": str(tmp / "home"), "AIVJ_DATA_DIR": str(tmp / "data")},
                             env_file=tmp / "none.env").replace(
        hidden_dim=args.hidden, embed_dim=args.embed, full_epochs=args.full_epochs,
        incremental_epochs=args.incremental_epochs, checkpoint_every=10**9, device=args.device, settle_seconds=0.0)
    registry = Registry(settings.models_dir)
    quiet = lambda _msg: None  # noqa: E731

    print(f"machine: {machine()}")
    print(f"corpus: {args.pairs} pairs + {int(args.pairs * args.new_share)} new ({args.new_share:.1%}), "
          f"{args.elite} elite; CouplingNet hidden {args.hidden}, embed {args.embed}; "
          f"full {args.full_epochs} epochs, incremental {args.incremental_epochs} epochs, replay 1:1")
    write_demo_data(settings.data_dir, pairs=args.pairs, elite=args.elite, seed=0)
    old_keys, seq = ingest_new_files(settings, 0)
    build_elite_set(settings)

    t = time.perf_counter()
    warm = train_warmup(settings, registry, log=quiet)
    champion = train_full(settings, registry, warm.version, log=quiet).version
    registry.promote(champion, by="benchmark")
    print(f"champion {champion}: trained in {time.perf_counter() - t:.1f}s")

    write_new_file(settings, int(args.pairs * args.new_share))
    new_keys, seq = ingest_new_files(settings, seq)
    assert incremental_inputs(settings, registry).new_keys == new_keys
    # Every model is measured on gate rows: rows no training and no epoch choice has read.
    val_all = gate_rows(settings).rows
    val_old = gate_rows(settings, old_keys).rows
    val_new = gate_rows(settings, new_keys).rows
    _, judge = elite_split(settings)
    champ_old = accuracy(settings, registry, champion, val_old)

    rows = []
    for rep in range(args.repeats):
        s = settings.replace(seed=100 + rep)
        t = time.perf_counter()
        inc = train_incremental(s, registry, log=quiet).version
        t_inc = time.perf_counter() - t
        t = time.perf_counter()
        full = train_full(s, registry, train_warmup(s, registry, log=quiet).version, log=quiet).version
        t_full = time.perf_counter() - t
        r = {"t_inc": t_inc, "t_full": t_full, "ratio": t_inc / t_full}
        for name, version in (("inc", inc), ("full", full)):
            r[f"{name}_val"] = accuracy(s, registry, version, val_all)
            r[f"{name}_old"] = accuracy(s, registry, version, val_old)
            r[f"{name}_new"] = accuracy(s, registry, version, val_new)
            r[f"{name}_elite"] = accuracy(s, registry, version, judge)
        rows.append(r)
        print(f"  run {rep + 1}: incremental {t_inc:.1f}s, full retrain {t_full:.1f}s (ratio {r['ratio']:.3f}); "
              f"val acc {r['inc_val']:.4f} vs {r['full_val']:.4f}; old-val acc {r['inc_old']:.4f} vs "
              f"{r['full_old']:.4f} (champion {champ_old:.4f})")

    def med(key: str) -> float:
        return statistics.median(r[key] for r in rows)

    print(f"validation rows: {len(val_all)} ({len(val_old)} old, {len(val_new)} new); elite judging rows {len(judge)}")
    print(f"wall time, median of {args.repeats}: incremental {med('t_inc'):.1f}s, full retrain {med('t_full'):.1f}s, "
          f"ratio {med('ratio'):.3f} (target < 0.1)")
    diff = 100 * statistics.median(r["inc_val"] - r["full_val"] for r in rows)
    print(f"validation accuracy: incremental {med('inc_val'):.4f}, full {med('full_val'):.4f}, "
          f"difference {diff:+.2f} points (target within 0.5)")
    print(f"new-data validation accuracy: incremental {med('inc_new'):.4f}, full {med('full_new'):.4f}")
    print(f"forgetting on old validation rows (champion {champ_old:.4f} minus model): incremental "
          f"{100 * (champ_old - med('inc_old')):+.2f} points, full {100 * (champ_old - med('full_old')):+.2f} points")
    print(f"elite judging accuracy: incremental {med('inc_elite'):.4f}, full {med('full_elite'):.4f}")


if __name__ == "__main__":
    main()
