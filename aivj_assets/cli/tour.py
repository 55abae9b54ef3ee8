"""``aivj demo``: the one-command tour of the whole platform on the persistent instance.

Generate and ingest the demo corpus (``orchestration/ingest_folder.py``), then run the
``full_training`` job (elite set, warm-up, full training, promotion) through Dagster on the
project's own instance, so that everything it did shows up in ``aivj up``'s UI; finally
print what came of it: the champion, its metrics against the gates, where the files are.
Running it again reuses what exists: no regeneration, no re-ingest, and no retraining
once a champion exists.
"""

from __future__ import annotations

import contextlib
import io
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aivj_assets.data.generate import write_demo_data
from aivj_assets.data.ingest import rebuild_stale
from aivj_assets.data.scan import candidate_files
from aivj_assets.ops.control import read_progress
from aivj_assets.orchestration.demo_run import check_results, run_job_watched, step_times
from aivj_assets.orchestration.ingest_folder import ingest_data_folder
from aivj_assets.orchestration.instance import ensure_instance, open_instance
from aivj_assets.registry import Registry
from aivj_assets.settings import Settings

JOB_NAME = "full_training"
STAGES = ("elite_set", "warmed_model", "full_model", "promoted_model")
STAGE_LABELS = {"elite_set": "elite set", "warmed_model": "warm-up", "full_model": "full training",
                "promoted_model": "promotion"}
BAR_WIDTH = 30


@dataclass
class TourResult:
    """What the tour did: the outcome, the run, and wall seconds per part."""

    outcome: str  # "promoted" | "rejected" | "up_to_date" | "failed"
    run_id: str | None = None
    champion: dict[str, Any] | None = None
    candidates: list[dict[str, Any]] = field(default_factory=list)  # this run's registry entries
    checks: list[dict[str, Any]] = field(default_factory=list)  # this run's gate evaluations
    seconds: dict[str, float] = field(default_factory=dict)  # ingest, each stage, job, total


class Progress:
    """A one-line progress display: a bar on a terminal, a line every few seconds otherwise."""

    def __init__(self, out: Callable[[str], None] | None = None, stream: Any = None) -> None:
        self.stream = stream or sys.stdout
        self.tty = out is None and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.out = out or (lambda text: print(text, file=self.stream, flush=True))
        self._last_line = ""
        self._label = ""
        self._last_print = 0.0

    def show(self, label: str, fraction: float | None, detail: str = "") -> None:
        """Redraw (terminal) or print (log: on a new stage, then every 10 s while progress is known)."""
        if fraction is None:
            line = f"  {label:<15} running" + (f" {detail}" if detail else "")
        else:
            done = int(round(BAR_WIDTH * min(max(fraction, 0.0), 1.0)))
            line = f"  {label:<15} [{'#' * done}{'.' * (BAR_WIDTH - done)}] {100 * fraction:3.0f}% {detail}".rstrip()
        if self.tty:  # one redrawn line per stage; a finished stage's line stays on screen
            if label != self._label and self._last_line:
                self.stream.write("\n")
                self._last_line = ""
            self.stream.write("\r" + line.ljust(len(self._last_line)))
            self.stream.flush()
            self._last_line, self._label = line, label
            return
        now = time.monotonic()
        new_stage = label != self._label
        if new_stage or (fraction is not None and line != self._last_line and now - self._last_print >= 10.0):
            self.out(line)
            self._last_print = now
            self._last_line = line
            self._label = label

    def done(self) -> None:
        """End the redrawn line so later output starts on its own line."""
        if self.tty and self._last_line:
            self.stream.write("\n")
            self.stream.flush()
            self._last_line = ""


def _watch(settings: Settings, progress: Progress, began: float) -> Callable[[str], None]:
    """What to show for the step that is running: its stage, and the training loop's step/ETA."""

    def show(step: str) -> None:
        fraction, detail = None, ""
        p = read_progress(settings)
        fresh = p.get("total_steps") and _iso_after(p.get("at"), began)
        if step in ("warmed_model", "full_model") and fresh:
            fraction = float(p.get("step") or 0) / float(p["total_steps"])
            eta = p.get("eta_seconds")
            detail = f"step {p.get('step')}/{p['total_steps']}" + (f", ETA {float(eta):.0f}s" if eta is not None else "")
        # Check steps (gates, integrity) are named after their asset: show them as "gates".
        progress.show(STAGE_LABELS.get(step, "gates"), fraction, detail)

    return show


def _iso_after(at: Any, ts: float) -> bool:
    try:
        return datetime.fromisoformat(str(at)).timestamp() >= ts - 1.0
    except ValueError:
        return False


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _duration(seconds: float) -> str:
    return f"{int(seconds // 60)}m{seconds % 60:02.0f}s" if seconds >= 60 else f"{seconds:.1f}s"


def summary(settings: Settings, result: TourResult) -> str:
    """The closing text: outcome, champion and gates, where the files are, how to see the UI."""

    s = result.seconds
    parts = [f"{name} {_duration(s[key])}" for name, key in
             (("ingest", "ingest"), ("warm-up", "warmed_model"), ("full training", "full_model"),
              ("promotion", "promoted_model")) if key in s]
    lines = [f"aivj demo: {result.outcome} in {_duration(s.get('total', 0.0))}"
             + (f" ({', '.join(parts)})" if parts else "")]
    champ = result.champion
    if champ:
        m = champ.get("measured") or {}
        lines.append(f"champion: {champ['version']} ({champ.get('stage', '?')} stage)")
        lines.append(f"  elite accuracy (held-out judging part) {_fmt(m.get('elite_accuracy'))}"
                     f"  gate >= {settings.elite_min_accuracy:.2f}")
        lines.append(f"  validation accuracy (gate rows)        {_fmt(m.get('val_accuracy'))}"
                     f"  gate >= {settings.val_min_accuracy:.2f}  ({m.get('val_rows', '?')} rows)")
        lines.append(f"  F1 {_fmt(m.get('f1'))}, validation loss {_fmt(m.get('val_loss'))}, "
                     f"calibration error {_fmt(m.get('ece'))}")
        if champ.get("summary"):
            lines.append(f"  {champ['summary']}")
    else:
        lines.append("champion: none")
    for cand in result.candidates:
        reasons = "; ".join(cand.get("reasons") or [])
        lines.append(f"candidate {cand['version']} ({cand.get('stage', '?')}): {cand.get('status')}"
                     + (f": {reasons}" if reasons else ""))
    if result.checks:
        failed = [c for c in result.checks if not c["passed"]]
        lines.append(f"gates: {len(result.checks) - len(failed)}/{len(result.checks)} checks passed")
        for c in failed:
            meta = c["metadata"]
            measured = ", ".join(f"{k} {_fmt(meta[k])}" for k in ("value", "bound") if k in meta)
            lines.append(f"  {c['severity'].lower()}: {c['asset']} {c['check']}" + (f" ({measured})" if measured else ""))
    registry = Registry(settings.models_dir)
    lines += [
        "files:",
        f"  model     {registry.best_path}  (champion weights; versions under {settings.models_dir})",
        f"  registry  {registry.registry_path}  (`aivj versions`, `aivj rollback`)",
        f"  report    {settings.report_path}",
        "see it:    `aivj up`, then open http://127.0.0.1:3000 (Lineage: the asset graph; "
        "a model asset's Checks tab: the gates)",
    ]
    return "\n".join(lines)


def _ensure_demo_data(settings: Settings, *, pairs: int, elite: int, seed: int,
                      say: Callable[[str], None]) -> Settings:
    """Write the demo corpus unless the data folder already holds data files (then reuse them)."""
    if any(True for _ in candidate_files(settings)):
        say(f"aivj demo: using the data already in {settings.data_dir}")
        return settings
    say(f"aivj demo: writing {pairs:,} demo pairs and {elite} elite pairs to {settings.data_dir}")
    manifest = write_demo_data(settings.data_dir, pairs=pairs, elite=elite, seed=seed)
    say(f"  Bayes-optimal accuracy of the drawn labels: {manifest['bayes_accuracy']:.4f}")
    return settings.replace(settle_seconds=0)  # written atomically just now: nothing to wait for


def _ingest(settings: Settings, instance: Any, say: Callable[[str], None]) -> None:
    """Ingest new files as the data sensor would (``ingest_data_folder``); say what it did."""

    # Each partition's run logs its Dagster events to stderr; they stay in the UI, and are
    # shown here only when something failed (the tour's own lines go through ``say``).
    events = io.StringIO()
    try:
        with contextlib.redirect_stderr(events):
            outcome = ingest_data_folder(settings, instance, log=say)
    except BaseException:
        sys.stderr.write(events.getvalue())
        raise
    if outcome["failed"]:
        sys.stderr.write(events.getvalue())
    new = len(outcome["partitions"])
    say(f"aivj demo: {new} new partition(s) ingested" if new else "aivj demo: no new data files; nothing to ingest")
    if outcome["failed"]:
        raise RuntimeError(f"ingest failed for partitions {outcome['failed']}; see their runs in the UI")


def tour(settings: Settings, *, pairs: int, elite: int, seed: int,
         out: Callable[[str], None] | None = None) -> TourResult:
    """Ingest the demo corpus, then train and promote through Dagster unless a champion exists."""
    say = out or (lambda text: print(text, flush=True))
    ensure_instance(settings)
    rebuild_stale(settings, log=say)
    started = time.monotonic()
    seconds: dict[str, float] = {}
    with open_instance() as instance:
        say(f"aivj demo: instance {settings.dagster_home}, data {settings.data_dir}")
        t0 = time.monotonic()
        settings = _ensure_demo_data(settings, pairs=pairs, elite=elite, seed=seed, say=say)
        _ingest(settings, instance, say)
        seconds["ingest"] = time.monotonic() - t0

        registry = Registry(settings.models_dir)
        champion = registry.champion()
        if champion is not None:
            say(f"aivj demo: champion {champion['version']} exists; nothing to retrain "
                "(the nightly schedule trains on new data)")
            seconds["total"] = time.monotonic() - started
            return TourResult("up_to_date", champion=champion, seconds=seconds)

        say("aivj demo: training (elite warm-up, full training, promotion) through Dagster")
        t0 = time.monotonic()
        progress = Progress(out)
        try:
            run_id, success = run_job_watched(instance, JOB_NAME, _watch(settings, progress, time.time()),
                                              launched_by="aivj demo")
        finally:
            progress.done()
        seconds["job"] = time.monotonic() - t0
        seconds.update({k: v for k, v in step_times(instance, run_id).items() if k in STAGES})
        checks = check_results(instance, run_id)
    champion = registry.champion()
    # This run's candidates: trained in it, or reused from an earlier run and judged in it.
    candidates = [e for e in registry.entries() if run_id in (e.get("run_id"), e.get("judged_in_run"))]
    if champion is not None and run_id in (champion.get("run_id"), champion.get("judged_in_run")):
        outcome = "promoted"
    elif any(c.get("status") == "rejected" for c in candidates):
        outcome = "rejected"
    else:
        outcome = "failed" if not success else "kept champion"
    seconds["total"] = time.monotonic() - started
    return TourResult(outcome, run_id, champion, candidates, checks, seconds)


def run_tour(settings: Settings, *, pairs: int, elite: int, seed: int) -> int:
    """``aivj demo``: the tour and its summary; 0 when a champion stands at the end."""
    result = tour(settings, pairs=pairs, elite=elite, seed=seed)
    print(summary(settings, result), flush=True)
    if result.outcome == "failed" and result.run_id:
        print(f"aivj demo: the run failed; its logs are in the UI (`aivj up`), run {result.run_id}",
              file=sys.stderr, flush=True)
    return 0 if result.champion is not None else 1
