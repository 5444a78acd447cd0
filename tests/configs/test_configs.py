"""Every shipped config composes and resolves (Hydra's compose API, no training)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from mrinet.run.config_dir import config_dir
from mrinet.run.entry import register_resolvers

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


# experiments that need a file of an earlier run to resolve (tests/e2e/test_autocontext.py
# resolves the default: the newest dti_mlp_context run)
NEEDS = {"dti_mlp_autocontext": ["data.context_model=/tmp/stage1/checkpoints/best.ckpt"]}


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_resolves(experiment):
    cfg = composed(f"experiment={experiment}", *NEEDS.get(experiment, []))
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert resolved["data"]["_target_"].startswith("mrinet.data.")
    assert resolved["model"]["_target_"].startswith("mrinet.models.")
    assert resolved["optimized_metric"]
    assert "${" not in str(resolved)


def test_dti_mlp_experiment_sets_its_own_seed_over_the_default():
    assert composed("experiment=dti_mlp").seed == 12345
    assert composed("experiment=dti_mlp", "seed=7").seed == 7


@pytest.mark.parametrize("trainer", TRAINERS)
@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_mixed_precision_is_one_override_on_every_trainer(trainer, precision):
    """`trainer.precision=bf16-mixed` (docs, configs/trainer/gpu.yaml) needs no `+`."""
    cfg = composed("experiment=dti_mlp", f"trainer={trainer}", f"trainer.precision={precision}")
    assert cfg.trainer.precision == precision


@pytest.mark.parametrize("trainer", TRAINERS)
def test_every_trainer_composes(trainer):
    cfg = composed("experiment=dti_mlp", f"trainer={trainer}")
    assert cfg.trainer._target_ == "pytorch_lightning.Trainer"


@pytest.mark.parametrize("debug", DEBUGS)
def test_every_debug_mode_composes(debug):
    assert composed("experiment=dti_mlp", f"debug={debug}").task_name == "debug"


def input_columns(cfg) -> int:
    """The input width the net gets at setup (DataSpec.num_inputs: the DataModule's columns)."""
    from hydra.utils import instantiate

    return len(instantiate(cfg.data, _convert_="all").feature_names)


def test_net_sizes_follow_the_data():
    from hydra.utils import instantiate

    from mrinet.data.contract import DataSpec
    from mrinet.models.net_builder import build_net

    cfg = composed(
        "experiment=dti_mlp", "data.features=[FA,MD]", "data.classes=[thalamus,cortical_wm]"
    )
    assert "in_features" not in cfg.model.net and "num_classes" not in cfg.model.net
    spec = DataSpec(classes=cfg.data.classes, input_shape=(input_columns(cfg),))
    net, sizes = build_net(instantiate(cfg.model.net, _convert_="all"), spec)
    assert sizes == {"in_features": 2, "num_classes": 2}
    assert net.layers[0].in_features == 2 and net.layers[-1].out_features == 2


def test_context_experiment_sizes_the_net_from_features_and_context():
    cfg = composed("experiment=dti_mlp_context")
    assert list(cfg.data.context) == ["coords", "patch"]
    # features, coords, then per feature 26 + 26 neighbours of the dilation-1 and -3 patches and
    # the 16 of [1, 1, 3] not already there (its S = 0 plane is dilation 1's, (0, 0, +-3)
    # dilation 3's)
    assert list(cfg.data.patch_dilation) == [1, 3, [1, 1, 3]] and cfg.data.mirror_train
    assert input_columns(cfg) == 5 + 3 + 5 * (26 + 26 + 16)
    assert input_columns(composed("experiment=dti_mlp_context", "data.context=coords")) == 8
    assert cfg.optimized_metric == "val/dice_macro" and cfg.model.decision == "tuned"


def test_autocontext_experiment_adds_the_first_stage_maps_to_the_context_inputs():
    from mrinet.data.tissue.columns import input_columns as column_records

    cfg = composed("experiment=dti_mlp_autocontext", *NEEDS["dti_mlp_autocontext"])
    data = cfg.data
    assert list(data.context) == ["coords", "patch", "autocontext"]
    # dti_mlp_context's inputs, then 3 log-probabilities each with the same 26 + 26 + 16
    columns = column_records(
        data.features, list(data.context), data.patch_size, data.patch_dilation, data.classes
    )
    assert len(columns) == 5 + 3 + 5 * 68 + 3 * (1 + 68)
    assert cfg.task_name == "dti_mlp_autocontext" and cfg.data.mirror_train


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


SEARCHES = sorted(p.stem for p in (CONFIGS / "hparams_search").glob("*_optuna.yaml"))
# metrics that grow as the model gets better; losses shrink
HIGHER_IS_BETTER = ("acc", "bal_acc", "auroc", "f1_macro", "dice_macro")


@pytest.mark.parametrize("search", SEARCHES)
def test_every_search_sets_metric_and_mode_that_agree(search):
    experiment = search.removesuffix("_optuna")
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[f"experiment={experiment}", f"hparams_search={search}"],
            return_hydra_config=True,
        )
    metric, mode = cfg.optimized_metric, cfg.optimized_mode
    expected = "max" if metric.split("/")[-1] in HIGHER_IS_BETTER else "min"
    assert mode == expected, f"{search}: {metric} with mode {mode}"
    assert cfg.callbacks.model_checkpoint.monitor == metric
    assert cfg.callbacks.model_checkpoint.mode == mode
    sweeper = OmegaConf.to_container(cfg.hydra.sweeper, resolve=True)
    assert sweeper["direction"] == ("maximize" if mode == "max" else "minimize")


def test_recon_cnn_sweep_minimises_the_loss_it_checkpoints_on():
    cfg = composed("experiment=recon_quality_cnn", "hparams_search=recon_quality_cnn_optuna")
    assert (cfg.optimized_metric, cfg.optimized_mode) == ("val/loss", "min")


def test_debug_fast_on_recon_data_gets_tiny_recon_data_and_no_dti_keys():
    cfg = composed("experiment=recon_quality_cnn", "debug=fast")
    synthetic = OmegaConf.to_container(cfg.data.synthetic)
    assert set(synthetic) == {"simulation", "reconstructions"}  # no grid/single_shell/subjects
    assert synthetic["simulation"]["volumes"] < 12  # the tiny recon data, not the full set


def test_debug_fast_on_dti_data_gets_the_tests_tiny_cohort():
    fast = composed("experiment=dti_mlp", "debug=fast")
    tiny = composed("experiment=dti_mlp", "data_size=tiny")
    assert fast.data.synthetic == tiny.data.synthetic
    assert fast.data.synthetic.subjects == 4
    assert fast.data.synthetic.grid.voxel_mm == 4.0


def test_model_specific_callbacks_run_only_in_their_experiments():
    assert "precise_batch_norm" not in composed().callbacks
    assert "saturation_monitor" not in composed("experiment=recon_quality_cnn").callbacks
    assert "precise_batch_norm" in composed("experiment=recon_quality_cnn").callbacks
    for experiment in ("dti_mlp", "dti_mlp_backprop"):
        assert "saturation_monitor" in composed(f"experiment={experiment}").callbacks


# one DataSpec per kind of input a shipped net takes: voxel rows, images, volumes
SPECS = {
    "rows": {"classes": ("a", "b", "c"), "input_shape": (5,)},
    "images": {"classes": ("reference", "accelerated"), "input_shape": (1, 32, 32)},
    "volumes": {"classes": ("a", "b", "c"), "input_shape": (5, None, None, None)},
}
NETS = {
    "mlp": "rows",
    "mlp_backprop": "rows",
    "cnn": "images",
    "dense": "images",
    "unet3d": "volumes",
}


def test_every_net_option_is_listed_here():
    assert sorted(p.stem for p in (CONFIGS / "model" / "net").glob("*.yaml")) == sorted(NETS)


@pytest.mark.parametrize("net", sorted(NETS))
def test_every_net_option_builds_from_its_own_arguments_and_the_data(net):
    from hydra.utils import instantiate

    from mrinet.data.contract import DataSpec
    from mrinet.models.net_builder import build_net

    node = OmegaConf.load(CONFIGS / "model" / "net" / f"{net}.yaml")
    assert not {"in_features", "in_channels", "num_classes", "image_size"} & set(node)
    spec = DataSpec(**SPECS[NETS[net]])
    built, sizes = build_net(instantiate(node, _partial_=True, _convert_="all"), spec)
    assert sizes["num_classes"] == spec.num_classes and sum(p.numel() for p in built.parameters())


@pytest.mark.parametrize(
    ("optimizer", "scheduler"),
    [("adam", "none"), ("adamw", "cosine"), ("sgd", "onecycle"), ("gradient_descent", "plateau")],
)
def test_every_optimizer_and_scheduler_option_steps(optimizer, scheduler):
    import torch
    from hydra.utils import instantiate

    cfg = composed(f"model/optimizer={optimizer}", f"model/scheduler={scheduler}")
    params = [torch.nn.Parameter(torch.ones(3))]
    opt = instantiate(cfg.model.optimizer)(params=params)
    sched = None if cfg.model.scheduler is None else instantiate(cfg.model.scheduler)(optimizer=opt)
    assert (sched is None) == (scheduler == "none")
    before = opt.param_groups[0]["lr"]
    params[0].grad = torch.ones(3)
    opt.step()
    assert params[0].detach().lt(1).all()  # a descent step
    if sched is None:
        return
    for _ in range(6 if scheduler == "plateau" else 1):
        # plateau: no improvement, so the rate drops after `patience` epochs
        sched.step(1.0) if scheduler == "plateau" else sched.step()
    assert opt.param_groups[0]["lr"] != before


def test_callbacks_default_and_none_keep_their_meaning():
    assert list(composed().callbacks) == [
        "model_checkpoint",
        "early_stopping",
        "learning_rate_monitor",
        "progress_bar",
        "model_summary",
    ]
    assert not composed("callbacks=none").get("callbacks")
    # an experiment's own callbacks are added whatever the callbacks choice
    assert set(composed("experiment=dti_mlp", "callbacks=none").callbacks) == {
        "saturation_monitor",
        "tissue_maps",
    }


@pytest.mark.parametrize("search", SEARCHES)
def test_every_searched_key_exists_in_its_experiment(search):
    """The search spaces name model.net.*, model.optimizer.*, data.* keys of the composed
    experiment (read from the file: no sweeper plugin needed)."""
    params = OmegaConf.load(CONFIGS / "hparams_search" / f"{search}.yaml").hydra.sweeper.params
    cfg = composed(f"experiment={search.removesuffix('_optuna')}")
    for key in params:
        assert OmegaConf.select(cfg, key, default="absent") != "absent", key
