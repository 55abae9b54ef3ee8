"""``aivj``: the owner's command line (also ``python -m aivj_assets``).

Each subcommand parses its arguments here and calls one function of the module that owns
the behaviour. Commands that need torch or Dagster import them when chosen, so ``aivj pause``
answers at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from aivj_assets.cli.reset import platform_state, reset
from aivj_assets.data.generate import write_demo_data
from aivj_assets.ops.control import PauseFlag
from aivj_assets.registry import Registry
from aivj_assets.registry.table import versions_table
from aivj_assets.settings import Settings, load_settings


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aivj", description="AIVJ coupling_net training platform")
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("status", help="current run, champion, pause flag, resources, partitions")
    sub.add_parser("versions", help="table of model versions, metrics and status")

    rb = sub.add_parser("rollback", help="make an earlier version the champion again")
    rb.add_argument("version", nargs="?", help="version id (default: the previous champion)")

    pa = sub.add_parser("pause", help="pause training (honoured within seconds)")
    pa.add_argument("--by", default="cli", help="who pauses (shown by status)")
    re_ = sub.add_parser("resume", help="resume training")
    re_.add_argument("--by", default="cli", help="who resumes")

    dd = sub.add_parser("demo-data", help="write a demo corpus with a known coupling function")
    dd.add_argument("dir", type=Path)
    dd.add_argument("--pairs", type=int, default=104_040)
    dd.add_argument("--elite", type=int, default=512)
    dd.add_argument("--seed", type=int, default=0)

    im = sub.add_parser("import-model", help="register an existing state dict as the first champion")
    im.add_argument("path", type=Path)

    de = sub.add_parser("demo", help="generate, ingest, train, promote and report: the one-command tour")
    de.add_argument("--pairs", type=int, default=104_040)
    de.add_argument("--elite", type=int, default=512)
    de.add_argument("--seed", type=int, default=0)

    rs = sub.add_parser("reset", help="forget model versions, store, checkpoints and the Dagster instance "
                                      "(data files are kept); stop `aivj up` first")
    rs.add_argument("--yes", action="store_true", help="really remove them (without it: list them)")

    dr = sub.add_parser("doctor", help="check folders, torch and GPU, Telegram, email, export path and window: "
                                       "ok / warn / fail, each failure with its fix")
    dr.add_argument("--send-test", action="store_true", help="also send one test email")

    up = sub.add_parser("up", help="Dagster webserver and daemon for this project's instance")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=3000)
    return p


def _demo_data(settings: Settings, args: argparse.Namespace) -> int:
    manifest = write_demo_data(args.dir, pairs=args.pairs, elite=args.elite, seed=args.seed)
    print(f"wrote {manifest['pairs']} pairs in {len(manifest['files'])} files and {manifest['elite']} elite pairs "
          f"to {args.dir} (Bayes-optimal accuracy {manifest['bayes_accuracy']:.4f})")
    return 0


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from aivj_assets.cli.tour import run_tour  # Dagster and torch: only for this command

    return run_tour(settings, pairs=args.pairs, elite=args.elite, seed=args.seed)


def _status(settings: Settings, args: argparse.Namespace) -> int:
    from aivj_assets.orchestration.status import format_status  # Dagster: only for this command

    print(format_status(settings))
    return 0


def _versions(settings: Settings, args: argparse.Namespace) -> int:
    print(versions_table(Registry(settings.models_dir)))
    return 0


def _rollback(settings: Settings, args: argparse.Namespace) -> int:
    from aivj_assets.ops.notifier import Notifier
    from aivj_assets.policy.export import roll_back

    version = roll_back(settings, Registry(settings.models_dir), args.version, by="cli", notify=Notifier(settings))
    print(f"champion is now {version}")
    return 0


def _import_model(settings: Settings, args: argparse.Namespace) -> int:
    from aivj_assets.ops.notifier import Notifier
    from aivj_assets.policy.importing import import_champion  # torch: only for this command

    version = import_champion(settings, Registry(settings.models_dir), args.path, notify=Notifier(settings))
    print(f"imported {args.path} as champion {version}")
    return 0


def _pause_or_resume(settings: Settings, args: argparse.Namespace) -> int:
    flag = PauseFlag.for_settings(settings)
    state = flag.pause(by=args.by) if args.command == "pause" else flag.resume(by=args.by)
    print(f"paused: {'yes' if state.paused else 'no'} (by {state.by} at {state.at})")
    return 0


def _reset(settings: Settings, args: argparse.Namespace) -> int:
    paths = reset(settings) if args.yes else platform_state(settings)
    for path in paths:
        print(f"{'removed' if args.yes else 'would remove'} {path}")
    if not args.yes:
        print("nothing removed: run `aivj reset --yes` to remove them" if paths else "nothing to remove")
        return 1 if paths else 0
    return 0


def _up(settings: Settings, args: argparse.Namespace) -> int:
    from aivj_assets.cli.up import run_up  # Dagster: only for this command

    return run_up(settings, host=args.host, port=args.port)


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "demo-data": _demo_data, "demo": _demo, "status": _status, "versions": _versions, "rollback": _rollback,
    "import-model": _import_model, "pause": _pause_or_resume, "resume": _pause_or_resume, "reset": _reset,
    "up": _up,
}


def main(argv: list[str] | None = None) -> int:
    """Run one ``aivj`` command; returns the process exit status."""
    args = _parser().parse_args(argv)
    if args.command == "doctor":  # settings that do not load are one of its findings, not a stop
        from aivj_assets.cli.doctor import run_doctor

        return run_doctor(send_test=args.send_test)
    try:
        settings = load_settings()
    except ValueError as exc:
        print(f"aivj: {exc}", file=sys.stderr)
        return 2
    try:
        return COMMANDS[args.command](settings, args)
    except (ValueError, OSError, RuntimeError) as exc:
        # Domain and file errors carry their own clear message (file, row, reason): no trace.
        print(f"aivj {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
