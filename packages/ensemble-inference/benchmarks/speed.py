"""Ensemble of 16 small MLPs via ``ensemble_map`` vs a Python loop of 16 jitted single fits.

Each member is an MLP 1 -> 32 -> 32 -> 1 fitted to 256 points for 600 full-batch
Adam steps. Printed, all measured in this run:

* speed-up of ``ensemble_map`` over a Python loop of 16 calls to one jitted
  single-member fit (plain optax + ``lax.scan``), compile time excluded and included;
* ensemble throughput (member-steps per second) relative to one member fitted
  alone (``ensemble_map(ensemble_size=1)``), in units of E (goal >= 0.6 E);
* ``ensemble_map`` against the ideal batched program, the hand-written fit above
  under ``vmap`` (no minibatch, NaN or sharding logic): the runner's own overhead.

Both goals assume hardware where one small member leaves the device idle (a GPU).
On a few CPU cores the 16 members' arithmetic runs back to back, so no batched
program, hand-written or not, can beat the loop by much; the third line tells
whether ``ensemble_map`` itself is the bottleneck.

Run: ``uv run python packages/ensemble-inference/benchmarks/speed.py [--quick]``.
"""

from __future__ import annotations

import argparse
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from orrery.ensemble import ensemble_map

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 steps, 2 repeats")
    args = parser.parse_args()
    steps = 200 if args.quick else 600
    repeats = 2 if args.quick else 5
    x, y = data()
    keys = jax.random.split(jax.random.PRNGKey(0), E)

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


if __name__ == "__main__":
    main()
