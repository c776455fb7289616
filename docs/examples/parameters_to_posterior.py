"""A parax physical model as the prior and simulator of an amortized posterior.

`orrery.parax` describes the model: named parameters with bounds and prior
distributions. Its prior draws (`Module.sampled`, vmapped) and its forward
model (`Module.with_params`, vmapped) generate the simulations; its bounds
become the posterior's cube space and its flat parameter names the posterior's
parameter names. `orrery.sbi` learns the posterior; the draws come back as
`orrery.interface.Draws` under the module's names, and the posterior mean goes
straight back into the module with `with_params`.

Run: `uv run python docs/examples/parameters_to_posterior.py`.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import orrery.parax as px
from orrery.interface import Draws
from orrery.parax.parameters import Uniform
from orrery.sbi import ConditionalFlowPosterior, ObservationBlock, SimulationDataset


class DecayCurve(px.Module):
    """A decaying signal ``amplitude · exp(-rate · t) + offset`` sampled at fixed times."""

    amplitude: px.Parameter
    rate: px.Parameter
    offset: px.Parameter

    def __call__(self, t: jax.Array) -> jax.Array:
        return self.amplitude * jnp.exp(-self.rate * t) + self.offset


def prior_model() -> DecayCurve:
    return DecayCurve(
        amplitude=Uniform(0.5, 2.0), rate=Uniform(0.2, 1.5), offset=Uniform(-0.2, 0.2)
    )


@dataclasses.dataclass
class Config:
    n_simulations: int = 8000
    n_times: int = 20
    noise: float = 0.05
    num_epochs: int = 30
    n_posterior_samples: int = 2000
    n_observations: int = 20
    seed: int = 0


def simulate(model: DecayCurve, key: jax.Array, n: int, times: jax.Array, noise: float):
    """Draw ``n`` parameter vectors from the module's priors and simulate noisy curves."""
    k_prior, k_noise = jax.random.split(key)
    theta = jax.vmap(lambda k: model.sampled(k).flat_param_values())(jax.random.split(k_prior, n))
    curves = jax.vmap(lambda th: model.with_params(th)(times))(theta)
    return theta, curves + noise * jax.random.normal(k_noise, curves.shape)


def run(cfg: Config) -> dict[str, Any]:
    model = prior_model()
    names = model.flat_param_names()
    bounds = np.stack([np.asarray(p.bounds) for p in model.flat_params()])
    times = jnp.linspace(0.0, 5.0, cfg.n_times)
    key_sim, key_obs = jax.random.split(jax.random.key(cfg.seed))
    theta, curves = simulate(model, key_sim, cfg.n_simulations, times, cfg.noise)

    dataset = SimulationDataset.from_arrays(
        np.asarray(theta), np.asarray(curves), bounds=bounds, parameter_names=names
    )
    posterior = ConditionalFlowPosterior(
        parameter_dim=len(names),
        parameter_space="cube",
        embedding_dim=16,
        hidden_dim=48,
        num_coupling_layers=3,
        batch_size=256,
        learning_rate=2e-3,
        num_epochs=cfg.num_epochs,
        seed=cfg.seed,
    )
    posterior.fit(dataset)

    # Held-out observations: the first is examined in detail, all are scored.
    true_theta, observed = simulate(model, key_obs, cfg.n_observations, times, cfg.noise)
    true_theta, observed = np.asarray(true_theta), np.asarray(observed)
    blocks = [[ObservationBlock("auxiliary", o)] for o in observed]
    encoded = posterior.batch_encode_observation(blocks)
    batch = posterior.batch_sample_posterior(encoded, cfg.n_posterior_samples, base_seed=1)
    batch = np.asarray(posterior.space.to_physical(jnp.asarray(batch)))
    z = np.abs(batch.mean(axis=1) - true_theta) / batch.std(axis=1, ddof=1)

    samples = posterior.sample_posterior(encoded[0], cfg.n_posterior_samples)
    draws: Draws = samples.to_draws()
    mean = np.array([float(draws.mean()[n]) for n in names])
    fitted = model.with_params(dict(zip(names, mean, strict=True)))
    truth = model.with_params(true_theta[0])
    return {
        "names": names,
        "posterior_names": list(samples.parameter_names),
        "draws": draws,
        "truth": true_theta[0],
        "posterior_mean": mean,
        "posterior_std": np.array([float(draws.std()[n]) for n in names]),
        "bounds": bounds,
        "fitted_values": np.asarray(fitted.flat_param_values()),
        "residual_rms": float(jnp.sqrt(jnp.mean((fitted(times) - truth(times)) ** 2))),
        "z_scores": z,
    }


def main() -> None:
    defaults = Config()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for f in dataclasses.fields(Config):
        parser.add_argument(
            "--" + f.name.replace("_", "-"),
            type=type(getattr(defaults, f.name)),
            default=getattr(defaults, f.name),
        )
    result = run(Config(**vars(parser.parse_args())))
    print(result["draws"].summary())
    for name, t, m, s in zip(
        result["names"],
        result["truth"],
        result["posterior_mean"],
        result["posterior_std"],
        strict=True,
    ):
        print(f"{name:>10}: truth {t:.3f}, posterior {m:.3f} ± {s:.3f}")
    print(f"noise-free curve RMS error at the posterior mean: {result['residual_rms']:.4f}")
    z = result["z_scores"]
    print(
        f"{z.shape[0]} held-out curves: |posterior mean - truth| / sd below 2 "
        f"for {np.mean(z < 2):.0%}"
    )


if __name__ == "__main__":
    main()
