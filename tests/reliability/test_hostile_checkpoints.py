"""A checkpoint is data, never code: hostile recorded configs are refused before anything runs.

Each case starts from a real tiny trained checkpoint and replaces one recorded config by a
gadget a malicious author could ship (a model zoo, a colleague's "best run"). Every gadget,
if instantiated, would create a marker file; eval, predict and train-resume must refuse the
checkpoint with one error naming the file, the key and the target, the marker must never
appear, and no module outside the allowed ones may be imported.
"""

from __future__ import annotations

import copy
import os
import pickle
import sys
import uuid
from pathlib import Path

import pytest
import torch

from tests.helpers import QUIET, assert_clear, compose, guarded_run

ALLOWED_IMPORTS = ("mrinet", "torch", "pytorch_lightning", "lightning_fabric", "hydra", "omegaconf")


class Payload:
    """Unpickling this creates `marker` (the gadget numpy.load/torch.load would run)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture
def gadgets(tmp_path, monkeypatch):
    """A module whose import creates a marker, a hub repo whose hubconf creates one, and a
    pickle whose unpickling creates one; all importable/reachable, as an attacker's would be."""
    marker = tmp_path / "code-ran"
    name = f"evil_{uuid.uuid4().hex[:8]}"
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / f"{name}.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).touch()\n"
        "class Net:\n    def __init__(self, *a, **k):\n        pass\n"
    )
    monkeypatch.syspath_prepend(str(lib))
    hub = tmp_path / "hub"
    hub.mkdir()
    (hub / "hubconf.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).touch()\ndef net(**k):\n    return None\n"
    )
    pickled = tmp_path / "payload.pkl"
    pickled.write_bytes(pickle.dumps(Payload(marker)))
    return {"marker": marker, "module": name, "lib": lib, "hub": hub, "pickle": pickled}


def _net(info):
    return info["model"]["net"]


def hostile(case: str, g: dict):
    """(mutation of checkpoint['mrinet'], the key the error must name, the target it names)."""
    hub = {"_target_": "torch.hub.load", "repo_or_dir": str(g["hub"]), "model": "net",
           "source": "local", "trust_repo": True}  # fmt: skip
    evil_class = f"{g['module']}.Net"
    return {
        "torch_hub_load": (lambda i: i["model"].update(net=hub), "mrinet.model.net._target_",
                           "torch.hub.load"),
        "importlib_import_module": (
            lambda i: i["model"].update(net={"_target_": "importlib.import_module",
                                             "name": g["module"]}),
            "mrinet.model.net._target_", "importlib.import_module"),
        "functools_partial": (
            lambda i: i["model"].update(net={"_target_": "functools.partial",
                                             "_args_": [{"_target_": "hydra.utils.get_method",
                                                         "path": "pathlib.Path.touch"},
                                                        str(g["marker"])]}),
            "mrinet.model.net._target_", "functools.partial"),
        "numpy_load_allow_pickle": (
            lambda i: i["model"].update(net={"_target_": "numpy.load", "file": str(g["pickle"]),
                                             "allow_pickle": True}),
            "mrinet.model.net._target_", "numpy.load"),
        "torch_load_weights_only_false": (
            lambda i: i["model"].update(net={"_target_": "torch.load", "f": str(g["pickle"]),
                                             "weights_only": False}),
            "mrinet.model.net._target_", "torch.load"),
        "module_with_import_side_effect": (
            lambda i: _net(i).update(_target_=evil_class), "mrinet.model.net._target_",
            evil_class),
        "optimizer_partial": (
            lambda i: i["model"].update(optimizer={**hub, "_partial_": True}),
            "mrinet.model.optimizer._target_", "torch.hub.load"),
        "optimizer_functional_inside_torch_optim": (
            lambda i: i["model"]["optimizer"].update(_target_="torch.optim.adam.adam"),
            "mrinet.model.optimizer._target_", "torch.optim.adam.adam"),
        "scheduler_nested_callable": (
            lambda i: i["model"].update(scheduler={
                "_target_": "torch.optim.lr_scheduler.LambdaLR", "_partial_": True,
                "lr_lambda": {"_target_": evil_class}}),
            "mrinet.model.scheduler.lr_lambda._target_", evil_class),
        "data_target": (lambda i: i["data"].update(_target_=evil_class), "mrinet.data._target_",
                        evil_class),
        "args_list": (
            lambda i: _net(i).update(_args_=[1, {"_target_": "torch.hub.load", **hub}]),
            "mrinet.model.net._args_.1._target_", "torch.hub.load"),
        "embedded_first_stage": (lambda i: i.update(context_model=first_stage(i, evil_class)),
                                 "mrinet.context_model.mrinet.model.net._target_", evil_class),
        "path_through_another_module": (
            lambda i: _net(i).update(_target_="mrinet.run.trust.os.PathLike"),
            "mrinet.model.net._target_", "mrinet.run.trust.os.PathLike"),
        "function_in_mrinet": (
            lambda i: _net(i).update(_target_="mrinet.run.run_dirs.find_last_checkpoint"),
            "mrinet.model.net._target_", "mrinet.run.run_dirs.find_last_checkpoint"),
        "interpolation": (
            lambda i: _net(i).update(activation="${oc.env:HOME}"), "mrinet.model.net.activation",
            "${oc.env:HOME}"),
    }[case]  # fmt: skip


def first_stage(info: dict, target: str) -> dict:
    """What an auto-context checkpoint carries of its first stage, with a hostile net."""
    stage = {"state_dict": {}, "mrinet": copy.deepcopy(info)}
    stage["mrinet"]["model"]["net"]["_target_"] = target
    return stage


CASES = [
    "torch_hub_load",
    "importlib_import_module",
    "functools_partial",
    "numpy_load_allow_pickle",
    "torch_load_weights_only_false",
    "module_with_import_side_effect",
    "optimizer_partial",
    "optimizer_functional_inside_torch_optim",
    "scheduler_nested_callable",
    "data_target",
    "args_list",
    "embedded_first_stage",
    "path_through_another_module",
    "function_in_mrinet",
    "interpolation",
]


def write_hostile(base: Path, case: str, g: dict, out: Path) -> tuple[Path, str, str]:
    checkpoint = torch.load(base, map_location="cpu", weights_only=True)
    mutate, key, target = hostile(case, g)
    mutate(checkpoint["mrinet"])
    path = out / f"{case}.ckpt"
    torch.save(checkpoint, path)
    return path, key, target


def entry_overrides(entry: str, ckpt: Path, run: dict, out: Path) -> list[str]:
    paths = [f"paths.output_dir={out}", f"paths.root_dir={out}"]
    if entry == "eval":
        return [f"ckpt_path={ckpt}", *paths, *QUIET]
    if entry == "predict":
        return [f"ckpt_path={ckpt}", f"input={run['subjects'] / 'sub-0'}",
                f"output={out / 'p.nii.gz'}", *paths]  # fmt: skip
    return [*run["overrides"], f"ckpt_path={ckpt}", *paths]


def gadget_path(gadgets: dict) -> dict:
    """A subprocess environment in which the attacker's module is importable."""
    src = Path(__file__).parents[2] / "src"
    return {
        "PYTHONPATH": os.pathsep.join(
            [str(src), str(gadgets["lib"]), os.environ.get("PYTHONPATH", "")]
        )
    }


def not_allowed(modules) -> list[str]:
    return sorted(
        m for m in modules if not any(m == a or m.startswith(a + ".") for a in ALLOWED_IMPORTS)
    )


@pytest.mark.parametrize("entry", ["eval", "predict", "train"])
@pytest.mark.parametrize("case", CASES)
def test_hostile_checkpoint_is_refused_with_no_side_effect(
    tiny_dti_run, gadgets, tmp_path, capsys, case, entry
):
    ckpt, key, target = write_hostile(tiny_dti_run["ckpt"], case, gadgets, tmp_path)
    before = set(sys.modules)
    err = guarded_run(entry, entry_overrides(entry, ckpt, tiny_dti_run, tmp_path / "o"), capsys)
    assert_clear(err, "UntrustedTargetError", str(ckpt), key, target, "trusted_modules=")
    assert not gadgets["marker"].exists(), "the checkpoint ran code"
    assert gadgets["module"] not in sys.modules
    assert not not_allowed(set(sys.modules) - before)
    assert (
        not (tmp_path / "o" / "p.nii.gz").exists()
        and not (tmp_path / "o" / "metrics.json").exists()
    )


@pytest.mark.slow  # one `python -m mrinet.eval` subprocess per case (exit code 1)
@pytest.mark.parametrize("case", CASES)
def test_eval_cli_exits_1_on_each_hostile_checkpoint(tiny_dti_run, gadgets, tmp_path, cli, case):
    ckpt, key, target = write_hostile(tiny_dti_run["ckpt"], case, gadgets, tmp_path)
    proc = cli(
        "mrinet.eval", f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path / 'e'}", *QUIET,
        cwd=tmp_path, env=gadget_path(gadgets),
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert_clear(proc.stderr, "UntrustedTargetError", str(ckpt), key, target)
    assert not gadgets["marker"].exists()


def test_eval_cli_refuses_a_module_with_an_import_side_effect(tiny_dti_run, gadgets, tmp_path, cli):
    """A fresh `python -m mrinet.eval` (the module importable on its PYTHONPATH) exits 1 and
    never imports the module (its import would create the marker)."""
    ckpt, key, target = write_hostile(
        tiny_dti_run["ckpt"], "module_with_import_side_effect", gadgets, tmp_path
    )
    proc = cli(
        "mrinet.eval", f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path / 'e'}", *QUIET,
        cwd=tmp_path, env=gadget_path(gadgets),
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert_clear(proc.stderr, "UntrustedTargetError", str(ckpt), key, target)
    assert not gadgets["marker"].exists()


@pytest.fixture
def own_net_module(tmp_path, monkeypatch) -> str:
    """A user's own net in their own module (a subclass of mrinet's MLP, same weights)."""
    name = f"mynets_{uuid.uuid4().hex[:8]}"
    lib = tmp_path / "ownlib"
    lib.mkdir()
    (lib / f"{name}.py").write_text(
        "from mrinet.nets.mlp import MLP\n\n\nclass TinyMLP(MLP):\n    pass\n\n\ndef make(**kw):\n"
        "    return MLP(**kw)\n"
    )
    monkeypatch.syspath_prepend(str(lib))
    return name


def own_checkpoint(base: Path, target: str, out: Path) -> Path:
    checkpoint = torch.load(base, map_location="cpu", weights_only=True)
    checkpoint["mrinet"]["model"]["net"]["_target_"] = target
    path = out / "own.ckpt"
    torch.save(checkpoint, path)
    return path


def test_own_net_needs_trust_and_then_evaluates_as_before(
    tiny_dti_run, own_net_module, tmp_path, capsys, monkeypatch
):
    from mrinet.eval import evaluate

    ckpt = own_checkpoint(tiny_dti_run["ckpt"], f"{own_net_module}.TinyMLP", tmp_path)
    overrides = entry_overrides("eval", ckpt, tiny_dti_run, tmp_path / "a")
    err = guarded_run("eval", overrides, capsys)
    assert_clear(err, f"{own_net_module}.TinyMLP", "trusted_modules=", str(ckpt))
    assert own_net_module not in sys.modules
    metrics = evaluate(compose("eval", [*overrides, f"trusted_modules=[{own_net_module}]"]))
    assert sys.modules[own_net_module] and 0.0 <= metrics["test/bal_acc"] <= 1.0
    # the environment variable trusts it for scripts, as the option does
    monkeypatch.setenv("MRINET_TRUSTED_MODULES", f"other.pkg,{own_net_module}")
    assert evaluate(compose("eval", entry_overrides("eval", ckpt, tiny_dti_run, tmp_path / "b")))


def test_trusting_a_module_still_refuses_its_functions(
    tiny_dti_run, own_net_module, tmp_path, capsys
):
    ckpt = own_checkpoint(tiny_dti_run["ckpt"], f"{own_net_module}.make", tmp_path)
    overrides = entry_overrides("eval", ckpt, tiny_dti_run, tmp_path / "a")
    err = guarded_run("eval", [*overrides, f"trusted_modules=[{own_net_module}]"], capsys)
    assert_clear(err, "a function, not a class", f"{own_net_module}.make")


def test_resuming_ones_own_run_needs_no_option(tiny_dti_run, own_net_module, tmp_path):
    """train ckpt_path=... with the user's own net named in the run's own config: the
    checkpoint's targets are the run's, so nothing more has to be trusted (as before)."""
    from mrinet.train import train

    ckpt = own_checkpoint(tiny_dti_run["ckpt"], f"{own_net_module}.TinyMLP", tmp_path)
    out = tmp_path / "resume"
    cfg = compose(
        "train",
        [
            *tiny_dti_run["overrides"],
            f"model.net._target_={own_net_module}.TinyMLP",
            f"ckpt_path={ckpt}",
            "trainer.max_epochs=2",
            f"paths.output_dir={out}",
            f"paths.root_dir={out}",
        ],
    )
    _, objects = train(cfg)
    assert (
        type(objects["model"].net).__name__ == "TinyMLP" and objects["trainer"].current_epoch == 2
    )


def test_checker_refuses_before_importing(gadgets):
    from mrinet.run.trust import UntrustedTargetError, check_target

    with pytest.raises(UntrustedTargetError, match="outside the trusted modules"):
        check_target(f"{gadgets['module']}.Net", "x.ckpt", "mrinet.model.net._target_")
    assert gadgets["module"] not in sys.modules and not gadgets["marker"].exists()
    # names that only look like mrinet's are not mrinet's
    with pytest.raises(UntrustedTargetError):
        check_target("mrinetx.Net", "x.ckpt")
    with pytest.raises(UntrustedTargetError, match="dunder"):
        check_target("mrinet.nets.mlp.MLP.__subclasses__", "x.ckpt")
    for good in ("mrinet.nets.mlp.MLP", "torch.nn.Linear", "torch.optim.Adam",
                 "torch.optim.lr_scheduler.CosineAnnealingLR"):  # fmt: skip
        check_target(good, "x.ckpt")


def test_a_hostile_first_stage_given_as_data_context_model_is_refused(
    tiny_dti_run, gadgets, tmp_path, capsys, cli
):
    """data.context_model=<a downloaded first stage> (experiment=dti_mlp_autocontext): its
    recorded configs are checked like any checkpoint's, before it is built, by train and by
    eval (a `python -m mrinet.eval` process: data overrides come from its command line)."""
    first, key, target = write_hostile(
        tiny_dti_run["ckpt"], "module_with_import_side_effect", gadgets, tmp_path
    )
    context = ["data.context=[autocontext]", f"data.context_model={first}"]
    overrides = [*entry_overrides("train", "null", tiny_dti_run, tmp_path / "o"), *context]
    err = guarded_run("train", overrides, capsys)
    assert_clear(err, "UntrustedTargetError", str(first), key, target)
    proc = cli(
        "mrinet.eval", f"ckpt_path={tiny_dti_run['ckpt']}", *context,
        f"hydra.run.dir={tmp_path / 'e'}", *QUIET, cwd=tmp_path,
        env=gadget_path(gadgets),
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert_clear(proc.stderr, "UntrustedTargetError", str(first), key, target)
    assert not gadgets["marker"].exists() and gadgets["module"] not in sys.modules
