"""Sensors. (skeleton, issue 2 adds the data-folder sensor)"""

from aivj_assets.ops_sensors import OPS_SENSORS

SENSORS = [*OPS_SENSORS]
