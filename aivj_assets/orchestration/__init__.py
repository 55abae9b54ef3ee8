"""The Dagster layer: assets, checks, jobs, schedules, sensors, resources and run tags; it only wires."""
