"""Figures and gradient norms are callbacks: configured one file each, added by the model."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mrinet.callbacks import ConfusionMatrixFigure, GradNormLogger
from mrinet.models.classifier import Classifier
from mrinet.nets.mlp import MLP

CALLBACKS = Path(__file__).resolve().parents[2] / "configs" / "callbacks"


def test_each_callback_file_builds_its_callback():
    for name, kind in (("grad_norms", GradNormLogger), ("confusion_figure", ConfusionMatrixFigure)):
        node = OmegaConf.load(CALLBACKS / f"{name}.yaml")
        assert list(node) == [name] and isinstance(instantiate(node[name]), kind)


def test_the_model_adds_both_unless_the_run_configured_one(tmp_path):
    model = Classifier(MLP(5, [4], 3), torch.optim.Adam, grad_norm_every_n_steps=3)
    trainer = pl.Trainer(default_root_dir=tmp_path, logger=False, enable_progress_bar=False)
    model.trainer = trainer
    added = model.configure_callbacks()
    assert [type(c) for c in added] == [ConfusionMatrixFigure, GradNormLogger]
    assert added[1].every_n_steps == 3
    own = GradNormLogger(every_n_steps=7)
    trainer = pl.Trainer(default_root_dir=tmp_path, logger=False, callbacks=[own])
    model.trainer = trainer
    assert [type(c) for c in model.configure_callbacks()] == [ConfusionMatrixFigure]
