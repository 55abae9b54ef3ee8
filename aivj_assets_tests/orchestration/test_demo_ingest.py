"""``aivj demo`` (ingest part): demo data generated once, every file ingested once through Dagster."""

from __future__ import annotations

import dagster as dg

from aivj_assets.data.ledger import Ledger
from aivj_assets.data.store import Store
from aivj_assets.orchestration.ingest_folder import ingest_data_folder, run_demo
from aivj_assets_tests.builders import rows, write_jsonl


def test_run_demo_generates_ingests_and_is_idempotent(aivj_env, capsys):
    assert run_demo(aivj_env, pairs=1500, elite=40, seed=0) == 0
    out = capsys.readouterr().out
    assert "wrote 1500 demo pairs" in out and "ingested" in out
    store = Store(aivj_env)
    keys = store.partitions()
    assert len(keys) == 3 and store.read_partitions().num_rows == 1500
    assert store.elite_table().num_rows == 40
    with dg.DagsterInstance.get() as instance:
        assert set(instance.get_materialized_partitions(dg.AssetKey("raw_pairs"))) == set(keys)
        assert sorted(instance.get_dynamic_partitions("data_files")) == keys
        # Run again: no new data written, nothing registered or ingested twice.
        assert run_demo(aivj_env, pairs=1500, elite=40, seed=0) == 0
        assert "wrote" not in capsys.readouterr().out
        assert sorted(instance.get_dynamic_partitions("data_files")) == keys
        assert [e["status"] for e in Ledger(aivj_env).load()] == ["ingested"] * 3
        # A file dropped later is ingested by the reusable function alone.
        write_jsonl(aivj_env.data_dir / "late.jsonl", rows(10))
        outcome = ingest_data_folder(aivj_env, instance, log=lambda _: None)
        assert len(outcome["partitions"]) == 1 and outcome["failed"] == [] and outcome["elite"]
