"""Policy: the gates, promotion, retention, the nightly plan, the training stages (no Dagster)."""
