"""``aivj``: the owner's command line (also ``python -m aivj_assets``).

Each subcommand parses its arguments here and calls one function of the module that owns
the behaviour; heavy imports (torch, Dagster) happen only inside the chosen command.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aivj_assets.settings import load_settings


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

    up = sub.add_parser("up", help="Dagster webserver and daemon for this project's instance")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=3000)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one ``aivj`` command; returns the process exit status."""
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except ValueError as exc:
        print(f"aivj: {exc}", file=sys.stderr)
        return 2
    cmd = args.command
    try:
        if cmd == "demo-data":
            from aivj_assets.data.demo import write_demo_data

            manifest = write_demo_data(args.dir, pairs=args.pairs, elite=args.elite, seed=args.seed)
            print(
                f"wrote {manifest['pairs']} pairs in {len(manifest['files'])} files and "
                f"{manifest['elite']} elite pairs to {args.dir} "
                f"(Bayes-optimal accuracy {manifest['bayes_accuracy']:.4f})"
            )
            return 0
        if cmd == "demo":
            from aivj_assets.tour import run_tour

            return run_tour(settings, pairs=args.pairs, elite=args.elite, seed=args.seed)
        if cmd == "status":
            from aivj_assets.status import format_status

            print(format_status(settings))
            return 0
        if cmd == "versions":
            from aivj_assets.registry import Registry

            print(Registry(settings.models_dir).format_table())
            return 0
        if cmd == "rollback":
            from aivj_assets.registry import Registry

            version = Registry(settings.models_dir).rollback(args.version, by="cli")
            print(f"champion is now {version}")
            return 0
        if cmd == "import-model":
            from aivj_assets.registry import import_model

            version = import_model(settings, args.path)
            print(f"imported {args.path} as champion {version}")
            return 0
        if cmd in ("pause", "resume"):
            from aivj_assets.resources.control import PauseFlag

            flag = PauseFlag.for_settings(settings)
            state = flag.pause(by=args.by) if cmd == "pause" else flag.resume(by=args.by)
            print(f"paused: {'yes' if state.paused else 'no'} (by {state.by} at {state.at})")
            return 0
        if cmd == "reset":
            from aivj_assets.reset import platform_state, reset

            paths = reset(settings) if args.yes else platform_state(settings)
            for path in paths:
                print(f"{'removed' if args.yes else 'would remove'} {path}")
            if not args.yes:
                print("nothing removed: run `aivj reset --yes` to remove them" if paths else "nothing to remove")
                return 1 if paths else 0
            return 0
        if cmd == "up":
            from aivj_assets.up import run_up

            return run_up(settings, host=args.host, port=args.port)
    except (ValueError, OSError, RuntimeError) as exc:
        # Domain and file errors carry their own clear message (file, row, reason): no trace.
        print(f"aivj {cmd}: {exc}", file=sys.stderr)
        return 1
    raise AssertionError(f"unhandled command {cmd}")


if __name__ == "__main__":
    sys.exit(main())
