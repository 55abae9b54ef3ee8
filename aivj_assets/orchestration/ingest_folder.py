"""``aivj demo``: generate demo data if the folder has none, ingest it through Dagster, show it.

:func:`ingest_data_folder` is the reusable part: it registers files exactly as the data
sensor does (same scan, same ledger) and materialises each new partition on the instance.
"""

from __future__ import annotations

from collections.abc import Callable

import dagster as dg

from aivj_assets.data.contract import DATA_SUFFIXES
from aivj_assets.data.generate import write_demo_data
from aivj_assets.data.ledger import Ledger
from aivj_assets.data.scan import candidate_files, scan_tick
from aivj_assets.orchestration import tags
from aivj_assets.orchestration.assets.elite_set import elite_set
from aivj_assets.orchestration.assets.raw_pairs import data_files, raw_pairs
from aivj_assets.orchestration.instance import ensure_instance
from aivj_assets.orchestration.resources import build_resources
from aivj_assets.settings import Settings


def ingest_data_folder(settings: Settings, instance: dg.DagsterInstance, *, log: Callable[[str], None] = print) -> dict:
    """Register every settled new file as the sensor would and materialise it, then ``elite_set``.

    Returns ``{"partitions": [...new keys], "failed": [...keys whose run failed], "elite": bool}``.
    """
    materialized = lambda: set(instance.get_materialized_partitions(raw_pairs.key))  # noqa: E731
    # committed_seq=0: every pending entry (ours, or a crashed sensor tick's) is materialised here.
    plan = scan_tick(settings, 0, materialized=materialized)
    keys = sorted({r.partition for r in plan.requests})
    if keys:
        instance.add_dynamic_partitions(data_files.name, keys)
    failed = []
    for key in keys:
        result = dg.materialize([raw_pairs], instance=instance, partition_key=key, raise_on_error=False,
                                tags={tags.SOURCE: "aivj demo"}, resources=build_resources())
        log(f"  raw_pairs[{key}]: {'ok' if result.success else 'FAILED'}")
        if not result.success:
            failed.append(key)
    scan_tick(settings, plan.last_seq, materialized=materialized)  # record outcomes in the ledger
    elite_ok = False
    if settings.elite_path.is_dir():
        elite_ok = dg.materialize([elite_set], instance=instance, raise_on_error=False).success
        log(f"  elite_set: {'ok' if elite_ok else 'FAILED'}")
    return {"partitions": keys, "failed": failed, "elite": elite_ok}


def format_partitions(settings: Settings) -> str:
    """A table of the ledger: partition, status, rows, source."""
    lines = [f"{'partition':<40} {'status':<10} {'rows':>7}  source"]
    for e in Ledger(settings).load():
        rows = "" if e.get("rows") is None else str(e["rows"])
        lines.append(f"{e['partition']:<40} {e['status']:<10} {rows:>7}  {e['path']}")
    return "\n".join(lines)


def run_demo(settings: Settings, *, pairs: int, elite: int, seed: int) -> int:
    """Generate demo data (if the data folder has none), ingest it on the persistent instance."""
    ensure_instance(settings)
    has_data = any(True for _ in candidate_files(settings))
    if not has_data:
        manifest = write_demo_data(settings.data_dir, pairs=pairs, elite=elite, seed=seed)
        print(f"wrote {manifest['pairs']} demo pairs and {manifest['elite']} elite pairs to {settings.data_dir} "
              f"(Bayes-optimal accuracy {manifest['bayes_accuracy']:.4f})")
        settings = settings.replace(settle_seconds=0)  # we wrote them, atomically: nothing to wait for
    print(f"ingesting {settings.data_dir} ({', '.join(DATA_SUFFIXES)} files)")
    with dg.DagsterInstance.get() as instance:
        outcome = ingest_data_folder(settings, instance)
    print(format_partitions(settings))
    return 1 if outcome["failed"] else 0
