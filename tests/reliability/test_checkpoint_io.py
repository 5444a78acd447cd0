"""Checkpoint files are replaced, never written into: a kill mid-save keeps the old one whole.

Lightning 2.6 saves through an fsspec transaction (temporary file, then a move); mrinet relies
on that instead of a writer of its own, and this test guards the behaviour across upgrades.
"""

from __future__ import annotations

import os

import torch


def test_the_configured_trainer_replaces_checkpoint_files_instead_of_writing_into_them(tmp_path):
    """A hard link to the old file still holds the old checkpoint after the next save: the new
    one went to a new inode, so a kill mid-write could only lose the temporary file."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from mrinet.run.config_dir import config_dir
    from mrinet.run.entry import register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(
            config_name="train", overrides=["paths.output_dir=/tmp/x", "paths.root_dir=/tmp"]
        )
    io = instantiate(cfg.trainer, logger=False, enable_progress_bar=False).strategy.checkpoint_io
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "epoch": 1}, path)
    snapshot = tmp_path / "snapshot.ckpt"
    os.link(path, snapshot)
    io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "epoch": 2}, path)
    assert torch.load(snapshot, weights_only=True)["epoch"] == 1
    assert torch.load(path, weights_only=True)["epoch"] == 2
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temporary left
