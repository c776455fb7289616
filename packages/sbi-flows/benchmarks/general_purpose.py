"""The general-purpose recipe against `sbi` 0.27's defaults, on problems nobody tuned for.

``ConditionalFlowPosterior.recommended(parameter_dim, num_simulations)`` is fitted
unchanged on every task; ``sbi`` 0.27's NPE runs with its defaults (MAF, default
training loop) in an isolated environment
(``uv run --isolated --no-project --with sbi==0.27.0``), on the same simulations.
Every reference posterior is exact:

- ``gaussian_linear`` (sbibm, 10-D): closed form;
- ``two_moons`` (sbibm, 2-D): an exact inverse sampler;
- ``folded_5d`` (ours): prior U(-2, 2)^5, ``x = |theta| + N(0, 0.2^2)`` plus 15
  pure-noise distractor features (20-D observation); 32 modes, each dimension's
  posterior a truncated normal on ``|theta|`` with a random sign;
- ``heavy_tailed_3d`` (ours): prior Student-t(3)^3, ``x = theta + N(0, 0.5^2)``;
  exact rejection sampling from the prior (the likelihood is bounded by its peak).

C2ST uses sbibm's classifier (``orrery.sbi.diagnostics.c2st``).

    uv run python packages/sbi-flows/benchmarks/general_purpose.py           # 10^4 sims
    uv run python packages/sbi-flows/benchmarks/general_purpose.py --quick   # small, fast

The machine is shared: wall times are noisy (the load average is printed).
"""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from side_by_side import (  # tasks shared with the side-by-side benchmark
    gaussian_linear,
    gaussian_linear_reference,
    two_moons,
    two_moons_reference,
)

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
    kind, a, b = str(data["prior"]), float(data["prior_a"]), float(data["prior_b"])
    if kind == "normal":
        prior = torch.distributions.MultivariateNormal(torch.zeros(dim), a * torch.eye(dim))
    elif kind == "box":
        prior = BoxUniform(a * torch.ones(dim), b * torch.ones(dim))
    else:
        prior = torch.distributions.Independent(
            torch.distributions.StudentT(a * torch.ones(dim)), 1
        )
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


# ----------------------------------------------------------------------------- our tasks
FOLD_NOISE, FOLD_DISTRACTORS = 0.2, 15


def folded_5d(rng: np.random.Generator, n: int, dim: int = 5):
    theta = rng.uniform(-2.0, 2.0, size=(n, dim))
    signal = np.abs(theta) + rng.normal(0.0, FOLD_NOISE, size=(n, dim))
    return theta, np.concatenate([signal, rng.normal(size=(n, FOLD_DISTRACTORS))], axis=1)


def folded_5d_reference(rng, x_obs, n):
    """Per dimension: |theta| ~ N(x, 0.2^2) truncated to [0, 2], then a random sign."""
    dim = x_obs.shape[0] - FOLD_DISTRACTORS
    out = np.empty((n, dim))
    for j in range(dim):
        kept = np.empty(0)
        while len(kept) < n:
            draw = rng.normal(x_obs[j], FOLD_NOISE, size=4 * n)
            kept = np.concatenate([kept, draw[(draw >= 0) & (draw <= 2)]])
        out[:, j] = kept[:n] * rng.choice([-1.0, 1.0], size=n)
    return out


HEAVY_DF, HEAVY_NOISE = 3.0, 0.5


def heavy_tailed_3d(rng: np.random.Generator, n: int, dim: int = 3):
    theta = rng.standard_t(HEAVY_DF, size=(n, dim))
    return theta, theta + rng.normal(0.0, HEAVY_NOISE, size=(n, dim))


def heavy_tailed_3d_reference(rng, x_obs, n):
    """Rejection from the prior with acceptance exp(-|x - theta|^2 / (2 sigma^2)) <= 1."""
    out = np.empty((0, x_obs.shape[0]))
    while len(out) < n:
        cand = rng.standard_t(HEAVY_DF, size=(200_000, x_obs.shape[0]))
        accept = np.exp(-np.sum((x_obs - cand) ** 2, axis=1) / (2 * HEAVY_NOISE**2))
        out = np.concatenate([out, cand[rng.uniform(size=len(cand)) < accept]])
    return out[:n]


TASKS = {
    "gaussian_linear": (gaussian_linear, gaussian_linear_reference, None, ("normal", 0.1, 0)),
    "two_moons": (two_moons, two_moons_reference, [[-1, 1]] * 2, ("box", -1, 1)),
    "folded_5d": (folded_5d, folded_5d_reference, [[-2, 2]] * 5, ("box", -2, 2)),
    "heavy_tailed_3d": (
        heavy_tailed_3d,
        heavy_tailed_3d_reference,
        None,
        ("student_t", HEAVY_DF, 0),
    ),
}


# ----------------------------------------------------------------------------- runners
def run_recipe(theta, x, x_obs, bounds, num_samples, seed, epochs):
    import warnings

    from orrery.sbi import ConditionalFlowPosterior, ObservationBlock, SimulationDataset

    dataset = SimulationDataset.from_arrays(theta, x, bounds=bounds, seed=seed)
    overrides = {"seed": seed} if epochs is None else {"seed": seed, "num_epochs": epochs}
    posterior = ConditionalFlowPosterior.recommended(theta.shape[1], len(theta), **overrides)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        artifacts = posterior.fit(dataset)
    train_s = time.perf_counter() - start
    for w in caught:
        print(f"    warning: {w.message}")
    samples, rates = [], []
    for i, xo in enumerate(x_obs):
        draws = posterior.sample_posterior(
            [ObservationBlock("auxiliary", xo)], num_samples, seed=seed + i
        )
        samples.append(draws.to_physical())
        rates.append(draws.acceptance_rate)
    meta = artifacts.trainer_metadata
    note = f"compile {meta['compile_time_s']:.1f} s, acceptance {np.round(rates, 3).tolist()}"
    return np.stack(samples), train_s, meta["epochs_run"], note


def run_sbi(task, theta, x, x_obs, prior, num_samples, seed, workdir: Path):
    data, out, script = workdir / f"{task}_in.npz", workdir / f"{task}_out.npz", workdir / "s.py"
    script.write_text(SBI_SCRIPT)
    kind, a, b = prior
    np.savez(
        data,
        theta=theta,
        x=x,
        x_obs=x_obs,
        seed=seed,
        num_samples=num_samples,
        prior=kind,
        prior_a=a,
        prior_b=b,
    )
    cmd = ["uv", "run", "--isolated", "--no-project", "--python", "3.11"]
    cmd += ["--with", "sbi==0.27.0", "python", str(script), str(data), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    result = np.load(out)
    return result["samples"], float(result["train_s"]), int(result["epochs"]), ""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 sims, 1 obs, 300 draws")
    parser.add_argument("--num-simulations", type=int, default=10_000)
    parser.add_argument("--num-samples", type=int, default=10_000, help="draws per C2ST set")
    parser.add_argument("--num-observations", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=None, help="cap the recipe's epochs")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--skip-sbi", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=-1, help="C2ST folds fitted in parallel")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    if args.quick:
        args.num_simulations, args.num_samples, args.num_observations = 1_000, 300, 1
        args.epochs = args.epochs or 5

    from orrery.sbi.diagnostics import c2st

    print(f"load average at start: {os.getloadavg()}")
    fits, refs = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for t, task in enumerate(args.tasks):
            simulate, reference, bounds, prior = TASKS[task]
            rng = np.random.default_rng(args.seed + 100 * list(TASKS).index(task))
            theta, x = simulate(rng, args.num_simulations)
            _, x_obs = simulate(rng, args.num_observations)
            refs[task] = [reference(rng, xo, args.num_samples) for xo in x_obs]
            common = (theta, x, x_obs)
            recipe_args = (*common, bounds, args.num_samples, args.seed + t, args.epochs)
            runners = [("recipe", functools.partial(run_recipe, *recipe_args))]
            if not args.skip_sbi:
                sbi_args = (task, *common, prior, args.num_samples, args.seed, Path(tmp))
                runners.append(("sbi 0.27", functools.partial(run_sbi, *sbi_args)))
            for name, runner in runners:
                try:
                    samples, train_s, epochs, note = runner()
                except Exception as err:  # report and go on with the other side
                    print(f"[{task}/{name}] failed: {err}", file=sys.stderr)
                    continue
                print(f"[{task}/{name}] trained in {train_s:.1f} s, {epochs} epochs {note}")
                fits.append((task, name, samples, train_s, epochs))

    rows = []
    for task, name, samples, train_s, epochs in fits:
        scores = [
            c2st(r, s, seed=args.seed, n_jobs=args.jobs)
            for r, s in zip(refs[task], samples, strict=True)
        ]
        print(f"[{task}/{name}] C2ST per observation {np.round(scores, 3)}")
        rows.append((task, name, float(np.mean(scores)), train_s, epochs))

    print(
        f"\n{args.num_simulations} simulations, {args.num_observations} observation(s), "
        f"{args.num_samples} draws per C2ST set; load average at end {os.getloadavg()}"
    )
    print(f"{'task':<16} {'method':<9} {'C2ST':>6} {'fit s':>8} {'epochs':>6} {'time ratio':>10}")
    base = {t: s for t, n, _, s, _ in rows if n == "sbi 0.27"}
    for task, name, score, train_s, epochs in rows:
        ratio = train_s / base.get(task, float("nan"))
        print(f"{task:<16} {name:<9} {score:6.3f} {train_s:8.1f} {epochs:6d} {ratio:10.2f}")
    print("(fit s: wall time of fit, XLA compilation included; ratio = recipe / sbi)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
