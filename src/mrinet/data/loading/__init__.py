"""Serving batches, shared by every task: whole batches by index (batches) in one seeded,
resumable, rank-aware epoch order (sharding)."""
