"""The project's Dagster instance: install the ``dagster.yaml`` template into DAGSTER_HOME."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from aivj_assets.settings import PROJECT_ROOT, Settings

TEMPLATE = PROJECT_ROOT / "dagster.yaml"


def ensure_instance(settings: Settings) -> Path:
    """Create DAGSTER_HOME with the project's ``dagster.yaml`` if it has none; export it.

    An existing ``dagster.yaml`` is the owner's and is left alone.
    """
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists():
        tmp = target.with_suffix(f".yaml.{os.getpid()}.tmp")  # the daemon and the CLI may race here
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(TEMPLATE.read_text(encoding="utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def init_storage(home: Path) -> None:
    """Create the instance's storages now, in this process.

    Started on a fresh DAGSTER_HOME, the webserver and the daemon would both create and stamp
    the same databases at once, and one of them can fail on the race ("table alembic_version
    already exists").
    """
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.get_runs(limit=1)
        instance.all_instigator_state()
        instance.get_latest_materialization_event(dg.AssetKey("raw_pairs"))


@contextmanager
def open_instance() -> Iterator[dg.DagsterInstance]:
    """The instance at DAGSTER_HOME (:func:`ensure_instance` set it), closed afterwards."""
    with dg.DagsterInstance.get() as instance:
        yield instance
