"""A user's net from a folder outside mrinet: one config file, one override, no `~` deletions;
config folders that are missing or shadow mrinet's are refused with the fix (fast, in-process)."""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mrinet.data.contract import DataSpec
from mrinet.errors import ConfigError
from mrinet.run.config_dir import config_dir
from mrinet.run.config_path import ENV, check_searchpath_overrides
from mrinet.run.entry import register_resolvers

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
OWN_NET = EXAMPLES / "own_net"


def composed(*overrides: str):
    register_resolvers()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose("train", overrides=["paths.root_dir=/tmp", *overrides])


@pytest.fixture
def own_net(monkeypatch):
    """examples/own_net on the Python path and its config folder in MRINET_CONFIG_PATH."""
    monkeypatch.syspath_prepend(str(OWN_NET))
    monkeypatch.setenv(ENV, str(OWN_NET / "mynets" / "configs"))


def test_users_net_replaces_the_whole_net_node_and_is_sized_by_the_data(own_net):
    cfg = composed("experiment=dti_resmlp")
    net = OmegaConf.to_container(cfg.model.net)
    # the user's file alone (plus mrinet's _partial_): none of the MLP's keys merged in
    assert net == {
        "_target_": "mynets.ResMLP",
        "width": 64,
        "depth": 2,
        "dropout": 0.0,
        "_partial_": True,
    }
    model = instantiate(cfg.model, _convert_="all")
    model.set_data_spec(DataSpec(classes=("a", "b", "c"), input_shape=(7,)))
    assert type(model.net).__name__ == "ResMLP" and model.net_sizes == {
        "in_features": 7,
        "num_classes": 3,
    }
    assert model(torch.zeros(4, 7)).shape == (4, 3)
    # and on the command line, the same swap for any experiment, with the net's own keys
    other = composed("experiment=dti_mlp_context", "model/net=resmlp", "model.net.width=16")
    assert other.model.net.width == 16 and "hidden_dims" not in other.model.net


def test_parts_swap_by_group(own_net):
    cfg = composed("model/optimizer=sgd", "model/scheduler=plateau", "model.optimizer.lr=0.05")
    assert cfg.model.optimizer._target_ == "torch.optim.SGD" and cfg.model.optimizer.lr == 0.05
    assert cfg.model.scheduler._target_.endswith("ReduceLROnPlateau")
    assert composed().model.scheduler is None  # scheduler=none: a constant rate
    cosine = composed("experiment=dti_unet")  # dti_unet's own choice
    assert cosine.model.scheduler.T_max == cosine.trainer.max_epochs


def test_a_config_folder_that_does_not_exist_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV, f"{tmp_path}{os.pathsep}{tmp_path / 'missing'}")
    with pytest.raises(ConfigError, match=r"missing' in MRINET_CONFIG_PATH does not exist"):
        composed()
    with pytest.raises(ConfigError, match=r"in hydra\.searchpath does not exist") as info:
        check_searchpath_overrides([f"hydra.searchpath=[file://{tmp_path / 'nope'}]"])
    assert info.value.where == "hydra.searchpath"


def test_a_user_config_with_mrinets_group_and_name_is_refused(monkeypatch, tmp_path):
    (tmp_path / "model" / "net").mkdir(parents=True)
    (tmp_path / "model" / "net" / "mlp.yaml").write_text("_target_: mynets.ResMLP\n")
    monkeypatch.setenv(ENV, str(tmp_path))
    with pytest.raises(
        ConfigError, match=r"same group and name as .*configs/model/net/mlp\.yaml"
    ) as info:
        composed()
    assert info.value.where == "model/net=mlp" and "rename mlp.yaml" in info.value.fix


def test_an_extension_package_registers_its_folder_by_entry_point(monkeypatch, tmp_path):
    """A real installed distribution (a .dist-info on sys.path) with a `mrinet.configs` entry
    point: its groups join mrinet's; one that shadows mrinet's group is refused."""
    package = tmp_path / "site" / "extnets"
    shutil.copytree(OWN_NET / "mynets" / "configs", package / "configs")
    (package / "__init__.py").write_text("")
    info = tmp_path / "site" / "extnets-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: extnets\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[mrinet.configs]\nextnets = extnets.configs\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.syspath_prepend(str(OWN_NET))
    monkeypatch.delenv(ENV, raising=False)
    assert composed("model/net=resmlp").model.net._target_ == "mynets.ResMLP"
    (package / "configs" / "experiment" / "dti_mlp.yaml").write_text("# @package _global_\n")
    with pytest.raises(ConfigError, match=r"package extnets .*same group and name") as err:
        composed()
    assert err.value.where == "experiment=dti_mlp"
    (package / "configs" / "experiment" / "dti_mlp.yaml").unlink()
    shutil.rmtree(package / "configs")
    with pytest.raises(ConfigError, match=r"registers the config folder 'extnets\.configs'"):
        composed()


def test_a_net_without_data_sized_arguments_is_refused_before_any_data_is_read():
    class Fixed(torch.nn.Module):
        def __init__(self, width: int = 4):
            super().__init__()
            self.out = torch.nn.Linear(5, 3)

    from mrinet.models.classifier import Classifier

    with pytest.raises(ConfigError, match="takes no in_features or in_channels") as info:
        Classifier(functools.partial(Fixed), lambda params: torch.optim.SGD(params, lr=0.1))
    assert info.value.where == "model.net._target_" and "in_features: int" in info.value.fix


def documented_commands() -> list[list[str]]:
    """`python -m mrinet.<train|eval|predict> ...` lines of docs/extending.md's code blocks."""
    import shlex

    text = (Path(__file__).resolve().parents[2] / "docs" / "extending.md").read_text()
    blocks = text.split("```")[1::2]  # inside the fences
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    return [
        shlex.split(line)[2:]
        for line in lines
        if line.startswith(
            ("python -m mrinet.train", "python -m mrinet.eval", "python -m mrinet.predict")
        )
    ]


def test_extending_docs_commands_compose_with_the_examples_folders(monkeypatch):
    """Each documented command composes as written once the examples' folders are on the
    search path (paths the user fills in, `<run>` and `...`, are set to a stand-in)."""
    folders = [OWN_NET / "mynets" / "configs", EXAMPLES / "own_data" / "labvoxels" / "configs"]
    monkeypatch.setenv(ENV, os.pathsep.join(map(str, folders)))
    found = documented_commands()
    assert {c[0] for c in found} == {"mrinet.train", "mrinet.eval", "mrinet.predict"}
    register_resolvers()
    for tokens in found:
        command, args = tokens[0].split(".")[1], [t for t in tokens[1:] if t != "-m"]
        # a sweep: its first value; trusted_modules: the checkpoint allowlist's key (it may
        # not exist in this version's eval/predict configs)
        args = [a.split(",")[0] if "model.net.width" in a else a for a in args]
        args = ["++" + a if a.startswith("trusted_modules=") else a for a in args]
        args = [a.replace("<run>", "x").replace("...", "x") for a in args]
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            cfg = compose(command, overrides=args)
        assert cfg.task_name, tokens


def test_config_dir_and_searchpath_add_a_users_folder_on_the_command_line(cli, tmp_path):
    """Hydra's own switches, as a user types them (the net's module on PYTHONPATH)."""
    folder = OWN_NET / "mynets" / "configs"
    env = {"PYTHONPATH": os.pathsep.join([str(OWN_NET), str(EXAMPLES.parent / "src")])}
    for switch in (["--config-dir", str(folder)], [f"hydra.searchpath=[file://{folder}]"]):
        proc = cli(
            "mrinet.train", *switch, "experiment=dti_resmlp", "--cfg", "job", cwd=tmp_path, env=env
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "_target_: mynets.ResMLP" in proc.stdout and "hidden_dims" not in proc.stdout
    missing = cli("mrinet.train", f"hydra.searchpath=[file://{tmp_path / 'nope'}]", cwd=tmp_path)
    assert missing.returncode == 1
    assert (
        "in hydra.searchpath does not exist" in missing.stderr and "Traceback" not in missing.stderr
    )
