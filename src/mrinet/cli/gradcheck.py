"""Gradient check: the hand-derived backprop against torch autograd and central differences.

    mrinet-gradcheck --layers 5,8,6,3 --activation sigmoid --cost quadratic \\
        --output-activation sigmoid --seed 0 --batch 16      (or python -m mrinet.nets.gradcheck)

Prints the max relative error per layer (W and b) and exits non-zero above tolerance.
The relative error of a parameter is max|g - g_ref| / max(max|g|, max|g_ref|).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from mrinet.cli import console_script
from mrinet.nets.backprop import COSTS, HIDDEN_ACTIVATIONS, OUTPUT_ACTIVATIONS
from mrinet.nets.gradcheck import (
    TOL_AUTOGRAD,
    TOL_FINITE_DIFF,
    check_gradients,
    format_table,
    random_problem,
)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: build a small float64 net, print the error table, return 1 above tolerance."""
    parser = argparse.ArgumentParser(prog="python -m mrinet.nets.gradcheck", description=__doc__)
    parser.add_argument("--layers", default="5,8,6,3", help="sizes: inputs,hidden...,classes")
    parser.add_argument("--activation", default="sigmoid", choices=HIDDEN_ACTIVATIONS)
    parser.add_argument("--cost", default="quadratic", choices=COSTS)
    parser.add_argument("--output-activation", default="sigmoid", choices=OUTPUT_ACTIVATIONS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--eps", type=float, default=1e-6, help="finite-difference step")
    parser.add_argument("--tol-autograd", type=float, default=TOL_AUTOGRAD)
    parser.add_argument("--tol-finite-diff", type=float, default=TOL_FINITE_DIFF)
    args = parser.parse_args(argv)
    try:
        layers = [int(n) for n in args.layers.split(",")]
    except ValueError:
        parser.error(f"--layers must be comma-separated integers, got {args.layers!r}")
    if args.cost == "cross_entropy" and args.output_activation != "softmax":
        parser.error("--cost cross_entropy needs --output-activation softmax")

    net, x, y_onehot = random_problem(layers, args.activation, args.batch, args.seed)
    rows = check_gradients(
        net, x, y_onehot, cost=args.cost, output_activation=args.output_activation, eps=args.eps
    )
    print(
        f"net {layers}, {args.activation} hidden, {args.cost} cost with "
        f"{args.output_activation} outputs, batch {args.batch}, seed {args.seed}, float64"
    )
    print(format_table(rows))
    worst_auto = max(max(r["W_autograd"], r["b_autograd"]) for r in rows)
    worst_fd = max(max(r["W_finite_diff"], r["b_finite_diff"]) for r in rows)
    ok = worst_auto <= args.tol_autograd and worst_fd <= args.tol_finite_diff
    print(
        f"max relative error: {worst_auto:.3e} vs autograd (tol {args.tol_autograd:.0e}), "
        f"{worst_fd:.3e} vs finite differences (tol {args.tol_finite_diff:.0e}): "
        f"{'PASS' if ok else 'FAIL'}"
    )
    return 0 if ok else 1


run = console_script(main)


if __name__ == "__main__":
    run()
