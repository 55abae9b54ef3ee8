"""Dagster resources: notifier, system monitor, control."""
