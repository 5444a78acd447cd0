"""Which classes a config read from a file (a checkpoint) may name: data, never code.

A checkpoint records the configs its run was built from (model, net, optimizer, scheduler,
loss, data, an auto-context first stage); eval, predict and train hand them to Hydra's
`instantiate`, so whoever wrote the file would choose which Python callable runs, with which
arguments. Every `_target_` found anywhere in such a config must therefore name a class (not a
function) defined in `mrinet`, `torch.nn` or `torch.optim` (learning-rate schedulers included),
in a module the user trusts (`trusted_modules=[mypkg.models]`, or the environment variable
MRINET_TRUSTED_MODULES=mypkg.models,other for scripts), or be a target the run's own composed
config names (the user chose it). A target outside those modules is refused before its module
is imported; one inside them is imported and must be a class defined there. OmegaConf
interpolations (`${...}`) are refused too: a recorded config is fully resolved.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from mrinet.errors import CheckpointError

BUILTIN = ("mrinet", "torch.nn", "torch.optim")
ENV = "MRINET_TRUSTED_MODULES"
_trusted_modules: tuple[str, ...] = ()
_own_targets: frozenset[str] = frozenset()


class UntrustedTargetError(CheckpointError):
    """A config read from a file names code mrinet will not run (a function, another module)."""


def configure(
    trusted_modules: Iterable[str] | None = None, own_targets: Iterable[str] = ()
) -> None:
    """Set this process's trusted modules (the `trusted_modules` option) and the targets of
    the run's own composed config (called by every entry point before a checkpoint is read)."""
    global _trusted_modules, _own_targets
    _trusted_modules = tuple(_clean(trusted_modules or ()))
    _own_targets = frozenset(str(t) for t in own_targets)


def trusted_modules() -> tuple[str, ...]:
    """mrinet's own modules, the configured ones and those of MRINET_TRUSTED_MODULES."""
    from_env = os.environ.get(ENV, "").replace(",", " ").split()
    return (*BUILTIN, *_trusted_modules, *_clean(from_env))


def _clean(names: Iterable[str]) -> list[str]:
    out = []
    for name in names:
        name = str(name).strip().strip(".")
        if name:
            out.append(name)
    return out


def targets_in(config) -> Iterator[str]:
    """Every `_target_` string anywhere in a (nested) config of dicts and lists."""
    for _, key, value in _walk(config, ""):
        if key == "_target_" and isinstance(value, str):
            yield value


def _walk(node, path: str) -> Iterator[tuple[str, str, object]]:
    """(key path, key, value) of every entry of nested mappings and lists."""
    if isinstance(node, Mapping):
        items = ((str(k), v) for k, v in node.items())
    elif isinstance(node, (list, tuple)):
        items = ((str(i), v) for i, v in enumerate(node))
    else:
        return
    for key, value in items:
        sub = f"{path}.{key}" if path else key
        yield sub, key, value
        yield from _walk(value, sub)


def _within(name: str, modules: Iterable[str]) -> bool:
    return any(name == m or name.startswith(m + ".") for m in modules)


def check_config(config, where: str | Path, key: str = "") -> None:
    """Refuse (UntrustedTargetError naming `where`, the key and the target) a config that
    names anything but an allowed class, before anything of it is imported or instantiated."""
    for path, name, value in _walk(config, key):
        if isinstance(value, str) and "${" in value:
            _refuse(
                where, path, value, "an OmegaConf interpolation (a recorded config is resolved)"
            )
        if name == "_target_":
            check_target(value, where, path)


def check_target(target, where: str | Path, key: str = "_target_") -> None:
    """One `_target_`: a class of an allowed module, checked by name before any import."""
    if not isinstance(target, str) or not target:
        _refuse(where, key, repr(target), "not a dotted class name")
    if target in _own_targets:
        return
    modules = trusted_modules()
    if not _within(target, modules):
        _refuse(where, key, target, f"outside the trusted modules ({', '.join(modules)})")
    obj = _locate_within(target, modules, where, key)
    if not isinstance(obj, type):
        _refuse(where, key, target, f"a {type(obj).__name__}, not a class")
    if not _within(getattr(obj, "__module__", "") or "", modules):
        _refuse(
            where, key, target, f"a class defined in {obj.__module__}, outside the trusted modules"
        )


def _locate_within(target: str, modules: tuple[str, ...], where, key: str):
    """Import `target` as Hydra does, but never a module, nor an attribute path through a
    module, outside `modules`."""
    from importlib import import_module
    from types import ModuleType

    parts = target.split(".")
    if any(not part for part in parts):
        _refuse(where, key, target, "not a dotted class name")
    obj, done = None, 0
    for n in range(len(parts), 0, -1):  # the longest importable allowed module prefix
        name = ".".join(parts[:n])
        if not _within(name, modules):
            break
        try:
            obj, done = import_module(name), n
            break
        except ModuleNotFoundError:
            continue
        except Exception as err:  # an allowed module that fails to import
            _refuse(where, key, target, f"not importable ({type(err).__name__}: {err})")
    if obj is None:
        _refuse(where, key, target, "not found")
    for part in parts[done:]:
        if part.startswith("__"):
            _refuse(where, key, target, "a path through a dunder attribute")
        try:
            obj = getattr(obj, part)
        except AttributeError:
            _refuse(where, key, target, "not found")
        if isinstance(obj, ModuleType) and not _within(obj.__name__, modules):
            _refuse(where, key, target, f"a path through module {obj.__name__}")
    return obj


def _refuse(where, key: str, target: str, why: str):
    raise UntrustedTargetError(
        f"{key} in the config this file records names {target}: {why}. A checkpoint may only "
        f"name classes of mrinet, torch.nn, torch.optim or a module you trust; this one is "
        f"refused and nothing of it was run",
        where,
        "if you trust the file's author and the module, allow it with trusted_modules=[<module>] "
        f"(eval, predict, train) or the environment variable {ENV}=<module>; "
        "otherwise do not use this file",
    )
