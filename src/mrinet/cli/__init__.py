"""Every command in one place: argument parsing and `main`; the work stays in the library.

Each module `mrinet/cli/<name>.py` is one command with `main(argv=None)` (callable from Python
and tests; raises mrinet errors) and `run()` (the console script `mrinet-<name>` and
`python -m mrinet.cli.<name>`: a MrinetError becomes one message and a non-zero exit).
The old module paths (`python -m mrinet.reconstruct`, `mrinet.sim.dti_dataset`,
`mrinet.sim.kspace_dataset`, `mrinet.nets.gradcheck`, `mrinet.slurm.reconstruct_array`) call
the same `run()`.

train, eval and predict are Hydra commands: their `main` is the `@hydra.main` function and
the console script (`mrinet-<name> = "mrinet.cli.<name>:main"`); Hydra finds the configs
through `run.config_dir` (the checkout's configs/ or the wheel's copy), wherever the module
lives. `mrinet/train.py`, `eval.py` and `predict.py` are shims (re-exports plus the
`__main__` call: Lightning's DDP launcher re-runs `python -m <the module the user ran>`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import NoReturn

from mrinet.errors import MrinetError


def exit_with(main: Callable[[], object], prefix: str | None = None) -> NoReturn:
    """Run a command's `main()` and exit: its int return value is the exit status (anything
    else means 0); a MrinetError prints one message (`<prefix>: ` or `mrinet: <Type>: `) and
    exits 1, never a traceback."""
    try:
        status = main()
    except MrinetError as err:
        lead = f"{prefix}: " if prefix else f"mrinet: {type(err).__name__}: "
        raise SystemExit(f"{lead}{err}") from None
    raise SystemExit(status if isinstance(status, int) else 0)


def console_script(main: Callable[[], object], prefix: str | None = None) -> Callable[[], NoReturn]:
    """A command's `run()`, its console script: `exit_with(main, prefix)`."""

    def run() -> NoReturn:
        exit_with(main, prefix)

    return run


def options(args: argparse.Namespace, *names: str) -> dict[str, object]:
    """Parsed options by name (`--mem-gb` is `mem_gb`), to pass on as keyword arguments."""
    return {name: getattr(args, name) for name in names}
