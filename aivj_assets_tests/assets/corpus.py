"""Small generated corpora ingested through the real raw_pairs asset, for the model-stage tests."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aivj_assets.data.demo import REFINED_DIR, draw_elite, draw_pairs
from aivj_assets.resources.wiring import build_resources
from aivj_assets.settings import Settings, load_settings

# Small, fast models that still clear the real gates on the demo task in a few seconds.
TRAINING_ENV = {
    "AIVJ_HIDDEN_DIM": "64", "AIVJ_EMBED_DIM": "32", "AIVJ_BATCH_SIZE": "128", "AIVJ_LEARNING_RATE": "0.003",
    "AIVJ_WARMUP_EPOCHS": "2", "AIVJ_FULL_EPOCHS": "8", "AIVJ_INCREMENTAL_EPOCHS": "4",
    "AIVJ_CHECKPOINT_EVERY": "1000", "AIVJ_DEVICE": "cpu",
}


def small_model_settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings with small-model training values (call after the ``aivj_env`` fixture)."""
    import torch

    torch.set_num_threads(1)
    for key, value in TRAINING_ENV.items():
        monkeypatch.setenv(key, value)
    return load_settings()


def write_base_corpus(settings: Settings, pairs: int = 8000, elite: int = 400) -> None:
    """The demo task's corpus as one file (each file costs a raw_pairs run) and its elite folder."""
    write_new_file(settings, "base", pairs, seed=0)
    audio, preset, _, labels = draw_elite(elite, np.random.default_rng(1))
    _write_parquet(settings.elite_path / "elite.parquet", audio, preset, labels)


def write_new_file(settings: Settings, name: str, rows: int, seed: int, *, shuffle_labels: bool = False) -> Path:
    """One more data file of the demo task; ``shuffle_labels`` breaks the feature-label link."""
    rng = np.random.default_rng(seed)
    audio, preset, _, labels = draw_pairs(rows, rng)
    if shuffle_labels:
        labels = rng.permutation(labels)
    path = settings.data_dir / REFINED_DIR / f"{name}.parquet"
    _write_parquet(path, audio, preset, labels)
    return path


def _write_parquet(path: Path, audio: np.ndarray, preset: np.ndarray, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({
        "audio": pa.FixedSizeListArray.from_arrays(pa.array(audio.ravel(), pa.float32()), audio.shape[1]),
        "preset": pa.FixedSizeListArray.from_arrays(pa.array(preset.ravel(), pa.float32()), preset.shape[1]),
        "label": pa.array(labels.astype(np.int8)),
    })
    pq.write_table(table, path)


def ingest(settings: Settings, instance: dg.DagsterInstance, committed_seq: int = 0) -> int:
    """Register new files as partitions and materialise each through the real raw_pairs asset."""
    from aivj_assets.data.scan import scan_tick

    plan = scan_tick(settings, committed_seq)
    keys = [r.partition for r in plan.requests]
    instance.add_dynamic_partitions("data_files", keys)
    for key in keys:
        assert materialize_partition(instance, key).success
    return plan.last_seq


def materialize_partition(instance: dg.DagsterInstance, key: str) -> dg.ExecuteInProcessResult:
    """One raw_pairs partition through the real asset (its checks included)."""
    from aivj_assets.assets.raw_pairs import raw_pairs

    return dg.materialize([raw_pairs], partition_key=key, instance=instance, resources=build_resources(),
                          raise_on_error=False)


def home_settings(root: Path, **env: str) -> Settings:
    """Settings of a fresh home under ``root`` (data, home, instance) with the small-model training
    values, read from an explicit environment: two of them side by side are two machines."""
    base = {"AIVJ_HOME": str(root / "home"), "AIVJ_DATA_DIR": str(root / "data"),
            "DAGSTER_HOME": str(root / "dagster_home"), "AIVJ_SETTLE_SECONDS": "0", **TRAINING_ENV, **env}
    return load_settings(env=base, env_file=root / "no.env")


def ingest_plainly(settings: Settings) -> list[str]:
    """Ingest every settled file and the elite folder through the data layer alone (no Dagster):
    what the raw_pairs and elite_set assets do, for tests that train stages directly."""
    from aivj_assets.data.elite import build_elite_set
    from aivj_assets.data.ingest import ingest_partition
    from aivj_assets.data.scan import scan_tick

    plan = scan_tick(settings, 0)
    keys = [r.partition for r in plan.requests]
    for key in keys:
        ingest_partition(settings, key)
    scan_tick(settings, plan.last_seq)
    build_elite_set(settings)
    return keys


def run_job(instance: dg.DagsterInstance, name: str, **kwargs) -> dg.ExecuteInProcessResult:
    """Execute one of the project's jobs on the real instance, failures returned, not raised."""
    from aivj_assets.definitions import defs

    return defs.resolve_job_def(name).execute_in_process(instance=instance, raise_on_error=False, **kwargs)


def project_job(name: str) -> dg.JobDefinition:
    """One of the project's jobs, by name: what :func:`reexecute_from_failure` reconstructs."""
    from aivj_assets.definitions import defs

    return defs.resolve_job_def(name)


def reexecute_from_failure(instance: dg.DagsterInstance, name: str, parent_run_id: str,
                           run_config: dict | None = None) -> tuple[bool, str]:
    """Re-execute a failed run's failed steps, in this process, as the daemon's retries do;
    returns (success, run id)."""
    job = dg.build_reconstructable_job("aivj_assets_tests.assets.corpus", "project_job", reconstructable_args=(name,))
    config = {**(run_config or {}), "execution": {"config": {"in_process": {}}}}
    options = dg.ReexecutionOptions.from_failure(parent_run_id, instance)
    with dg.execute_job(job, instance, run_config=config, reexecution_options=options) as result:
        return result.success, result.run_id


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    """This run's check evaluations by ``asset:check`` name."""
    out = {}
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            ev = event.event_specific_data
            out[f"{ev.asset_key.to_user_string()}:{ev.check_name}"] = ev
    return out


def materialisations(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    """This run's materialisation metadata by asset key."""
    out = {}
    for event in result.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            mat = event.event_specific_data.materialization
            out[mat.asset_key.to_user_string()] = {k: v.value for k, v in mat.metadata.items()}
    return out
