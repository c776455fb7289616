"""Positive, multi-decade, count and heavy-tailed benchmark problems (issue 35).

Constructed problems, each with a log-normal prior on positive parameters and a
reference posterior computed on an adaptive grid in log-parameter space (two
parameters: a coarse grid over +-5 prior standard deviations finds the mass, a
fine 200 x 200 grid over its bounding box is sampled cell by cell with a uniform
jitter inside the cell; the likelihood is exact):

- ``ricker_lognormal``: deterministic Ricker growth ``N[t+1] = N[t] exp(r (1 - N[t]/K))``
  from ``N[0] = 1`` over 15 steps, observed with log-normal noise (sd 0.3): positive
  data spanning about two decades, multiplicative noise;
- ``seir_poisson``: SEIR epidemic (population 10^4, 5 initial infectious, incubation
  rate 0.5), new cases in 12 five-day bins, Poisson counts: zeros to thousands;
- ``light_curve``: a decaying transient ``F(t) = A exp(-t / tau) + 1`` at 25 epochs,
  flux from ~10^3 to ~1, Student-t(3) noise of scale ``sqrt(F)``: three decades
  with outliers.

And the two judging problems (never used to choose anything), written as
pure-NumPy simulators of ``sbibm``'s ``lotka_volterra`` (4 parameters, 20 log-normal
observations) and ``sir`` (2 parameters, 10 binomial counts), fixed-step RK4 instead
of Julia's adaptive solver; their observations 1-3 and reference posteriors are
``sbibm``'s stored ones (read in its isolated environment; no simulation there).
"""

from __future__ import annotations

import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import special, stats


@dataclass(frozen=True)
class PositiveTask:
    """A simulator ``(rng, theta) -> x``, its log-likelihood and log-normal prior."""

    simulate: Any
    log_likelihood: Any  # (theta (m, d), x_obs (k,)) -> (m,)
    loc: tuple[float, ...]
    scale: tuple[float, ...]

    @property
    def prior(self) -> tuple[str, np.ndarray, np.ndarray]:
        return ("lognormal", np.asarray(self.loc), np.asarray(self.scale))

    def sample_prior(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.exp(rng.normal(self.loc, self.scale, size=(n, len(self.loc))))


# ----------------------------------------------------------------------------- Ricker
RICKER_STEPS, RICKER_NOISE = 15, 0.3


def _ricker_path(theta: np.ndarray) -> np.ndarray:
    r, k = theta[:, :1], theta[:, 1:]
    n = np.ones_like(r)
    out = []
    for _ in range(RICKER_STEPS):
        n = n * np.exp(r * (1 - n / k))
        out.append(n)
    return np.concatenate(out, axis=1)


def ricker_simulate(rng, theta):
    path = _ricker_path(theta)
    return path * np.exp(rng.normal(0.0, RICKER_NOISE, size=path.shape))


def ricker_log_likelihood(theta, x_obs):
    resid = np.log(x_obs) - np.log(_ricker_path(theta))
    return -0.5 * np.sum(resid**2, axis=1) / RICKER_NOISE**2


# ----------------------------------------------------------------------------- SEIR
SEIR_N, SEIR_I0, SEIR_SIGMA, SEIR_BINS, SEIR_BIN_DAYS, SEIR_DT = 1e4, 5.0, 0.5, 12, 5, 0.1


def _seir_cases(theta: np.ndarray) -> np.ndarray:
    beta, gamma = theta[:, 0], theta[:, 1]
    s = np.full(len(theta), SEIR_N - SEIR_I0)
    e, i = np.zeros(len(theta)), np.full(len(theta), SEIR_I0)
    steps = round(SEIR_BIN_DAYS / SEIR_DT)
    cases = np.zeros((len(theta), SEIR_BINS))
    for b in range(SEIR_BINS):
        for _ in range(steps):  # explicit Euler, small step (the same in simulator and likelihood)
            infect = beta * s * i / SEIR_N * SEIR_DT
            onset = SEIR_SIGMA * e * SEIR_DT
            s, e, i = s - infect, e + infect - onset, i + onset - gamma * i * SEIR_DT
            cases[:, b] += onset
    return np.maximum(cases, 1e-9)


def seir_simulate(rng, theta):
    return rng.poisson(_seir_cases(theta)).astype(np.float64)


def seir_log_likelihood(theta, x_obs):
    lam = _seir_cases(theta)
    return np.sum(x_obs * np.log(lam) - lam - special.gammaln(x_obs + 1), axis=1)


# ----------------------------------------------------------------------------- light curve
LC_TIMES, LC_DF = np.arange(25.0), 3.0


def _flux(theta: np.ndarray) -> np.ndarray:
    return theta[:, :1] * np.exp(-LC_TIMES / theta[:, 1:]) + 1.0


def light_curve_simulate(rng, theta):
    f = _flux(theta)
    return f + np.sqrt(f) * rng.standard_t(LC_DF, size=f.shape)


def light_curve_log_likelihood(theta, x_obs):
    f = _flux(theta)
    sd = np.sqrt(f)
    return np.sum(stats.t.logpdf((x_obs - f) / sd, LC_DF) - np.log(sd), axis=1)


POSITIVE_TASKS = {
    "ricker_lognormal": PositiveTask(
        ricker_simulate, ricker_log_likelihood, (0.0, np.log(100.0)), (0.4, 1.0)
    ),
    "seir_poisson": PositiveTask(
        seir_simulate, seir_log_likelihood, (np.log(0.6), np.log(0.25)), (0.4, 0.3)
    ),
    "light_curve": PositiveTask(
        light_curve_simulate, light_curve_log_likelihood, (np.log(1000.0), np.log(3.0)), (0.7, 0.3)
    ),
}


def grid_posterior(task: PositiveTask, x_obs, n, rng, coarse=120, fine=200):
    """Exact-likelihood draws of a 2-parameter posterior from an adaptive log-space grid."""
    loc, scale = np.asarray(task.loc), np.asarray(task.scale)

    def log_post(lo, hi, m):
        axes = [np.linspace(lo[j], hi[j], m + 1) for j in range(2)]
        mids = [(a[1:] + a[:-1]) / 2 for a in axes]
        u = np.stack(np.meshgrid(*mids, indexing="ij"), -1).reshape(-1, 2)
        lp = task.log_likelihood(np.exp(u), x_obs) - 0.5 * np.sum(((u - loc) / scale) ** 2, 1)
        return u, np.where(np.isfinite(lp), lp, -np.inf), [a[1] - a[0] for a in axes]

    u, lp, width = log_post(loc - 5 * scale, loc + 5 * scale, coarse)
    keep = u[lp > lp.max() - 30]
    lo, hi = keep.min(0) - width, keep.max(0) + width
    u, lp, width = log_post(lo, hi, fine)
    p = np.exp(lp - lp.max())
    cells = rng.choice(len(u), size=n, p=p / p.sum())
    jitter = (rng.uniform(size=(n, 2)) - 0.5) * np.asarray(width)
    return np.exp(u[cells] + jitter)


def positive_task_data(name, *, seed, num_simulations, num_observations, num_samples):
    """``(theta, x, x_obs, references, prior)`` of a constructed problem."""
    task = POSITIVE_TASKS[name]
    rng = np.random.default_rng([seed, 35, list(POSITIVE_TASKS).index(name)])
    theta = task.sample_prior(rng, num_simulations)
    x = task.simulate(rng, theta)
    x_obs = task.simulate(rng, task.sample_prior(rng, 3))[:num_observations]
    refs = [grid_posterior(task, xo, num_samples, rng) for xo in x_obs]
    return theta, x, x_obs, refs, task.prior


# ----------------------------------------------------------------------------- judging
def _rk4(f, u, dt, steps, every):
    out = [u]
    for k in range(1, steps + 1):
        k1 = f(u)
        k2 = f(u + dt / 2 * k1)
        k3 = f(u + dt / 2 * k2)
        k4 = f(u + dt * k3)
        u = u + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        if k % every == 0:
            out.append(u)
    return np.stack(out, axis=-1)  # (m, state, saved)


def lotka_volterra_simulate(rng, theta, dt=0.005):
    """sbibm's lotka_volterra: u0 (30, 1), 20 days, states at t = 0, 2.1, ..., 18.9."""
    a, b, c, d = (theta[:, j : j + 1] for j in range(4))

    def f(u):
        x, y = u[:, :1], u[:, 1:]
        return np.concatenate([a * x - b * x * y, -c * y + d * x * y], axis=1)

    u0 = np.tile([30.0, 1.0], (len(theta), 1))
    every = round(2.1 / dt)
    path = _rk4(f, u0, dt, every * 9, every).reshape(len(theta), -1)  # prey then predator
    path = np.clip(np.nan_to_num(path, nan=1e-10), 1e-10, 1e4)
    return np.exp(np.log(path) + 0.1 * rng.normal(size=path.shape))


def sir_simulate(rng, theta, dt=0.05):
    """sbibm's sir: N 10^6, one infectious, I at days 0, 17, ..., 153, Binomial(1000, I/N)."""
    n_pop = 1e6
    beta, gamma = theta[:, :1], theta[:, 1:]

    def f(u):
        s, i = u[:, :1], u[:, 1:2]
        inf = beta * s * i / n_pop
        return np.concatenate([-inf, inf - gamma * i, gamma * i], axis=1)

    u0 = np.tile([n_pop - 1, 1.0, 0.0], (len(theta), 1))
    every = round(17 / dt)
    infected = _rk4(f, u0, dt, every * 9, every)[:, 1, :]
    return rng.binomial(1000, np.clip(infected / n_pop, 0.0, 1.0)).astype(np.float64)


JUDGE_TASKS = {
    "lotka_volterra": (lotka_volterra_simulate, (-0.125, -3.0, -0.125, -3.0), (0.5,) * 4),
    "sir": (sir_simulate, (np.log(0.4), np.log(0.125)), (0.5, 0.2)),
}

_SBIBM_REFS = textwrap.dedent(
    """
    import sys
    import numpy as np
    import sbibm

    name, k, m, out = sys.argv[1:5]
    task = sbibm.get_task(name)
    obs = range(1, int(k) + 1)
    x_obs = np.stack([task.get_observation(num_observation=i).numpy()[0] for i in obs])
    refs = np.stack(
        [task.get_reference_posterior_samples(num_observation=i).numpy()[: int(m)] for i in obs]
    )
    np.savez(out, x_obs=x_obs, refs=refs)
    """
)


def judge_task_data(name, *, seed, num_simulations, num_observations, num_samples, workdir):
    """``(theta, x, x_obs, references, prior)``: our simulations, sbibm's observations."""
    simulate, loc, scale = JUDGE_TASKS[name]
    rng = np.random.default_rng([seed, 36, list(JUDGE_TASKS).index(name)])
    theta = np.exp(rng.normal(loc, scale, size=(num_simulations, len(loc))))
    x = np.concatenate([simulate(rng, theta[i : i + 2000]) for i in range(0, len(theta), 2000)])
    script, out = Path(workdir) / "sbibm_refs.py", Path(workdir) / f"{name}_refs.npz"
    script.write_text(_SBIBM_REFS)
    cmd = ["uv", "run", "--isolated", "--no-project", "--python", "3.11", "--with"]
    cmd += ["sbibm==1.1.0", "python", str(script), name, str(num_observations)]
    cmd += [str(num_samples), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    d = np.load(out)
    prior = ("lognormal", np.asarray(loc), np.asarray(scale))
    return theta, x, d["x_obs"].astype(np.float64), list(d["refs"]), prior
