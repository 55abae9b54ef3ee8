"""``aivj reset``: forget the platform's state (after the demo, before your own data).

Removes what the platform wrote: model versions and the champion (``models/``), the store,
checkpoints, state, the training report, the Dagster instance and the data folder's ingest
ledger. Data files themselves are never touched; the next ingest reads them afresh.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from aivj_assets.data.ledger import LAST_SEEN_NAME, LEDGER_NAME, LOCK_NAME
from aivj_assets.settings import Settings

KEEP = {".gitkeep"}


def platform_state(settings: Settings) -> list[Path]:
    """The files and folders ``aivj reset`` removes, those that exist."""
    # The ledger first: if a later removal fails (a file still open), the ledger is rebuilt from
    # whatever store is left, and no file stays marked as ingested into a store that is gone.
    paths = [settings.data_dir / name for name in (LEDGER_NAME, LAST_SEEN_NAME, LOCK_NAME)]
    paths += [p for p in sorted(settings.models_dir.iterdir()) if p.name not in KEEP] if settings.models_dir.is_dir() else []
    paths += [settings.store_dir, settings.checkpoints_dir, settings.state_dir, settings.report_path,
              settings.dagster_home]
    return [p for p in paths if p.exists() or p.is_symlink()]


def reset(settings: Settings) -> list[Path]:
    """Remove :func:`platform_state`; returns what was removed."""
    removed = platform_state(settings)
    for path in removed:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    return removed
