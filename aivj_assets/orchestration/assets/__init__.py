"""Dagster assets: raw_pairs, elite_set and the model stages."""
