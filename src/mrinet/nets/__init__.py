"""Plain torch nn.Modules (no Lightning, no Hydra, no files)."""
