"""A short tour of orrery: one real thing with each package.

Run it with `uv run python docs/examples/quickstart.py`. Each section uses one
distribution and prints what it found; the sizes are small so the whole tour
takes well under a minute.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from orrery.interface import Draws


def tour_interface(workdir: Path) -> None:
    """Named samples, summarised, flattened and saved as an atomic artifact."""
    rng = np.random.default_rng(0)
    draws = Draws({"mu": rng.normal(1.0, 0.1, size=(4, 500)), "w": rng.normal(size=(4, 500, 2))})
    draws.save(workdir / "draws")
    back = Draws.load(workdir / "draws")
    matrix, names = back.to_matrix()
    print(f"[interface] {back}; matrix {matrix.shape} with columns {names}")
    print(back.summary())


def tour_parax() -> None:
    """A model with named, bounded parameters; least squares on its latent leaves."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    import orrery.parax as px
    from orrery.parax.parameters import Normal, Uniform

    class Line(px.Module):
        slope: px.Parameter
        intercept: px.Parameter

        def __call__(self, x):
            return self.slope * x + self.intercept

    x = jnp.linspace(0.0, 1.0, 50)
    y = 2.5 * x - 0.3
    line = Line(slope=Uniform(0.0, 5.0, value=1.0), intercept=Normal(0.0, 1.0))

    @eqx.filter_jit
    def step(model):
        dynamic, static = px.partition(model)
        loss = lambda d: jnp.mean((px.combine(d, static)(x) - y) ** 2)
        grads = jax.grad(loss)(dynamic)
        return px.combine(jax.tree.map(lambda p, g: p - 0.5 * g, dynamic, grads), static)

    for _ in range(300):
        line = step(line)
    values = {k: round(float(v), 3) for k, v in line.named_param_values().items()}
    print(f"[parax] fitted {values} (truth slope 2.5, intercept -0.3)")


def tour_lux() -> None:
    """The Cannon: train on a synthetic survey, then infer labels of held-out stars."""
    from orrery.lux import Cannon
    from orrery.lux.datasets import synthetic_survey

    survey = synthetic_survey(300, 60, snr=100, seed=0)
    train, test = slice(0, 250), slice(250, None)
    cannon = Cannon(label_size=3, output_size=60).fit(
        survey.labels[train], survey.spectra[train], survey.ivar[train]
    )
    result = cannon.infer_labels(survey.spectra[test], survey.ivar[test])
    rmse = np.sqrt(np.mean((np.asarray(result.labels) - survey.labels[test]) ** 2, axis=0))
    per_label = ", ".join(f"{n} {v:.3g}" for n, v in zip(survey.label_names, rmse, strict=True))
    print(f"[lux] Cannon test-step RMSE per label: {per_label}")


def tour_ensemble() -> None:
    """Sixteen MAP fits of a straight line at once, summarised across members."""
    import jax
    import jax.numpy as jnp
    import optax

    from orrery.ensemble import ensemble_map, to_draws

    x = jnp.linspace(-1.0, 1.0, 64)
    y = 0.7 * x + 0.2 + 0.05 * jax.random.normal(jax.random.key(0), x.shape)

    def log_joint(p, xb, yb):
        loglik = -0.5 * jnp.sum(((yb - p["a"] * xb - p["b"]) / 0.05) ** 2)
        return loglik, -0.5 * (p["a"] ** 2 + p["b"] ** 2)

    params, losses = ensemble_map(
        log_joint,
        lambda k: {"a": jax.random.normal(k), "b": jnp.zeros(())},
        ensemble_size=16,
        num_epochs=300,
        data=(x, y),
        seed=jax.random.key(1),
        optimizer=optax.adam(0.05),
    )
    means = {k: round(float(v), 3) for k, v in to_draws(params).mean().items()}
    print(f"[ensemble] 16 members, final loss {float(losses[:, -1].mean()):.2f}, means {means}")


def tour_sbi() -> None:
    """An amortized posterior for a 2-parameter Gaussian simulator."""
    from orrery.sbi import ConditionalFlowPosterior, ObservationBlock, SimulationDataset

    rng = np.random.default_rng(0)
    theta = rng.uniform(-1.0, 1.0, size=(4000, 2))
    x = theta + 0.1 * rng.standard_normal(theta.shape)
    posterior = ConditionalFlowPosterior(
        2,
        embedding_dim=8,
        hidden_dim=32,
        num_coupling_layers=3,
        num_epochs=15,
        batch_size=128,
        parameter_space="cube",
        learning_rate=3e-3,
    )
    posterior.fit(SimulationDataset.from_arrays(theta, x, bounds=[[-1, 1], [-1, 1]]))
    observed = [ObservationBlock("auxiliary", np.array([0.3, -0.5]))]
    draws = posterior.sample_posterior(observed, 2000).to_draws()
    print("[sbi] posterior for x = (0.3, -0.5), noise 0.1 (exact: mean x, sd 0.1):")
    print(draws.summary())


def tour_polymix() -> None:
    """A PCE surrogate of the Ishigami function and its Sobol indices (torch)."""
    import torch

    from orrery.polymix import PolynomialChaosExpansion

    gen = torch.Generator().manual_seed(0)
    u = torch.rand(1500, 3, generator=gen, dtype=torch.float64) * 2 - 1
    x = torch.pi * u
    y = torch.sin(x[:, 0]) + 7 * torch.sin(x[:, 1]) ** 2 + 0.1 * x[:, 2] ** 4 * torch.sin(x[:, 0])
    pce = PolynomialChaosExpansion(num_inputs=3, degree=8)
    coefficients = torch.linalg.lstsq(pce.basis(u), y[:, None]).solution[:, 0]
    sobol = pce.sobol_indices(coefficients)
    print(
        f"[polymix] Ishigami first-order Sobol {sobol.first_order[0].numpy().round(3)} "
        "(analytic 0.314, 0.442, 0)"
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tour_interface(Path(tmp))
    tour_parax()
    tour_lux()
    tour_ensemble()
    tour_sbi()
    tour_polymix()


if __name__ == "__main__":
    main()
