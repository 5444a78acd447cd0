"""The one place that says where the Hydra configs live: the checkout's configs/ or the wheel's copy."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def config_dir() -> str:
    """Absolute path of the config tree, so `python -m mrinet.train` works from any directory."""
    checkout = Path(__file__).resolve().parents[3] / "configs"
    if (checkout / "train.yaml").is_file():
        return str(checkout)
    return str(files("mrinet") / "configs")
