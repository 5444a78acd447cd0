"""A net built from its own arguments plus what the data says: the first layer and class count.

A net config (configs/model/net/*.yaml, or a user's) names only the net's own arguments; the
model receives it as a factory (`_partial_: true`) and, once the DataSpec is known, calls it
with the sizes that come from the data:

- `in_features` or `in_channels`: the width of dim 1 of an input batch (`DataSpec.num_inputs`:
  feature columns of a voxel row, context columns included; channels of an image or volume)
- `num_classes`: the number of classes (`DataSpec.num_classes`)
- `image_size`: (H, W) of an image input, for nets that take it (a dense net on images)

A size the config gives itself must agree with the data's. The net's output is checked on a
small input of the data's shape: (B, num_classes) rows or (B, num_classes, ...) maps.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import torch
from torch import nn

from mrinet.data.contract import DataSpec
from mrinet.errors import ConfigError

INPUT_ARGS = ("in_features", "in_channels")
KEY = "model.net"


def net_target(factory: Callable) -> str:
    """`module.Class` of a net factory (a functools.partial from `_partial_: true`, or a class)."""
    func = factory.func if isinstance(factory, functools.partial) else factory
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"


def _parameters(factory: Callable) -> dict[str, inspect.Parameter]:
    func = factory.func if isinstance(factory, functools.partial) else factory
    try:
        return dict(inspect.signature(func).parameters)
    except (TypeError, ValueError):  # a builtin without a signature: pass nothing by name
        return {}


def check_signature(factory: Callable) -> list[str]:
    """Refuse, before any data is read, a net that mrinet cannot size: its constructor needs
    `in_features` or `in_channels`, and `num_classes`. Returns its input-size argument names."""
    target = net_target(factory)
    params = _parameters(factory)
    inputs = [name for name in INPUT_ARGS if name in params]
    if not inputs:
        raise ConfigError(
            f"the net {target} takes no in_features or in_channels argument: mrinet sizes a "
            "net's first layer from the data",
            f"{KEY}._target_",
            f"give {target}.__init__ an `in_features: int` (voxel rows) or `in_channels: int` "
            "(images, volumes) argument and build the first layer from it",
        )
    if "num_classes" not in params:
        raise ConfigError(
            f"the net {target} takes no num_classes argument: mrinet sizes a net's output layer "
            "from the data's classes",
            f"{KEY}._target_",
            f"give {target}.__init__ a `num_classes: int` argument and end the net with "
            "num_classes outputs",
        )
    return inputs


def data_sizes(factory: Callable, spec: DataSpec) -> dict:
    """The constructor arguments that come from the data, by the names the net's signature has."""
    inputs = check_signature(factory)
    params = _parameters(factory)
    given = dict(factory.keywords) if isinstance(factory, functools.partial) else {}
    sizes: dict = {"num_classes": spec.num_classes}
    if spec.num_inputs is not None:
        sizes[inputs[0]] = spec.num_inputs
    shape = spec.input_shape or ()
    if "image_size" in params and len(shape) == 3 and None not in shape:
        sizes["image_size"] = [shape[1], shape[2]]
    for name, value in sizes.items():
        if name in given and given[name] is not None and _plain(given[name]) != value:
            raise ConfigError(
                f"{KEY}.{name}={given[name]} but the data gives {value}",
                f"{KEY}.{name}",
                f"drop {KEY}.{name} from the net config: mrinet fills it in from the data",
            )
    missing = [n for n in inputs[:1] if n not in sizes and given.get(n) is None]
    if missing:
        raise ConfigError(
            f"the data does not say its input width (DataSpec.input_shape is None) and "
            f"{KEY}.{missing[0]} is not set",
            f"{KEY}.{missing[0]}",
            "return DataSpec(..., input_shape=(features,)) from the DataModule's data_spec(), "
            f"or set {KEY}.{missing[0]}",
        )
    return sizes


def _plain(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def build_net(factory: Callable[..., nn.Module], spec: DataSpec) -> tuple[nn.Module, dict]:
    """Call a net factory with the data's sizes; returns (net, the sizes filled in)."""
    sizes = data_sizes(factory, spec)
    target = net_target(factory)
    try:
        net = factory(**sizes)
    except TypeError as err:
        raise ConfigError(
            f"building the net {target}({', '.join(f'{k}={v}' for k, v in sizes.items())}, "
            f"...) failed: {err}",
            KEY,
            f"give {KEY} only {target}'s own arguments (in_features/in_channels and "
            "num_classes come from the data)",
        ) from err
    if not isinstance(net, nn.Module):
        raise ConfigError(
            f"{KEY}._target_ {target} returned a {type(net).__name__}, not a torch.nn.Module",
            f"{KEY}._target_",
            "point model.net._target_ at an nn.Module class (or a function returning one)",
        )
    check_output_width(net, spec, target)
    return net, sizes


def check_output_width(net: nn.Module, spec: DataSpec, target: str) -> None:
    """Run the net once on two zero samples of the data's shape (when fully known) and check
    dim 1 of its output: a wrong width would otherwise fail deep inside the cost."""
    shape = spec.input_shape
    if shape is None or None in shape:
        return  # sizes vary (volumes): Classifier checks the first real batch instead
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            out = net(torch.zeros(2, *shape))
    except Exception as err:
        raise ConfigError(
            f"the net {target} fails on an input of the data's shape (2, {', '.join(map(str, shape))}): "
            f"{type(err).__name__}: {str(err).splitlines()[0][:200]}",
            KEY,
            f"make {target}.forward take (batch, {', '.join(map(str, shape))}) inputs",
        ) from err
    finally:
        net.train(was_training)
    check_logits(out, spec.num_classes, target)


def check_logits(logits: torch.Tensor, num_classes: int, target: str) -> None:
    """Refuse net outputs that are not (B, num_classes, ...) class scores."""
    if not torch.is_tensor(logits) or logits.ndim < 2 or logits.shape[1] != num_classes:
        got = tuple(logits.shape) if torch.is_tensor(logits) else type(logits).__name__
        raise ConfigError(
            f"the net {target} returns {got}, but the data has {num_classes} classes: "
            f"mrinet expects logits (batch, {num_classes}) or (batch, {num_classes}, ...)",
            f"{KEY}._target_",
            f"end {target} with a layer of num_classes outputs (the num_classes argument mrinet "
            "passes) and return its logits, without softmax",
        )


def recorded_net_config(net_cfg: dict, sizes: dict) -> dict:
    """The net config a checkpoint records: the config's own arguments plus the sizes the data
    gave, without `_partial_`, so instantiating it builds this very net (eval, predict)."""
    return {**{k: v for k, v in net_cfg.items() if k != "_partial_"}, **sizes}


def num_outputs(net: nn.Module) -> int | None:
    """Outputs of a net's last Linear/Conv layer (its class count), None without one."""
    layers = [m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.Conv3d))]
    if not layers:
        return None
    last = layers[-1]
    return last.out_features if isinstance(last, nn.Linear) else last.out_channels


def check_sizes(spec: DataSpec, class_names: list[str] | None, outputs: int | None) -> None:
    """Refuse class names or a net output size that do not match the data's classes."""
    if class_names and len(class_names) != spec.num_classes:
        raise ConfigError(
            f"model.class_names {class_names} do not match the data's "
            f"{spec.num_classes} classes {list(spec.classes)}",
            "model.class_names",
            "drop model.class_names (the data's class names are used) or give one per class",
        )
    if outputs is not None and outputs != spec.num_classes:
        raise ConfigError(
            f"the net has {outputs} outputs but the data has {spec.num_classes} classes "
            f"{list(spec.classes)}",
            "model.net",
            "set the net's output size to the number of data.classes",
        )
