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
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tasks import run_sbi, task_data  # shared with general_purpose.py

_NO_STABILITY_GATES = dict(
    stable_inverse_forward_max_abs_error_threshold=None,
    stable_inverse_forward_logdet_closure_max_abs_error_threshold=None,
    stable_cube_edge_hit_rate_threshold=None,
)
_SCHEDULE = dict(use_cosine_schedule=True, warmup_fraction=0.02, min_learning_rate=1e-5)

TASKS = {
    "gaussian_linear": dict(
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


def _sbi(task, theta, x, x_obs, num_samples, seed, workdir: Path):
    samples, train_s, epochs = run_sbi(task, theta, x, x_obs, num_samples, seed, workdir)
    return samples, train_s, epochs, None


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
            theta, x, x_obs, refs[task] = task_data(
                task,
                seed=args.seed,
                num_simulations=args.num_simulations,
                num_observations=args.num_observations,
                num_samples=args.num_samples,
            )
            common = (task, theta, x, x_obs, args.num_samples, args.seed)
            runners = [("orrery", run_orrery, (*common, args.epochs))]
            if not args.skip_sbi:
                runners.append(("sbi 0.27", _sbi, (*common, Path(tmp))))
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
