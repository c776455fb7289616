"""Batched forward over S sampled parameter vectors vs a Python loop over the samples.

For each surrogate, times one call with ``params`` of shape ``(S, P)`` against
``S`` calls with one row each (the same code path, so the ratio isolates the
batching), both forward-only and forward + backward, and prints the speed-up.

    uv run python packages/polymix-torch/benchmarks/forward.py [--quick] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch

from orrery.polymix import (
    GatingNetwork,
    MixtureOfExperts,
    NeuralNetwork,
    PolynomialChaosExpansion,
)


def _best_of(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _cases(n: int):
    yield "NN 2-8x2-1 (reference, P=105)", NeuralNetwork(2, 1, width=8, depth=2), torch.rand(n, 2)
    yield "NN 1-16-1 (defaults)", NeuralNetwork(1, 1), torch.rand(n, 1)
    yield "PCE d=3 p=6", PolynomialChaosExpansion(3, degree=6), torch.rand(n, 3) * 2 - 1
    experts = [NeuralNetwork(2, 1, width=8) for _ in range(4)]
    moe = MixtureOfExperts(experts, GatingNetwork(2, 4, width=8))
    yield "MoE 4x(2-8-1) + gate", moe, torch.rand(n, 2)
    # compute-bound: both sides do the same FLOPs, so batching gains little here
    yield "NN 4-64x2-1 (compute-bound)", NeuralNetwork(4, 1, width=64, depth=2), torch.rand(n, 4)


def _bench(name: str, model, x: torch.Tensor, s: int, repeats: int) -> None:
    params = 0.1 * torch.randn(s, model.num_params())
    rows = [params[i : i + 1] for i in range(s)]

    def batched():
        return model(x, params)

    def loop():
        return torch.cat([model(x, r) for r in rows])

    torch.testing.assert_close(batched(), loop(), rtol=1e-4, atol=1e-5)
    p = params.clone().requires_grad_(True)
    prow = [p[i : i + 1] for i in range(s)]

    def batched_bwd():
        model(x, p).sum().backward()

    def loop_bwd():
        torch.cat([model(x, r) for r in prow]).sum().backward()

    for mode, fa, fb in (("forward", batched, loop), ("fwd+bwd", batched_bwd, loop_bwd)):
        with torch.no_grad() if mode == "forward" else torch.enable_grad():
            tb, tl = _best_of(fa, repeats), _best_of(fb, repeats)
        print(f"{name:32s} {mode:9s} {tb * 1e3:11.3f} {tl * 1e3:9.3f} {tl / tb:8.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--samples", type=int, default=64, help="S, parameter samples")
    parser.add_argument("--points", type=int, default=256, help="N, input points")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    repeats = 3 if args.quick else 10
    s = args.samples
    print(f"S={s} samples, N={args.points} points, {args.threads} thread(s), best of {repeats}")
    print(f"{'surrogate':32s} {'mode':9s} {'batched ms':>11s} {'loop ms':>9s} {'speed-up':>9s}")
    for name, model, x in _cases(args.points):
        _bench(name, model, x, s, repeats)


if __name__ == "__main__":
    main()
