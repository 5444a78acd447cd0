"""Iterative solvers that take operators (callables), not images: CG and FISTA, batched."""

from __future__ import annotations

from collections.abc import Callable

import torch

Operator = Callable[[torch.Tensor], torch.Tensor]


def _batch_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Re <a, b> per batch element: (B, ...) x (B, ...) -> (B, 1, ..., 1)."""
    d = (
        (torch.view_as_real(a) * torch.view_as_real(b)).flatten(1).sum(dim=1)
        if a.is_complex()
        else ((a * b).flatten(1).sum(dim=1))
    )
    return d.reshape(-1, *([1] * (a.dim() - 1)))


def as_real(t: torch.Tensor) -> torch.Tensor:
    """The real view (..., 2) of a complex tensor (torch's real kernels are faster than its
    complex ones for adds and lerps), a real tensor as it is."""
    return torch.view_as_real(t) if t.is_complex() else t


def _like(like: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    return torch.view_as_complex(real) if like.is_complex() else real


def conjugate_gradient(
    normal: Operator,
    rhs: torch.Tensor,
    x0: torch.Tensor | None = None,
    iterations: int = 10,
    tol: float = 0.0,
) -> torch.Tensor:
    """Solve normal(x) = rhs (Hermitian positive semi-definite) per batch element (B, ...)."""
    x = torch.zeros_like(rhs) if x0 is None else x0.clone()
    r = rhs - normal(x) if x0 is not None else rhs.clone()
    p = r.clone()
    rr = _batch_dot(r, r)
    rr0 = rr.clone()
    for _ in range(iterations):
        if tol > 0 and bool((rr <= tol**2 * rr0).all()):
            break
        ap = normal(p)
        alpha = rr / _batch_dot(p, ap).clamp_min(1e-30)
        x.add_(alpha * p)
        r.sub_(alpha * ap)
        rr_new = _batch_dot(r, r)
        p.mul_(rr_new / rr.clamp_min(1e-30)).add_(r)
        rr = rr_new
    return x


def fista(
    gradient: Operator,
    prox: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    step: torch.Tensor,
    iterations: int,
) -> torch.Tensor:
    """Minimise f(x) + g(x): x = prox(z - step * grad f(z), step), Nesterov momentum (FISTA).

    `step` (B, 1, ..., 1) should be <= 1 / Lipschitz(grad f); `prox(v, step)` is g's proximal map.
    """
    x = x0.clone()
    z = x0.clone()
    t = 1.0
    # one slice (the CPU default): a Python scalar step, as add's alpha, is ~1.5x faster than
    # a broadcast complex x real addcmul
    scalar = float(step.reshape(-1)[0]) if step.numel() == 1 else None
    for _ in range(iterations):
        if scalar is None:
            v = torch.addcmul(z, gradient(z), step, value=-1)
        else:
            v = _like(z, torch.add(as_real(z), as_real(gradient(z)), alpha=-scalar))
        x_new = prox(v, step)
        t_new = 0.5 * (1.0 + (1.0 + 4.0 * t * t) ** 0.5)
        momentum = (t - 1.0) / t_new
        # z = x_new + momentum (x_new - x) = lerp(x, x_new, 1 + momentum), one pass in x's
        # buffer; on the real view: complex lerp is ~6x slower, complex mul + add ~2.4x
        as_real(x).lerp_(as_real(x_new), 1.0 + momentum)
        z = x
        x, t = x_new, t_new
    return x
