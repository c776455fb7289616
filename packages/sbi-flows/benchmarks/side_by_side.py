"""Side by side with the `sbi` package: C2ST and training wall time on sbibm tasks.

Runs sbibm's ``gaussian_linear`` (10-D) and ``two_moons`` with the same
simulations for both libraries: ``orrery.sbi.ConditionalFlowPosterior`` in this
process, and ``sbi`` 0.27's NPE (default MAF, default training loop) in an
isolated environment started with
``uv run --isolated --no-project --with sbi==0.27.0``. Reference posteriors are
exact (closed form for gaussian_linear, an exact sampler for two_moons); C2ST
(sbibm's definition, ``orrery.sbi.diagnostics.c2st``) compares each method's
draws with reference draws for three observations.

    uv run python packages/sbi-flows/benchmarks/side_by_side.py            # 10^4 sims
    uv run python packages/sbi-flows/benchmarks/side_by_side.py --quick    # smaller, faster

The machine is shared: wall times are noisy, the ratio is what matters.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

SBI_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import torch
    from sbi.inference import NPE
    from sbi.utils import BoxUniform

    data = np.load(sys.argv[1])
    torch.manual_seed(int(data["seed"]))
    theta = torch.tensor(data["theta"], dtype=torch.float32)
    x = torch.tensor(data["x"], dtype=torch.float32)
    dim = theta.shape[1]
    if str(data["task"]) == "gaussian_linear":
        prior = torch.distributions.MultivariateNormal(torch.zeros(dim), 0.1 * torch.eye(dim))
    else:
        prior = BoxUniform(-torch.ones(dim), torch.ones(dim))
    start = time.perf_counter()
    inference = NPE(prior=prior)
    estimator = inference.append_simulations(theta, x).train(show_train_summary=False)
    posterior = inference.build_posterior(estimator)
    train_s = time.perf_counter() - start
    n = int(data["num_samples"])
    samples = [
        posterior.sample((n,), x=torch.tensor(xo, dtype=torch.float32),
                         show_progress_bars=False).numpy()
        for xo in data["x_obs"]
    ]
    epochs = len(inference.summary["training_loss"])
    np.savez(sys.argv[2], samples=np.stack(samples), train_s=train_s, epochs=epochs)
    """
)


# ----------------------------------------------------------------------------- tasks
def gaussian_linear(rng: np.random.Generator, n: int, dim: int = 10):
    """sbibm: prior N(0, 0.1 I), likelihood N(theta, 0.1 I)."""
    theta = rng.normal(0.0, np.sqrt(0.1), size=(n, dim))
    return theta, theta + rng.normal(0.0, np.sqrt(0.1), size=(n, dim))


def gaussian_linear_reference(rng, x_obs, n):
    """Closed-form posterior N(x / 2, 0.05 I)."""
    return x_obs / 2 + rng.normal(0.0, np.sqrt(0.05), size=(n, x_obs.shape[-1]))


def _moons_offset(rng, n):
    a = rng.uniform(-np.pi / 2, np.pi / 2, size=n)
    r = rng.normal(0.1, 0.01, size=n)
    return np.stack([r * np.cos(a) + 0.25, r * np.sin(a)], axis=-1)


def two_moons(rng: np.random.Generator, n: int):
    """sbibm: prior U(-1, 1)^2; x = p(a, r) + (-|t1 + t2| / sqrt2, (-t1 + t2) / sqrt2)."""
    theta = rng.uniform(-1.0, 1.0, size=(n, 2))
    shift = np.stack(
        [-np.abs(theta[:, 0] + theta[:, 1]), -theta[:, 0] + theta[:, 1]], axis=-1
    ) / np.sqrt(2)
    return theta, _moons_offset(rng, n) + shift


def two_moons_reference(rng, x_obs, n):
    """Exact sampler: invert the simulator for a fresh (a, r) and a random sign branch,
    rejecting draws outside the prior box (the map is linear, so no Jacobian weight)."""
    out = np.empty((0, 2))
    while len(out) < n:
        m = 2 * (n - len(out)) + 100
        q = x_obs - _moons_offset(rng, m)  # q = (-|t1 + t2|, t2 - t1) / sqrt2
        s = -np.sqrt(2) * q[:, 0] * rng.choice([-1.0, 1.0], size=m)
        d = np.sqrt(2) * q[:, 1]
        cand = np.stack([(s - d) / 2, (s + d) / 2], axis=-1)
        ok = (q[:, 0] <= 0) & np.all(np.abs(cand) <= 1, axis=-1)
        out = np.concatenate([out, cand[ok]])
    return out[:n]


_NO_STABILITY_GATES = dict(
    stable_inverse_forward_max_abs_error_threshold=None,
    stable_inverse_forward_logdet_closure_max_abs_error_threshold=None,
    stable_cube_edge_hit_rate_threshold=None,
)
_SCHEDULE = dict(use_cosine_schedule=True, warmup_fraction=0.02, min_learning_rate=1e-5)

TASKS = {
    "gaussian_linear": dict(
        simulate=gaussian_linear,
        reference=gaussian_linear_reference,
        bounds=None,
        # A masked autoregressive flow (sbi's default family, 5 layers of 50 units):
        # exact for Gaussians. Small encoder: the posterior mean is linear in x.
        config=dict(
            parameter_space="physical",
            flow_family="autoregressive",
            num_coupling_layers=5,
            autoregressive_transform_units=5,
            embedding_dim=32,
            photometry_embedding_dim=32,
            encoder_hidden_dim=32,
            learning_rate=5e-4,
            batch_size=256,
            num_epochs=200,
            early_stopping_patience=10,
            **_SCHEDULE,
            **_NO_STABILITY_GATES,
        ),
    ),
    "two_moons": dict(
        simulate=two_moons,
        reference=two_moons_reference,
        bounds=np.array([[-1.0, 1.0], [-1.0, 1.0]]),
        # Thin crescents: a roomy spline flow in physical coordinates (the logit of the
        # prior box stretches them), and a cosine schedule that runs to its floor.
        config=dict(
            parameter_space="physical",
            flow_family="spline",
            num_coupling_layers=6,
            hidden_dim=128,
            num_spline_bins=16,
            spline_bound=5.0,
            embedding_dim=32,
            learning_rate=1e-3,
            batch_size=128,
            num_epochs=100,
            early_stopping_patience=20,
            **_SCHEDULE,
            **_NO_STABILITY_GATES,
        ),
    ),
}


# ----------------------------------------------------------------------------- runners
def run_orrery(task, theta, x, x_obs, num_samples, seed, epochs):
    """Fit twice in this process: the first fit pays XLA compilation (the time a user
    waits), the second reuses it (the time of every later fit of the same architecture)."""
    from orrery.sbi import ConditionalFlowPosterior, ObservationBlock, SimulationDataset

    spec = TASKS[task]
    dataset = SimulationDataset.from_arrays(
        theta, x, bounds=spec["bounds"], validation_fraction=0.1, seed=seed
    )
    config = dict(spec["config"]) if epochs is None else {**spec["config"], "num_epochs": epochs}
    times = []
    for _ in range(2):
        posterior = ConditionalFlowPosterior(parameter_dim=theta.shape[1], seed=seed, **config)
        start = time.perf_counter()
        artifacts = posterior.fit(dataset)
        times.append(time.perf_counter() - start)
    samples = []
    for i, xo in enumerate(x_obs):
        encoded = posterior.encode_observation([ObservationBlock("auxiliary", xo)])
        draws = posterior.sample_posterior(encoded, num_samples, seed=seed + i)
        samples.append(np.asarray(draws.to_physical()))
    return np.stack(samples), times[0], len(artifacts.history["train_loss"]), times[1]


def run_sbi(task, theta, x, x_obs, num_samples, seed, workdir: Path):
    data, out, script = workdir / f"{task}_in.npz", workdir / f"{task}_out.npz", workdir / "s.py"
    script.write_text(SBI_SCRIPT)
    np.savez(data, theta=theta, x=x, x_obs=x_obs, task=task, seed=seed, num_samples=num_samples)
    cmd = [
        "uv",
        "run",
        "--isolated",
        "--no-project",
        "--python",
        "3.11",
        "--with",
        "sbi==0.27.0",
        "python",
        str(script),
        str(data),
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    result = np.load(out)
    return result["samples"], float(result["train_s"]), int(result["epochs"]), None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="2,000 sims, 1 observation, 500 C2ST draws"
    )
    parser.add_argument("--num-simulations", type=int, default=10_000)
    parser.add_argument("--num-samples", type=int, default=10_000, help="draws per C2ST set")
    parser.add_argument(
        "--epochs", type=int, default=None, help="orrery's epoch cap (default: per task)"
    )
    parser.add_argument("--num-observations", type=int, default=3, help="observations per task")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--skip-sbi", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=-1, help="C2ST folds fitted in parallel")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    if args.quick:
        args.num_simulations, args.num_samples, args.num_observations = 2_000, 500, 1

    from orrery.sbi.diagnostics import c2st

    # Every fit runs before any C2ST, so the classifiers never share the CPU with a
    # timed training run.
    fits, refs = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks:
            spec = TASKS[task]
            # Seeded by the task's place in TASKS: a subset run sees the same data.
            rng = np.random.default_rng(args.seed + 100 * list(TASKS).index(task))
            theta, x = spec["simulate"](rng, args.num_simulations)
            _, x_obs = spec["simulate"](rng, 3)
            x_obs = x_obs[: args.num_observations]
            refs[task] = [spec["reference"](rng, xo, args.num_samples) for xo in x_obs]
            common = (task, theta, x, x_obs, args.num_samples, args.seed)
            runners = [("orrery", run_orrery, (*common, args.epochs))]
            if not args.skip_sbi:
                runners.append(("sbi 0.27", run_sbi, (*common, Path(tmp))))
            for name, runner, runner_args in runners:
                try:
                    samples, train_s, epochs, warm_s = runner(*runner_args)
                except Exception as err:  # report and go on with the other side
                    print(f"[{task}/{name}] failed: {err}", file=sys.stderr)
                    continue
                warm = "" if warm_s is None else f" (again, compiled: {warm_s:.1f} s)"
                print(f"[{task}/{name}] trained in {train_s:.1f} s{warm}, {epochs} epochs")
                fits.append((task, name, samples, train_s, epochs, warm_s))

    rows = []
    for task, name, samples, train_s, epochs, warm_s in fits:
        scores = [
            c2st(r, s, seed=args.seed, n_jobs=args.jobs)
            for r, s in zip(refs[task], samples, strict=True)
        ]
        print(f"[{task}/{name}] C2ST per observation {np.round(scores, 3)}", flush=True)
        rows.append((task, name, float(np.mean(scores)), train_s, epochs, warm_s))

    print(
        f"\n{args.num_simulations} simulations, {args.num_observations} observation(s) per "
        f"task, {args.num_samples} draws per C2ST set"
    )
    header = f"{'task':<16} {'method':<9} {'C2ST':>6} {'train s':>8} {'epochs':>6} {'ratio':>6}"
    print(f"{header} {'again s':>8} {'ratio':>6}")
    base = {t: s for t, n, _, s, _, _ in rows if n == "sbi 0.27"}
    for task, name, score, train_s, epochs, warm_s in rows:
        b = base.get(task, float("nan"))
        line = f"{task:<16} {name:<9} {score:6.3f} {train_s:8.1f} {epochs:6d} {train_s / b:6.2f}"
        if warm_s is not None:
            line += f" {warm_s:8.1f} {warm_s / b:6.2f}"
        print(line)
    print(
        "(ratio = training wall time / sbi's. 'train s' is the first fit in the process,\n"
        " XLA compilation included; 'again s' a second fit of the same architecture.\n"
        " sbibm's NPE at 10^4 simulations: 0.552 and 0.606)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
