"""The sweep's search space: Hydra's sweep grammar (`hydra.sweeper.params` and the command line)
-> Optuna distributions, each bad one a ConfigError naming where it was written."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mrinet.errors import ConfigError
from mrinet.run.study import KEY


@dataclass
class Param:
    """One swept key: its Optuna distribution and, for choices, value -> override text."""

    key: str
    distribution: Any
    as_text: dict[Any, str] = field(default_factory=dict)

    def override(self, value: Any) -> str:
        """`key=value` for Hydra, as the user wrote the choice (lists, quoted strings)."""
        if value in self.as_text:
            return f"{self.key}={self.as_text[value]}"
        if isinstance(value, float) and value.is_integer() and is_int_dist(self.distribution):
            value = int(value)
        return f"{self.key}={value!r}" if isinstance(value, float) else f"{self.key}={value}"


def is_int_dist(dist: Any) -> bool:
    """Whether `dist` is Optuna's IntDistribution (its values print as integers)."""
    from optuna.distributions import IntDistribution

    return isinstance(dist, IntDistribution)


def _primitive(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def search_space(
    params: dict[str, str] | None, arguments: list[str], config_loader: Any = None
) -> tuple[list[Param], list[str]]:
    """Hydra sweep grammar -> (swept params, fixed overrides), from `hydra.sweeper.params` and
    the command line (which wins for a key given in both)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create(config_loader=config_loader)
    texts: dict[str, tuple[str, str]] = {}
    for key, value in (params or {}).items():
        texts[str(key)] = (f"{key}={value}", f"{KEY}.params.{key}")
    for arg in arguments:
        key = arg.split("=", 1)[0].lstrip("+~")
        texts[key] = (arg, f"command line: {arg}")
    swept, fixed = [], []
    for text, where in texts.values():
        try:
            (override,) = parser.parse_overrides([text])
        except Exception as err:
            first = str(err).strip().splitlines()[0]
            raise ConfigError(
                f"sweep grammar error in {text!r}: {first}",
                where,
                "write choice(a,b,...), range(start,stop[,step]), interval(low,high), "
                "tag(log, interval(low,high)) or a plain value (Hydra's override grammar)",
            ) from None
        if not override.is_sweep_override():
            fixed.append(text)
            continue
        swept.append(_param(override, where))
    return swept, fixed


def _param(override: Any, where: str) -> Param:
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    key = override.get_key_element()
    value = override.value()
    tags = set(getattr(value, "tags", set()) or set())
    unknown = tags - {"log", "int"}
    if unknown:
        raise ConfigError(
            f"unknown tag(s) {sorted(unknown)} for {key}",
            where,
            "the sweeper knows tag(log, ...) (log scale) and tag(int, interval(...)) (integers)",
        )
    log_scale = "log" in tags
    try:
        if isinstance(value, ChoiceSweep):
            if log_scale:
                raise ValueError("tag(log) needs interval() or range(), not choice()")
            texts = list(override.sweep_string_iterator())
            choices, as_text = [], {}
            for element, text in zip(value.list, texts):
                choice = element if _primitive(element) else text
                choices.append(choice)
                as_text[choice] = text
            if len(set(map(repr, choices))) != len(choices):
                raise ValueError("the same choice is listed twice")
            return Param(key, CategoricalDistribution(choices), as_text)
        if isinstance(value, RangeSweep):
            numbers = [value.start, value.stop, value.step]
            if value.start is None or value.stop is None:
                raise ValueError("range() needs a start and a stop")
            last = list(value.range())
            if not last:
                raise ValueError("range() is empty")
            if all(isinstance(n, int) for n in numbers):
                return Param(
                    key,
                    IntDistribution(
                        value.start, last[-1], log=log_scale, step=1 if log_scale else value.step
                    ),
                )
            if log_scale:
                raise ValueError("tag(log) with a float range(): use tag(log, interval(a, b))")
            return Param(
                key, FloatDistribution(float(value.start), float(last[-1]), step=float(value.step))
            )
        if isinstance(value, IntervalSweep):
            low, high = value.start, value.end
            if "int" in tags:
                return Param(key, IntDistribution(int(low), int(high), log=log_scale))
            return Param(key, FloatDistribution(float(low), float(high), log=log_scale))
    except ValueError as err:
        raise ConfigError(
            f"cannot sweep {key}: {err}",
            where,
            "e.g. choice(a,b), range(1,10), interval(0.1,0.9), tag(log, interval(1e-4,1e-1)) "
            "(log needs low > 0)",
        ) from None
    raise ConfigError(
        f"cannot sweep {key} with {type(value).__name__}",
        where,
        "use choice(), range() or interval()",
    )
