"""AIVJ continuous training platform for coupling_net, on Dagster software-defined assets."""

__version__ = "0.1.0"
