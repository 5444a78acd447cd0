"""Every command in one place: argument parsing and `main`; the work stays in the library.

Each module `mrinet/cli/<name>.py` is one command with `main(argv=None)` (callable from Python
and tests; raises mrinet errors) and `run()` (the console script `mrinet-<name>` and
`python -m mrinet.cli.<name>`: a MrinetError becomes one message and a non-zero exit).
The old module paths (`python -m mrinet.reconstruct`, `mrinet.sim.dti_dataset`,
`mrinet.sim.kspace_dataset`, `mrinet.nets.gradcheck`, `mrinet.slurm.reconstruct_array`) call
the same `run()`.

train, eval and predict are Hydra commands (their `main` is the `@hydra.main` function and
the console script); they move here unchanged as cli/train.py, cli/eval.py, cli/predict.py,
with `mrinet/<name>.py` left as a shim (`from mrinet.cli.<name> import main`, plus the
`__main__` call: Lightning's DDP launcher re-runs `python -m mrinet.train`), and pyproject's
`mrinet-<name>` pointed at `mrinet.cli.<name>:main`.
"""

from __future__ import annotations

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
