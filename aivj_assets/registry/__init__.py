"""The model registry: versions on disk, the champion's pointers, rollback (no Dagster)."""

from aivj_assets.registry.pointers import BEST_NAME, LATEST_NAME
from aivj_assets.registry.versions import (
    META_NAME,
    REGISTRY_NAME,
    STATUSES,
    VERSIONS_CSV,
    WEIGHTS_NAME,
    Registry,
)

__all__ = ["BEST_NAME", "LATEST_NAME", "META_NAME", "REGISTRY_NAME", "STATUSES", "VERSIONS_CSV", "WEIGHTS_NAME",
           "Registry"]
