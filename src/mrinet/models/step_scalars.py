"""Step scalars (train loss, gradient norms, saturation) written without a host sync per step.

Reading a device tensor as a Python float (`float`, `.item()`) makes the host wait for every
kernel queued before it: on a GPU a logging step would drain the pipeline. Here a step's
scalars are stacked on their device, copied to (pinned) host memory without blocking, and
written to the loggers later: at the start of each validation and at the end of each training
epoch, points where the loop synchronises anyway. On the CPU the same code runs (the copy is
a no-op), so CPU tests cover the path a GPU takes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch


class StepScalars:
    """Pending step scalars: `add` in a training step (no sync), `write` at epoch boundaries."""

    def __init__(self) -> None:
        # (step, names, values on the host or in flight to it, CUDA event of the copy or None)
        self._pending: list[tuple[int, list[str], torch.Tensor, object, dict[str, float]]] = []

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, step: int, metrics: Mapping[str, torch.Tensor | float]) -> None:
        """Keep one step's scalars: tensors stay on their device until `write`."""
        numbers = {k: float(v) for k, v in metrics.items() if not torch.is_tensor(v)}
        names = [k for k, v in metrics.items() if torch.is_tensor(v)]
        event, values = None, torch.zeros(0)
        if names:
            values = torch.stack([metrics[k].detach().reshape(()).float() for k in names])
            if values.device.type == "cuda":
                host = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
                host.copy_(values, non_blocking=True)
                event = torch.cuda.Event()
                event.record()
                values = host
            elif values.device.type != "cpu":
                values = values.to("cpu")  # other devices: a plain copy (no pinned path)
        self._pending.append((int(step), names, values, event, numbers))

    def write(self, loggers: Iterable) -> None:
        """Write every pending step's scalars to the loggers, in step order, and forget them."""
        pending, self._pending = self._pending, []
        loggers = list(loggers)
        for step, names, values, event, numbers in pending:
            if event is not None:
                event.synchronize()  # the copy was queued a while ago: normally done already
            row = dict(zip(names, values.tolist()))
            row.update(numbers)
            for logger in loggers:
                logger.log_metrics(row, step=step)
