"""Helpers the entry points share: config location, Hydra glue, run dirs, checkpoints, sweeps."""
