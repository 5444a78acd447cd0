"""Every shipped config composes and resolves (Hydra's compose API, no training)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from mrinet.config_dir import config_dir
from mrinet.entry import register_resolvers

CONFIGS = Path(config_dir())
EXPERIMENTS = sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml"))
TRAINERS = sorted(p.stem for p in (CONFIGS / "trainer").glob("*.yaml"))
DEBUGS = sorted(p.stem for p in (CONFIGS / "debug").glob("*.yaml"))


def composed(*overrides: str, name: str = "train"):
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(
            config_name=name,
            overrides=["paths.output_dir=/tmp/x", "paths.root_dir=/tmp", *overrides],
        )
    return cfg


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_resolves(experiment):
    cfg = composed(f"experiment={experiment}")
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert resolved["data"]["_target_"].startswith("mrinet.data.")
    assert resolved["model"]["_target_"].startswith("mrinet.models.")
    assert resolved["optimized_metric"]
    assert "${" not in str(resolved)


def test_dti_mlp_experiment_sets_its_own_seed_over_the_default():
    assert composed("experiment=dti_mlp").seed == 12345
    assert composed("experiment=dti_mlp", "seed=7").seed == 7


@pytest.mark.parametrize("trainer", TRAINERS)
def test_every_trainer_composes(trainer):
    cfg = composed("experiment=dti_mlp", f"trainer={trainer}")
    assert cfg.trainer._target_ == "pytorch_lightning.Trainer"


@pytest.mark.parametrize("debug", DEBUGS)
def test_every_debug_mode_composes(debug):
    assert composed("experiment=dti_mlp", f"debug={debug}").task_name == "debug"


def test_net_sizes_follow_the_data():
    cfg = composed(
        "experiment=dti_mlp", "data.features=[FA,MD]", "data.classes=[thalamus,cortical_wm]"
    )
    assert cfg.model.net.in_features == 2 and cfg.model.net.num_classes == 2


def test_required_names_exist():
    cfg = composed()
    for key in (
        "paths.data_dir",
        "paths.log_dir",
        "seed",
        "ckpt_path",
        "task_name",
        "tags",
        "train",
        "test",
    ):
        assert OmegaConf.select(cfg, key, throw_on_missing=False) is not None or key == "ckpt_path"
    assert composed("logger=csv").logger.csv._target_.endswith("CSVLogger")


def test_eval_config_composes():
    cfg = composed("ckpt_path=a.ckpt", name="eval")
    assert cfg.task_name == "eval" and cfg.ckpt_path == "a.ckpt"
