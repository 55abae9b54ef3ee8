"""How often the promotion gates promote by mistake, and how often they catch a real gain, in one run.

On the demo's task (``aivj_assets.data.generate``: a known coupling function, so every model's true
accuracy is known), at the demo's size (104,040 pairs, 512 elite), ingested into a temporary
store and split the platform's way:
  0. models are trained the way ``full_training`` does it (elite warm-up, then full), each from
     fresh weights: weaker champions on the first of the 6 files only (as when the corpus was
     young; ``--weak-epochs`` full epochs, and all 8) and on the first 2, then on every file a champion
     (seed 0) and ``--candidates`` candidates of the same recipe and data with seeds 1..N;
  1. (a) false promotions: each candidate is judged by the platform (``judge_candidate``) against
     the champion of the same recipe: equal quality, so every promotion is a false one.
     Target: at most 5% promoted;
  2. (b) power: each weaker champion is promoted in turn and the same candidates are judged against
     it; the pairs where the candidate is truly better by at least 1 point count. Target: at least
     80% of them promoted.
True accuracy is each model's expected accuracy on ``--truth-rows`` fresh pairs from the task's
own probabilities (no label noise in it). Shares are printed with Wilson 95% intervals.

    .venv/bin/python benchmarks/gates.py [--pairs 104040] [--candidates 20] [--hidden 512 --embed 256]
        [--min-gain 0.1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from incremental import ingest_new_files, machine  # the sibling script (benchmarks/ is on sys.path)

from aivj_assets.data.elite import build_elite_set
from aivj_assets.data.generate import coupling_probability, draw_pairs, write_demo_data
from aivj_assets.policy.evidence import wilson_interval
from aivj_assets.policy.promotion import judge_candidate
from aivj_assets.policy.rows import gate_rows
from aivj_assets.policy.stages import train_full, train_warmup
from aivj_assets.registry import Registry
from aivj_assets.settings import Settings, load_settings
from aivj_assets.training.metrics import predict
from aivj_assets.training.model import build_model, load_state_dict


def true_accuracy(settings: Settings, registry: Registry, version: str, audio, preset, prob) -> float:
    """Expected accuracy over fresh pairs: P(right) is p where it predicts 1, 1 - p where 0."""
    meta = registry.meta(version)
    model = build_model(settings, meta["dims"]["audio_dim"], meta["dims"]["preset_dim"])
    model.load_state_dict(load_state_dict(registry.weights_path(version)))

    class Rows:  # the two tensors predict() reads
        def __init__(self) -> None:
            self.audio, self.preset = torch.from_numpy(audio), torch.from_numpy(preset)

        def __len__(self) -> int:
            return len(audio)

    yes = predict(model, Rows())
    return float(np.mean(np.where(yes, prob, 1 - prob)))


def trained(settings: Settings, registry: Registry, seed: int, **changes: int) -> str:
    s = settings.replace(seed=seed, **changes)
    warm = train_warmup(s, registry, log=lambda _: None)
    return train_full(s, registry, warm.version, log=lambda _: None).version


def share(hits: int, n: int) -> str:
    lo, hi = wilson_interval(hits, n)
    return f"{hits}/{n} = {hits / n if n else float('nan'):.1%} (95% CI {lo:.1%} to {hi:.1%})"


def arrive(staging: Path, data: Path, names: list[str]) -> None:
    """Move demo files from ``staging`` into the watched folder, as if they had just been collected."""
    for name in names:
        target = data / Path(name).relative_to(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        Path(name).rename(target)


def judged(settings: Settings, registry: Registry, champion: str, candidates: list[str],
           truth: dict[str, float]) -> list[tuple[float, bool]]:
    """(true gain, promoted) of each candidate against ``champion``, printed as it goes."""
    registry.promote(champion, by="benchmark")
    print(f"champion {champion}, true accuracy {truth[champion]:.4f}")
    out = []
    for v in candidates:
        verdict = judge_candidate(settings, registry, v, log=lambda _: None)
        gate = verdict.judgement.gate("beats_champion")
        gain = truth[v] - truth[champion]
        out.append((gain, verdict.judgement.passed))
        print(f"  {v}: true gain {100 * gain:+.2f} points; measured {100 * gate.detail['gain']:+.2f} on "
              f"{gate.detail['rows']} rows ({gate.detail['candidate_only']} vs {gate.detail['champion_only']} "
              f"discordant), p = {gate.value:.3g}; {'PROMOTED' if verdict.judgement.passed else 'kept'}")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=104_040)
    p.add_argument("--elite", type=int, default=512)
    p.add_argument("--candidates", type=int, default=20)
    p.add_argument("--hidden", type=int, default=512, help="CouplingNet hidden width (the owner's: 512)")
    p.add_argument("--embed", type=int, default=256)
    p.add_argument("--weak-epochs", type=int, default=2,
                   help="full epochs of the weakest champion (on one file): its gap to the candidates")
    p.add_argument("--min-gain", type=float, default=None, help="AIVJ_PROMOTE_MIN_GAIN (default: the setting's)")
    p.add_argument("--truth-rows", type=int, default=200_000)
    args = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="aivj-bench-gates-"))
    settings = load_settings(env={"AIVJ_HOME": str(tmp / "home"), "AIVJ_DATA_DIR": str(tmp / "data"),
                                  "AIVJ_SETTLE_SECONDS": "0"}, env_file=tmp / "none.env").replace(
        hidden_dim=args.hidden, embed_dim=args.embed, checkpoint_every=10**9, device="cpu")
    if args.min_gain is not None:
        settings = settings.replace(promote_min_gain=args.min_gain)
    registry = Registry(settings.models_dir)
    print(f"machine: {machine()}")
    manifest = write_demo_data(tmp / "staging", pairs=args.pairs, elite=args.elite, seed=0)
    audio, preset, _, _ = draw_pairs(args.truth_rows, np.random.default_rng(987_654))
    prob = coupling_probability(audio, preset)
    t0 = time.perf_counter()
    arrive(tmp / "staging", settings.data_dir, manifest["elite_files"])
    arrive(tmp / "staging", settings.data_dir, manifest["files"][:1])
    seq = ingest_new_files(settings, 0)[1]
    build_elite_set(settings)
    weak = [trained(settings, registry, 0, full_epochs=args.weak_epochs), trained(settings, registry, 0)]
    arrive(tmp / "staging", settings.data_dir, manifest["files"][1:2])
    seq = ingest_new_files(settings, seq)[1]
    weak.append(trained(settings, registry, 0))
    arrive(tmp / "staging", settings.data_dir, manifest["files"][2:])
    ingest_new_files(settings, seq)
    gate_n = len(gate_rows(settings).rows)
    print(f"corpus: {args.pairs} pairs, {args.elite} elite, Bayes accuracy {manifest['bayes_accuracy']:.4f}; "
          f"gate rows {gate_n}; CouplingNet hidden {args.hidden}, embed {args.embed}; alpha {settings.promote_alpha}, "
          f"margin {settings.promote_min_gain} points")
    champion = trained(settings, registry, 0)
    candidates = [trained(settings, registry, seed) for seed in range(1, args.candidates + 1)]
    print(f"trained {len(candidates) + 3} models in {time.perf_counter() - t0:.0f}s")
    truth = {v: true_accuracy(settings, registry, v, audio, preset, prob) for v in [*weak, champion, *candidates]}

    print("(a) equal quality, same recipe and data:")
    equal = judged(settings, registry, champion, candidates, truth)
    print(f"(b) weaker champions: 1 of the 6 files ({args.weak_epochs} and {settings.full_epochs} epochs), 2 of them "
          f"({settings.full_epochs} epochs):")
    pairs = [pair for w in weak for pair in judged(settings, registry, w, candidates, truth)]
    promoted = sum(p for _, p in equal)
    better = [p for gain, p in pairs if gain >= 0.01]
    print(f"false promotions (a): {share(promoted, len(equal))} (target <= 5%)")
    print(f"power (b): of {len(better)} pairs truly better by >= 1 point, promoted {share(sum(better), len(better))} "
          f"(target >= 80%); pairs below 1 point: {len(pairs) - len(better)}, of which promoted "
          f"{sum(p for gain, p in pairs if gain < 0.01)}")


if __name__ == "__main__":
    main()
