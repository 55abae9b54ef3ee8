"""The one Definitions object: every asset, check, job, sensor, schedule and resource."""

from __future__ import annotations

import dagster as dg

from aivj_assets.assets.elite_set import elite_set
from aivj_assets.assets.models import MODEL_ASSETS
from aivj_assets.assets.raw_pairs import raw_pairs
from aivj_assets.checks import CHECKS
from aivj_assets.jobs import JOBS
from aivj_assets.resources.wiring import build_resources
from aivj_assets.schedules import SCHEDULES
from aivj_assets.sensors import SENSORS

defs = dg.Definitions(
    assets=[raw_pairs, elite_set, *MODEL_ASSETS],
    asset_checks=CHECKS,
    jobs=JOBS,
    sensors=SENSORS,
    schedules=SCHEDULES,
    resources=build_resources(),
)
