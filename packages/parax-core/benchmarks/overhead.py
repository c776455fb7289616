"""Overhead of orrery.parax over plain equinox.

1. A jitted gradient step (loss + grad + SGD update) on an MLP whose weights are
   `Parameter`s, against the same step on a plain `equinox.Module` holding arrays.
   Goal: ratio within 1.05.
2. `named_params` / `with_params` on a module holding 1,000 parameters, after the
   first call. Goal: well under 10 ms.
3. The cold start (``--no-cold`` leaves it out): a fresh Python process per case
   (the plain and the parax gradient step, ``with_params`` on 1,000 parameters)
   times its imports and its first call, compilation included, next to the warm
   call. Each child reports wall and CPU seconds and the seconds XLA spent
   compiling (``jax.monitoring``'s ``backend_compile`` events); the imports are
   this module's (JAX, equinox and orrery.parax) for every case.

Run: ``uv run python packages/parax-core/benchmarks/overhead.py [--quick] [--no-cold]``
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import orrery.parax as px


class PlainMLP(eqx.Module):
    weights: list
    biases: list

    def __call__(self, x):
        for w, b in zip(self.weights[:-1], self.biases[:-1], strict=True):
            x = jax.nn.tanh(x @ w + b)
        return x @ self.weights[-1] + self.biases[-1]


class ParaxMLP(px.Module):
    weights: list
    biases: list

    def __call__(self, x):
        for w, b in zip(self.weights[:-1], self.biases[:-1], strict=True):
            x = jax.nn.tanh(x @ jnp.asarray(w) + jnp.asarray(b))
        return x @ jnp.asarray(self.weights[-1]) + jnp.asarray(self.biases[-1])


def make_weights(key, sizes):
    ws, bs = [], []
    for i, (m, n) in enumerate(itertools.pairwise(sizes)):
        ws.append(jax.random.normal(jax.random.fold_in(key, i), (m, n)) / np.sqrt(m))
        bs.append(jnp.zeros(n))
    return ws, bs


@eqx.filter_jit
def step(dyn, static, x, y, lr=1e-3):
    def loss(d):
        model = eqx.combine(d, static)
        return jnp.mean((model(x) - y) ** 2)

    value, grads = jax.value_and_grad(loss)(dyn)
    dyn = jax.tree_util.tree_map(lambda p, g: p - lr * g, dyn, grads)
    return dyn, value


def time_steps(dyn, static, x, y, n_steps):
    t0 = time.perf_counter()
    for _ in range(n_steps):
        dyn, v = step(dyn, static, x, y)
    jax.block_until_ready(v)
    return (time.perf_counter() - t0) / n_steps


def step_problem(quick: bool):
    """The gradient-step benchmark's data and both models, partitioned."""
    key = jax.random.key(0)
    width, batch = (128, 256) if quick else (512, 1024)
    sizes = [32, width, width, width, 1]
    ws, bs = make_weights(key, sizes)
    x = jax.random.normal(jax.random.key(1), (batch, sizes[0]))
    y = jnp.sin(x[:, :1])
    plain = PlainMLP(ws, bs)
    parax = ParaxMLP([px.Parameter(w) for w in ws], [px.Parameter(b) for b in bs])
    return width, batch, x, y, eqx.partition(plain, eqx.is_array), px.partition(parax)


def bench_grad_step(quick: bool) -> dict[str, float]:
    width, batch, x, y, (p_dyn, p_static), (q_dyn, q_static) = step_problem(quick)
    for dyn, static in ((p_dyn, p_static), (q_dyn, q_static)):  # compile both
        jax.block_until_ready(step(dyn, static, x, y))
    n_steps, rounds = (20, 15) if quick else (10, 15)
    # Alternate short runs so both see the same machine load; compare per-round ratios.
    t_plain, t_parax, ratios = [], [], []
    for _ in range(rounds):
        a = time_steps(p_dyn, p_static, x, y, n_steps)
        b = time_steps(q_dyn, q_static, x, y, n_steps)
        t_plain.append(a)
        t_parax.append(b)
        ratios.append(b / a)
    print(
        f"grad step ({width} wide, batch {batch})  plain equinox: {min(t_plain) * 1e3:.3f} ms"
        f"   parax: {min(t_parax) * 1e3:.3f} ms  (best of {rounds})"
    )
    print(
        f"grad step ratio parax/plain: median {np.median(ratios):.3f}, "
        f"best-vs-best {min(t_parax) / min(t_plain):.3f}  (goal <= 1.05)"
    )
    return {"plain step": min(t_plain), "parax step": min(t_parax)}


class Many(px.Module):
    params: list


def best_of(fn, repeats):
    fn()  # first call (fills the name cache)
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def names_problem():
    """1,000 named parameters and new values for them."""
    n = 1000
    module = Many([px.Parameter(float(i), name=f"p{i}") for i in range(n)])
    return module, np.arange(n, dtype=np.float32) * 0.5


def bench_names(quick: bool) -> dict[str, float]:
    module, values = names_problem()
    as_dict = {f"params_p{i}": float(v) for i, v in enumerate(values)}
    repeats = 5 if quick else 20
    t_named = best_of(module.named_params, repeats)
    t_names = best_of(module.param_names, repeats)
    t_array = best_of(lambda: module.with_params(values), repeats)
    t_dict = best_of(lambda: module.with_params(as_dict), repeats)
    print(f"1,000 params: named_params {t_named * 1e3:.2f} ms, param_names {t_names * 1e3:.2f} ms")
    print(
        f"1,000 params: with_params(array) {t_array * 1e3:.2f} ms, "
        f"with_params(dict) {t_dict * 1e3:.2f} ms  (goal well under 10 ms)"
    )
    return {"with_params": t_array}


# A fresh process per case, its clocks started before any import; it prints JSON.
_COLD_WORKER = r"""
import time
t0, c0 = time.perf_counter(), time.process_time()
import json, sys
import jax, jax.monitoring
compile_s = [0.0, 0]

def _listen(name, seconds, **kwargs):
    if name.endswith("backend_compile_duration"):
        compile_s[0] += seconds
        compile_s[1] += 1

jax.monitoring.register_event_duration_secs_listener(_listen)
case, quick = sys.argv[1], sys.argv[2] == "1"
sys.path.insert(0, sys.argv[3])
import overhead
t_import = time.perf_counter() - t0
t1 = time.perf_counter()
jax.block_until_ready(overhead.first_call(case, quick))
t_end = time.perf_counter()
print(json.dumps({"import": t_import, "first": t_end - t1, "total": t_end - t0,
                  "cpu": time.process_time() - c0, "compile": compile_s[0],
                  "programs": compile_s[1]}))
"""

COLD_CASES = ("plain step", "parax step", "with_params")


def first_call(case: str, quick: bool):
    """The cold worker's first call of ``case`` (one of `COLD_CASES`)."""
    if case == "with_params":
        module, values = names_problem()
        return jax.tree.leaves(module.with_params(values))
    _, _, x, y, plain, parax = step_problem(quick)
    dyn, static = plain if case == "plain step" else parax
    return step(dyn, static, x, y)


def bench_cold(quick: bool, warm: dict[str, float]) -> None:
    here = str(Path(__file__).resolve().parent)
    print(f"cold start (fresh process; load average {os.getloadavg()[0]:.2f}); seconds")
    print(
        f"{'':<14}{'import':>8}{'first':>8}{'compile':>9}{'total':>8}{'cpu':>8}"
        f"{'programs':>10}{'warm':>10}"
    )
    for case in COLD_CASES:
        cmd = [sys.executable, "-c", _COLD_WORKER, case, "1" if quick else "0", here]
        try:
            done = subprocess.run(cmd, check=True, capture_output=True, text=True)
            r = json.loads(done.stdout.strip().splitlines()[-1])
        except (OSError, subprocess.CalledProcessError, ValueError, IndexError) as err:
            print(f"{case:<14}failed: {err} {getattr(err, 'stderr', '') or ''}"[-1500:])
            continue
        print(
            f"{case:<14}{r['import']:>8.2f}{r['first']:>8.2f}{r['compile']:>9.2f}"
            f"{r['total']:>8.2f}{r['cpu']:>8.2f}{r['programs']:>10d}{warm[case]:>10.4f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller model, fewer repeats")
    parser.add_argument("--no-cold", action="store_true", help="skip the fresh-process runs")
    args = parser.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}")
    warm = bench_names(args.quick)
    warm.update(bench_grad_step(args.quick))
    if not args.no_cold:
        bench_cold(args.quick, warm)


if __name__ == "__main__":
    main()
