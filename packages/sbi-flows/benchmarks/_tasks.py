"""Benchmark tasks and the `sbi` 0.27 runner shared by the sbi-flows benchmarks.

Every task has an exact reference posterior:

- ``gaussian_linear`` (sbibm, 10-D): prior N(0, 0.1 I), x = theta + N(0, 0.1 I);
  closed form;
- ``two_moons`` (sbibm, 2-D): an exact inverse sampler;
- ``folded_5d`` (ours): prior U(-2, 2)^5, ``x = |theta| + N(0, 0.2^2)`` plus 15
  pure-noise distractor features (20-D observation); 32 modes, each dimension's
  posterior a truncated normal on ``|theta|`` with a random sign;
- ``heavy_tailed_3d`` (ours): prior Student-t(3)^3, ``x = theta + N(0, 0.5^2)``;
  exact rejection sampling from the prior (the likelihood is bounded by its peak).

``sbi`` runs with its defaults (NPE, MAF, default training loop) in an isolated
environment (``uv run --isolated --no-project --with sbi==0.27.0``), on the same
simulations, and times its own training.
"""

from __future__ import annotations

import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    kind = str(data["prior"])
    a, b = (torch.as_tensor(data[k], dtype=torch.float32) for k in ("prior_a", "prior_b"))
    if kind == "normal":
        prior = torch.distributions.MultivariateNormal(torch.zeros(dim), a * torch.eye(dim))
    elif kind == "mvn":
        prior = torch.distributions.MultivariateNormal(a, b)
    elif kind == "box":
        prior = BoxUniform(a * torch.ones(dim), b * torch.ones(dim))
    elif kind == "lognormal":
        prior = torch.distributions.Independent(torch.distributions.LogNormal(a, b), 1)
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


# ----------------------------------------------------------------------------- sbibm tasks
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


@dataclass(frozen=True)
class Task:
    """A simulator, its exact reference sampler, the prior's box and the prior for sbi.

    ``prior`` is ``(kind, a, b)``: ``("normal", variance, _)``, ``("box", low, high)``,
    ``("student_t", df, _)`` or ``("lognormal", loc, scale)`` (of the logarithm).
    """

    simulate: Any
    reference: Any
    bounds: Any
    prior: tuple[str, float, float]


TASKS = {
    "gaussian_linear": Task(gaussian_linear, gaussian_linear_reference, None, ("normal", 0.1, 0)),
    "two_moons": Task(two_moons, two_moons_reference, [[-1, 1]] * 2, ("box", -1, 1)),
    "folded_5d": Task(folded_5d, folded_5d_reference, [[-2, 2]] * 5, ("box", -2, 2)),
    "heavy_tailed_3d": Task(
        heavy_tailed_3d, heavy_tailed_3d_reference, None, ("student_t", HEAVY_DF, 0)
    ),
}


def task_data(
    name: str, *, seed: int, num_simulations: int, num_observations: int, num_samples: int
):
    """``(theta, x, x_obs, references)`` of a task.

    Seeded by the task's place in `TASKS`, so a subset run sees the same data as a
    full one, and both benchmarks see the same simulations.
    """
    task = TASKS[name]
    rng = np.random.default_rng(seed + 100 * list(TASKS).index(name))
    theta, x = task.simulate(rng, num_simulations)
    _, x_obs = task.simulate(rng, max(num_observations, 3))
    x_obs = x_obs[:num_observations]
    references = [task.reference(rng, xo, num_samples) for xo in x_obs]
    return theta, x, x_obs, references


def run_sbi(name, theta, x, x_obs, num_samples, seed, workdir: Path, prior=None):
    """``sbi`` 0.27's NPE with its defaults: ``(samples (obs, n, d), train_s, epochs)``.

    ``prior`` is ``(kind, a, b)`` as in `Task` (also ``("mvn", loc, cov)``); by
    default the task's.
    """
    data, out = workdir / f"{name}_in.npz", workdir / f"{name}_out.npz"
    script = workdir / "sbi_npe.py"
    script.write_text(SBI_SCRIPT)
    kind, a, b = TASKS[name].prior if prior is None else prior
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
    return result["samples"], float(result["train_s"]), int(result["epochs"])
