"""Training: CouplingNet, the checkpointed loop, checkpoints and metrics (no Dagster)."""
