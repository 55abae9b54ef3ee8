"""The one Definitions object: every asset, check, job, sensor, schedule and resource."""

from __future__ import annotations

import dagster as dg

from aivj_assets.orchestration.assets.elite_set import elite_set
from aivj_assets.orchestration.assets.models import MODEL_ASSETS
from aivj_assets.orchestration.assets.raw_pairs import raw_pairs
from aivj_assets.orchestration.checks import CHECKS
from aivj_assets.orchestration.data_sensor import data_files_sensor
from aivj_assets.orchestration.jobs import JOBS
from aivj_assets.orchestration.ops_sensors import OPS_SENSORS
from aivj_assets.orchestration.resources import build_resources
from aivj_assets.orchestration.retry_watch import retry_watch
from aivj_assets.orchestration.schedules import SCHEDULES

defs = dg.Definitions(
    assets=[raw_pairs, elite_set, *MODEL_ASSETS],
    asset_checks=CHECKS,
    jobs=JOBS,
    sensors=[data_files_sensor, *OPS_SENSORS, retry_watch],
    schedules=SCHEDULES,
    resources=build_resources(),
)
