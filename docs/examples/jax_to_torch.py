"""From JAX to PyTorch through `orrery.interface` only.

The JAX side draws a regression data set from a Legendre-polynomial model and
fits the model's coefficients with an `orrery.ensemble` ensemble of
randomise-then-optimise MAP fits (for this linear-Gaussian model every member
is an exact posterior draw). It writes the data and the members, as
`orrery.interface.Draws`, as artifacts.

The torch side runs in a fresh process that never imports JAX: it reads both
artifacts, trains an `orrery.polymix` polynomial-chaos surrogate with a
full-covariance Gaussian parameter group on the same data, and compares its
variational posterior with the JAX ensemble and with the closed-form posterior.

Run: `uv run python docs/examples/jax_to_torch.py` (both sides, the torch side
in a subprocess), or `--torch-side DIR` for the torch side alone.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from orrery.interface import Draws, load_artifact, save_artifact

DATA_KIND = "orrery.examples.legendre_regression"
TRUE_COEFFICIENTS = (0.5, 1.0, -0.7, 0.3)


def exact_posterior(features: np.ndarray, y: np.ndarray, noise: float):
    """Posterior of the coefficients under a standard normal prior: mean and covariance."""
    precision = features.T @ features / noise**2 + np.eye(features.shape[1])
    cov = np.linalg.inv(precision)
    return cov @ features.T @ y / noise**2, cov


def jax_side(workdir: Path, *, n: int = 200, noise: float = 0.1, members: int = 64, seed: int = 0):
    """Simulate data with JAX, fit an RTO ensemble, write data and Draws artifacts."""
    import jax
    import jax.numpy as jnp
    import optax

    from orrery.ensemble import ensemble_map, to_draws

    degree = len(TRUE_COEFFICIENTS) - 1
    k_x, k_y, k_fit = jax.random.split(jax.random.key(seed), 3)
    x = jax.random.uniform(k_x, (n,), minval=-1.0, maxval=1.0)
    # Legendre P_0..P_degree by the three-term recurrence.
    cols = [jnp.ones_like(x), x]
    for k in range(1, degree):
        cols.append(((2 * k + 1) * x * cols[k] - k * cols[k - 1]) / (k + 1))
    features = jnp.stack(cols[: degree + 1], axis=1)
    y = features @ jnp.asarray(TRUE_COEFFICIENTS) + noise * jax.random.normal(k_y, (n,))

    def init_fn(key):
        k1, k2, k3 = jax.random.split(key, 3)
        return {
            "c": jax.random.normal(k1, (degree + 1,)),
            "eps_y": noise * jax.random.normal(k2, (n,)),
            "c0": jax.random.normal(k3, (degree + 1,)),
        }

    def log_joint(params, phi, target):
        sg = jax.lax.stop_gradient  # the perturbations are fixed per member
        resid = (target + sg(params["eps_y"]) - phi @ params["c"]) / noise
        return -0.5 * jnp.sum(resid**2), -0.5 * jnp.sum((params["c"] - sg(params["c0"])) ** 2)

    params, _ = ensemble_map(
        log_joint,
        init_fn,
        ensemble_size=members,
        num_epochs=1500,
        data=(features, y),
        seed=k_fit,
        optimizer=optax.adam(0.05),
    )
    to_draws({"coefficients": params["c"]}).save(workdir / "draws")
    save_artifact(
        workdir / "data",
        kind=DATA_KIND,
        config={"noise": noise, "degree": degree},
        arrays={"x": np.asarray(x), "y": np.asarray(y), "features": np.asarray(features)},
    )


def torch_side(workdir: Path, *, steps: int = 1500, seed: int = 0) -> dict[str, Any]:
    """Read the artifacts and train the torch surrogate; JAX is never imported here."""
    import torch

    from orrery.polymix import GaussianGroup, IIDGaussianPrior, StochasticModel
    from orrery.polymix.surrogate_models import PolynomialChaosExpansion

    data = load_artifact(workdir / "data", kind=DATA_KIND)
    draws = Draws.load(workdir / "draws")
    noise, degree = float(data.config["noise"]), int(data.config["degree"])
    x = torch.as_tensor(data.arrays["x"], dtype=torch.float64)[:, None]
    y = torch.as_tensor(data.arrays["y"], dtype=torch.float64)[:, None]

    torch.manual_seed(seed)
    pce = PolynomialChaosExpansion(num_inputs=1, degree=degree)
    group = GaussianGroup("coefficients", pce.num_params(), prior=IIDGaussianPrior(0.0, 1.0))
    model = StochasticModel(pce, [group]).to(torch.float64)
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-2)
    for _ in range(steps):
        optimiser.zero_grad()
        pred = model(x, num_samples=16)  # (16, N, 1)
        nll = 0.5 * (((y - pred) / noise) ** 2).sum((1, 2)).mean()
        (nll + model.distribution_loss()).backward()  # the negative ELBO
        optimiser.step()

    with torch.no_grad():
        q = group.variational_distribution()
        q_mean, q_cov = q.mean.numpy(), q.covariance_matrix.numpy()
        basis = pce.basis(torch.linspace(-1, 1, 50, dtype=torch.float64)[:, None]).numpy()

    members = draws["coefficients"].reshape(-1, degree + 1)
    exact_mean, exact_cov = exact_posterior(data.arrays["features"], data.arrays["y"], noise)
    return {
        "jax_imported": "jax" in sys.modules,
        "n_members": int(members.shape[0]),
        "exact_mean": exact_mean.tolist(),
        "exact_std": np.sqrt(np.diag(exact_cov)).tolist(),
        "ensemble_mean": members.mean(axis=0).tolist(),
        "ensemble_std": members.std(axis=0, ddof=1).tolist(),
        "torch_mean": q_mean.tolist(),
        "torch_std": np.sqrt(np.diag(q_cov)).tolist(),
        "predictive_max_abs_diff": float(
            np.max(np.abs(basis @ q_mean - basis @ members.mean(axis=0)))
        ),
    }


def run(workdir: Path) -> dict[str, Any]:
    """Both sides: JAX here, torch in a subprocess that reports back as JSON."""
    jax_side(workdir)
    proc = subprocess.run(
        [sys.executable, __file__, "--torch-side", str(workdir)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch-side", type=Path, help="run only the torch side on DIR")
    args = parser.parse_args()
    if args.torch_side is not None:
        print(json.dumps(torch_side(args.torch_side)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        result = run(Path(tmp))
    print(f"torch side imported jax: {result['jax_imported']}")
    for key in ("exact", "ensemble", "torch"):
        mean = ", ".join(f"{v:+.4f}" for v in result[f"{key}_mean"])
        std = ", ".join(f"{v:.4f}" for v in result[f"{key}_std"])
        print(f"{key:>9} posterior: mean [{mean}]  sd [{std}]")
    print(f"max |Δ predictive mean| torch vs JAX ensemble: {result['predictive_max_abs_diff']:.4f}")


if __name__ == "__main__":
    main()
