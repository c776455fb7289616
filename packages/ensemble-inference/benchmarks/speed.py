"""Ensemble of 16 small MLPs via ``ensemble_map`` vs a Python loop of 16 jitted single fits.

Each member is an MLP 1 -> 32 -> 32 -> 1 fitted to 256 points for 600 full-batch
Adam steps. Printed, all measured in this run:

* speed-up of ``ensemble_map`` over a Python loop of 16 calls to one jitted
  single-member fit (plain optax + ``lax.scan``), compile time excluded and included;
* ensemble throughput (member-steps per second) relative to one member fitted
  alone (``ensemble_map(ensemble_size=1)``), in units of E (goal >= 0.6 E);
* ``ensemble_map`` against the ideal batched program, the hand-written fit above
  under ``vmap`` (no minibatch, NaN or sharding logic): the runner's own overhead;
* the cold start: a fresh Python process per candidate (``ensemble_map`` and the
  loop of jitted single fits) times its imports and its first fit, compilation
  included, next to the warm fit (``--no-cold`` leaves it out). Each child
  reports wall and CPU seconds and the seconds XLA spent compiling (from
  ``jax.monitoring``'s ``backend_compile`` events); on a loaded machine the CPU
  seconds are the steadier figure, so the load average is printed with them.

Both goals assume hardware where one small member leaves the device idle (a GPU).
On a few CPU cores the 16 members' arithmetic runs back to back, so no batched
program, hand-written or not, can beat the loop by much; the third line tells
whether ``ensemble_map`` itself is the bottleneck.

Run: ``uv run python packages/ensemble-inference/benchmarks/speed.py [--quick] [--no-cold]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

E, N, WIDTH = 16, 256, 32


def init_fn(key):
    return eqx.nn.MLP(1, 1, WIDTH, 2, activation=jnp.tanh, key=key)


def log_joint(model, x, y):
    pred = jax.vmap(model)(x)[:, 0]
    return -0.5 * jnp.sum((pred - y) ** 2) / 0.1**2, 0.0


def data():
    x = jnp.linspace(-3.0, 3.0, N)[:, None]
    y = jnp.sin(x[:, 0]) + 0.1 * jax.random.normal(jax.random.PRNGKey(1), (N,))
    return x, y


OPT = optax.adam(3e-3)


def make_single_fit(steps: int):
    """One member, the way one would write it by hand: optax + lax.scan, jitted once."""

    @eqx.filter_jit
    def fit(key, x, y):
        params, static = eqx.partition(init_fn(key), eqx.is_array)
        opt_state = OPT.init(params)

        def loss(p):
            return -log_joint(eqx.combine(p, static), x, y)[0]

        def step(carry, _):
            p, s = carry
            value, grads = jax.value_and_grad(loss)(p)
            updates, s = OPT.update(grads, s, p)
            return (optax.apply_updates(p, updates), s), value

        (params, _), losses = jax.lax.scan(step, (params, opt_state), None, length=steps)
        return params, losses

    return fit


def timed(fns: dict, repeats: int) -> dict[str, tuple[float, float]]:
    """Per candidate: (first call incl. compile, best warm call) in seconds.

    Warm calls are interleaved across candidates so that load drift on a
    shared machine hits all of them alike.
    """
    cold = {}
    for name, fn in fns.items():
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        cold[name] = time.perf_counter() - t0
    warm = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            warm[name] = min(warm[name], time.perf_counter() - t0)
    return {name: (cold[name], warm[name]) for name in fns}


# A fresh process per candidate, its clocks started before any import; it reports JSON.
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
candidate, steps = sys.argv[1], int(sys.argv[2])
sys.path.insert(0, sys.argv[3])
import speed
if candidate == "ensemble":
    import orrery.ensemble
t_import = time.perf_counter() - t0
t1 = time.perf_counter()
jax.block_until_ready(speed.first_fit(candidate, steps))
t_end = time.perf_counter()
print(json.dumps({"import": t_import, "fit": t_end - t1, "total": t_end - t0,
                  "cpu": time.process_time() - c0, "compile": compile_s[0],
                  "programs": compile_s[1]}))
"""


def first_fit(candidate: str, steps: int):
    """The cold worker's first fit: ``ensemble_map`` or the loop of jitted single fits."""
    x, y = data()
    if candidate == "ensemble":
        from orrery.ensemble import ensemble_map

        return ensemble_map(
            log_joint,
            init_fn,
            ensemble_size=E,
            num_epochs=steps,
            data=(x, y),
            seed=jax.random.PRNGKey(0),
            optimizer=OPT,
            prior_weight=0.0,
            progress=False,
        ).losses
    single = make_single_fit(steps)
    return [single(k, x, y)[1] for k in jax.random.split(jax.random.PRNGKey(0), E)]


def cold_start(steps: int) -> dict[str, dict | str]:
    """Run each candidate's first fit in a fresh process; its timings, or why it failed."""
    here = str(Path(__file__).resolve().parent)
    out = {}
    for candidate in ("ensemble", "loop"):
        cmd = [sys.executable, "-c", _COLD_WORKER, candidate, str(steps), here]
        try:
            done = subprocess.run(cmd, check=True, capture_output=True, text=True)
            out[candidate] = json.loads(done.stdout.strip().splitlines()[-1])
        except (OSError, subprocess.CalledProcessError, ValueError, IndexError) as err:
            out[candidate] = f"{err} {getattr(err, 'stderr', '') or ''}"[-1500:]
    return out


def print_cold(cold: dict[str, dict | str], warm: dict[str, float]) -> None:
    names = {"ensemble": f"ensemble_map E={E}", "loop": f"loop of {E} jitted fits"}
    print(f"cold start (fresh process; load average {os.getloadavg()[0]:.2f}); seconds")
    print(
        f"{'':<24}{'import':>8}{'fit':>8}{'compile':>9}{'total':>8}{'cpu':>8}"
        f"{'programs':>10}{'warm fit':>10}"
    )
    for key, r in cold.items():
        if isinstance(r, str):
            print(f"{names[key]:<24}failed: {r}")
            continue
        print(
            f"{names[key]:<24}{r['import']:>8.2f}{r['fit']:>8.2f}{r['compile']:>9.2f}"
            f"{r['total']:>8.2f}{r['cpu']:>8.2f}{r['programs']:>10d}{warm[key]:>10.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 steps, 2 repeats")
    parser.add_argument("--no-cold", action="store_true", help="skip the fresh-process runs")
    args = parser.parse_args()
    steps = 200 if args.quick else 600
    repeats = 2 if args.quick else 5
    cold = None if args.no_cold else cold_start(steps)
    x, y = data()
    keys = jax.random.split(jax.random.PRNGKey(0), E)

    from orrery.ensemble import ensemble_map

    def ensemble(size):
        return lambda: (
            ensemble_map(
                log_joint,
                init_fn,
                ensemble_size=size,
                num_epochs=steps,
                data=(x, y),
                seed=jax.random.PRNGKey(0),
                optimizer=OPT,
                prior_weight=0.0,
            ).losses
        )

    single = make_single_fit(steps)

    def loop():
        return [single(k, x, y)[1] for k in keys]

    batched = eqx.filter_jit(eqx.filter_vmap(single, in_axes=(0, None, None)))

    def vmapped():
        return batched(keys, x, y)[1]

    candidates = {"ensemble": ensemble(E), "one": ensemble(1), "loop": loop, "vmap": vmapped}
    times = timed(candidates, repeats)
    (ens_cold, ens_warm), (one_cold, one_warm), (loop_cold, loop_warm), (_, vmap_warm) = (
        times.values()
    )
    final = ensemble(E)()[:, -1]

    print(
        f"device: {jax.devices()[0].device_kind} x{jax.device_count()}; E={E}, N={N}, steps={steps}"
    )
    print(f"ensemble_map E={E}:      cold {ens_cold:7.3f} s   warm {ens_warm:7.3f} s")
    print(f"ensemble_map E=1:       cold {one_cold:7.3f} s   warm {one_warm:7.3f} s")
    print(f"loop of {E} jitted fits: cold {loop_cold:7.3f} s   warm {loop_warm:7.3f} s")
    print(f"speed-up vs loop (warm): {loop_warm / ens_warm:6.2f}x   (goal >= 8x)")
    print(f"speed-up vs loop (cold): {loop_cold / ens_cold:6.2f}x")
    rel = E * one_warm / ens_warm
    print(f"throughput vs one member: {rel:6.2f} members = {rel / E:4.2f} E   (goal >= 0.6 E)")
    print(
        f"hand-written vmapped fit: warm {vmap_warm:7.3f} s; ensemble_map / it = "
        f"{ens_warm / vmap_warm:4.2f}"
    )
    print(f"final losses: median {float(jnp.median(final)):.3g}")
    if cold is not None:
        print_cold(cold, {"ensemble": ens_warm, "loop": loop_warm})


if __name__ == "__main__":
    main()
