"""Wall time of ``aivj demo`` and its orchestration overhead against the training engine alone.

For each repetition, on a fresh home, instance and copy of the demo corpus:
  A. the tour (``aivj_assets.cli.tour.tour``): ingest, then the ``full_training`` job through
     Dagster (elite set, warm-up, full training, gates and promotion);
  B. the training engine alone on the same stored data: ``aivj_assets.training.loop.train`` for
     the same warm-up and full epochs, then the evaluation on gate and elite judging rows that
     promotion needs; no Dagster, no registry, no checks.
Repetitions interleave A and B (ABAB...) because the machine is shared; medians are reported.
Both run in one process: torch is imported and its first use paid before either is timed
(as ``aivj demo`` pays it once per process whatever it runs), so the ratio is orchestration.
The overhead ratio is A's training job (wall) over B (wall); target < 1.15.

    .venv/bin/python benchmarks/demo.py [--pairs 104040] [--elite 512] [--reps 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

ENV_KEYS = ("AIVJ_HOME", "AIVJ_DATA_DIR", "DAGSTER_HOME", "AIVJ_ENV_FILE")


def point_at(root: Path, corpus: Path) -> None:
    """Make every AIVJ and Dagster path of this process a fresh tree under ``root``."""
    root.mkdir(parents=True)
    shutil.copytree(corpus, root / "data")
    os.environ.update({
        "AIVJ_HOME": str(root / "home"), "AIVJ_DATA_DIR": str(root / "data"),
        "DAGSTER_HOME": str(root / "dagster_home"), "AIVJ_ENV_FILE": str(root / "no.env"),
        "AIVJ_SETTLE_SECONDS": "0",
    })


def run_tour(root: Path, corpus: Path, pairs: int, elite: int) -> dict[str, float]:
    """A: the tour on a fresh tree; its seconds per part."""
    from aivj_assets.cli.tour import tour
    from aivj_assets.settings import load_settings

    point_at(root, corpus)
    result = tour(load_settings(), pairs=pairs, elite=elite, seed=0, out=lambda line: None)
    if result.outcome != "promoted":
        raise RuntimeError(f"tour ended {result.outcome}: {result.candidates}")
    m = result.champion["measured"]
    return {**result.seconds, "val_accuracy": m["val_accuracy"], "elite_accuracy": m["elite_accuracy"]}


def run_engine(store_home: Path, work: Path) -> dict[str, float]:
    """B: the same warm-up and full epochs on the same stored rows with ``train`` alone."""
    import pyarrow as pa

    from aivj_assets.data.split import GATE, SELECTION, TRAIN, corpus_part
    from aivj_assets.data.store import Store
    from aivj_assets.settings import load_settings
    from aivj_assets.training.dataset import elite_parts, tensors_from_table
    from aivj_assets.training.loop import TrainConfig, train
    from aivj_assets.training.metrics import evaluate
    from aivj_assets.training.model import build_model

    settings = load_settings().replace(home=store_home)
    t0 = time.monotonic()
    store = Store(settings)
    table = store.read_partitions()
    part = corpus_part(table.column("row_hash").to_numpy(zero_copy_only=False), settings.selection_fraction,
                       settings.gate_fraction)
    rows, selection, val = (tensors_from_table(table.filter(pa.array(part == p))) for p in (TRAIN, SELECTION, GATE))
    warm, judge = elite_parts(store.elite_table())
    model = build_model(settings, rows.audio_dim, rows.preset_dim)
    t1 = time.monotonic()
    warm_cfg = TrainConfig.from_settings(settings, epochs=settings.warmup_epochs, identity="bench-warm",
                                         checkpoint_dir=work / "warm")
    result = train(model, warm, selection=selection, config=warm_cfg, log=lambda line: None)
    model.load_state_dict(result.state_dict)
    t2 = time.monotonic()
    full_cfg = TrainConfig.from_settings(settings, epochs=settings.full_epochs, identity="bench-full",
                                         checkpoint_dir=work / "full")
    result = train(model, rows, selection=selection, config=full_cfg, log=lambda line: None)
    model.load_state_dict(result.state_dict)
    t3 = time.monotonic()
    on_judge, on_val = evaluate(model, judge), evaluate(model, val)
    t4 = time.monotonic()
    return {"load": t1 - t0, "warm-up": t2 - t1, "full": t3 - t2, "judge": t4 - t3, "total": t4 - t0,
            "val_accuracy": on_val["accuracy"], "elite_accuracy": on_judge["accuracy"]}


def warm_torch() -> float:
    """Pay torch's one-time first use in this process (its optimizers import torch._dynamo,
    about 1.2 s) before anything is timed, so that neither A nor B carries it; seconds taken."""
    import torch

    t0 = time.monotonic()
    layer = torch.nn.Linear(4, 1)
    opt = torch.optim.AdamW(layer.parameters())
    layer(torch.ones(2, 4)).sum().backward()
    opt.step()
    return time.monotonic() - t0


class OtherCpu:
    """CPU seconds that other processes used since ``start()`` (Linux ``/proc/stat``; None elsewhere).

    The machine is shared: a part whose wall time grew while others ran is flagged by this."""

    def start(self) -> OtherCpu:
        self.t0 = self._busy(), self._own()
        return self

    @staticmethod
    def _busy() -> float | None:
        try:
            fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        except (OSError, ValueError):
            return None
        user, nice, system, _idle, _iowait, irq, softirq, steal = fields
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def seconds(self) -> float | None:
        busy = self._busy()
        if busy is None or self.t0[0] is None:
            return None
        return max(0.0, (busy - self.t0[0]) - (self._own() - self.t0[1]))


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil

        ram = f"{psutil.virtual_memory().total / 2**30:.1f} GiB RAM"
    except ImportError:
        ram = "RAM unknown"
    return f"{os.cpu_count()} CPUs ({cpu}), {ram}, {platform.system()} {platform.release()}"


def _secs(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.1f}s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=104_040)
    ap.add_argument("--elite", type=int, default=512)
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()

    import torch

    from aivj_assets.data.generate import write_demo_data
    from aivj_assets.settings import load_settings

    base = Path(tempfile.mkdtemp(prefix="aivj-bench-demo-"))
    try:
        corpus = base / "corpus"
        t0 = time.monotonic()
        write_demo_data(corpus, pairs=args.pairs, elite=args.elite, seed=0)
        generate = time.monotonic() - t0
        first_use = warm_torch()
        s = load_settings()
        print(f"machine: {machine()}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
              f"torch first use {first_use:.1f}s (once per process, before A and B, timed in neither)")
        print(f"corpus: {args.pairs:,} pairs, {args.elite} elite (generated in {generate:.1f}s, not timed below); "
              f"epochs warm-up {s.warmup_epochs}, full {s.full_epochs}; hidden {s.hidden_dim}, embed {s.embed_dim}, "
              f"batch {s.batch_size}; {args.reps} repetitions, A and B interleaved")
        tours, engines = [], []
        for rep in range(args.reps):
            other = OtherCpu().start()
            tours.append(run_tour(base / f"tour{rep}", corpus, args.pairs, args.elite))
            load_a, other_a = os.getloadavg()[1], other.seconds()
            other.start()
            engines.append(run_engine(base / f"tour{rep}" / "home", base / f"engine{rep}"))
            load_b, other_b = os.getloadavg()[1], other.seconds()
            t, e = tours[-1], engines[-1]
            # The machine may be shared: the 5-minute load average after each part, and the CPU
            # seconds other processes took during it, say how much.
            print(f"rep {rep}: load average (5 min) after tour {load_a:.1f}, after engine {load_b:.1f}; "
                  f"CPU used by other processes during tour {_secs(other_a)}, during engine {_secs(other_b)}")
            print(f"rep {rep}: tour total {t['total']:.1f}s (ingest {t['ingest']:.1f}, job {t['job']:.1f}: "
                  f"elite_set {t.get('elite_set', 0):.1f}, warm-up {t['warmed_model']:.1f}, "
                  f"full {t['full_model']:.1f}, promotion {t['promoted_model']:.1f}); "
                  f"engine alone {e['total']:.1f}s (load {e['load']:.1f}, warm-up {e['warm-up']:.1f}, "
                  f"full {e['full']:.1f}, judge {e['judge']:.1f})")

        def med(rows: list[dict[str, float]], key: str) -> float:
            return statistics.median(r.get(key, 0.0) for r in rows)

        job, engine = med(tours, "job"), med(engines, "total")
        print("\nmedians (seconds)")
        print(f"  aivj demo total        {med(tours, 'total'):8.1f}")
        print(f"    ingest (raw_pairs + elite_set) {med(tours, 'ingest'):8.1f}")
        print(f"    full_training job    {job:8.1f}")
        print(f"      elite_set          {med(tours, 'elite_set'):8.1f}")
        print(f"      warm-up            {med(tours, 'warmed_model'):8.1f}   engine alone {med(engines, 'warm-up'):8.1f}")
        print(f"      full training      {med(tours, 'full_model'):8.1f}   engine alone {med(engines, 'full'):8.1f}")
        print(f"      promotion (gates)  {med(tours, 'promoted_model'):8.1f}   engine alone {med(engines, 'judge'):8.1f}")
        print(f"  engine alone total     {engine:8.1f}   (load {med(engines, 'load'):.1f})")
        print(f"champion: val accuracy {med(tours, 'val_accuracy'):.4f}, elite {med(tours, 'elite_accuracy'):.4f}; "
              f"engine alone: val {med(engines, 'val_accuracy'):.4f}, elite {med(engines, 'elite_accuracy'):.4f}")
        ratio = job / engine
        print(f"orchestration overhead ratio (job / engine alone): {ratio:.3f}  "
              f"(target < 1.15: {'met' if ratio < 1.15 else 'NOT met'})")
    finally:
        shutil.rmtree(base, ignore_errors=True)
        for key in ENV_KEYS:
            os.environ.pop(key, None)


if __name__ == "__main__":
    main()
