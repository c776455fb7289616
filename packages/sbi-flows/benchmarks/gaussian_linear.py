"""sbibm's gaussian_linear task: NPE with ConditionalFlowPosterior, scored by C2ST.

Task (sbibm): 10-D, prior N(0, 0.1 I), likelihood N(theta, 0.1 I); the posterior
is exactly N(x / 2, 0.05 I). We simulate 10^4 pairs, train, and compare posterior
draws with exact draws for a few observations by C2ST (0.5 is perfect; sbibm's
published NPE figure at 10^4 simulations is 0.552; our goal is <= 0.56).

    uv run python packages/sbi-flows/benchmarks/gaussian_linear.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from orrery.sbi import ConditionalFlowPosterior, ObservationBlock, SimulationDataset
from orrery.sbi.diagnostics import c2st

DIM, PRIOR_VAR, NOISE_VAR = 10, 0.1, 0.1


def simulate(n: int, seed: int, dim: int = DIM) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    theta = rng.normal(0.0, np.sqrt(PRIOR_VAR), size=(n, dim))
    return theta, theta + rng.normal(0.0, np.sqrt(NOISE_VAR), size=(n, dim))


def reference_posterior(x_obs: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Exact posterior draws: N(x * prior / (prior + noise), prior * noise / (prior + noise))."""
    mean = x_obs * PRIOR_VAR / (PRIOR_VAR + NOISE_VAR)
    var = PRIOR_VAR * NOISE_VAR / (PRIOR_VAR + NOISE_VAR)
    return np.random.default_rng(seed).normal(mean, np.sqrt(var), size=(n, x_obs.shape[0]))


def make_posterior(dim: int, num_epochs: int) -> ConditionalFlowPosterior:
    """A masked autoregressive flow (exact for Gaussians) behind a small encoder."""
    return ConditionalFlowPosterior(
        dim,
        flow_family="autoregressive",
        num_coupling_layers=5,
        autoregressive_transform_units=5,
        conditioner_depth=2,
        embedding_dim=32,
        photometry_embedding_dim=32,
        encoder_hidden_dim=32,
        parameter_space="physical",
        learning_rate=5e-4,
        batch_size=256,
        num_epochs=num_epochs,
        use_cosine_schedule=True,
        warmup_fraction=0.02,
        min_learning_rate=1e-5,
        early_stopping_patience=10,
        seed=0,
    )


def gaussian_kl(draws: np.ndarray, x_obs: np.ndarray) -> float:
    """KL(N(mean, cov) of the draws || exact posterior): a cheap companion to C2ST."""
    dim = x_obs.shape[0]
    var = PRIOR_VAR * NOISE_VAR / (PRIOR_VAR + NOISE_VAR)
    diff = draws.mean(0) - x_obs * PRIOR_VAR / (PRIOR_VAR + NOISE_VAR)
    cov = np.cov(draws.T)
    return 0.5 * float(
        np.trace(cov) / var
        + diff @ diff / var
        - dim
        - np.linalg.slogdet(cov)[1]
        + dim * np.log(var)
    )


def run(n_sims: int, num_epochs: int, n_obs: int, n_draws: int, dim: int = DIM) -> dict:
    theta, x = simulate(n_sims, seed=0, dim=dim)
    dataset = SimulationDataset.from_arrays(theta, x, validation_fraction=0.1, seed=0)
    posterior = make_posterior(dim, num_epochs)
    start = time.perf_counter()
    artifacts = posterior.fit(dataset)
    train_time = time.perf_counter() - start
    epochs = len(artifacts.history["train_loss"])
    print(
        f"gaussian_linear ({dim}-D), {n_sims} simulations, {epochs} epochs in "
        f"{train_time:.1f} s, best val loss {min(artifacts.history['val_loss']):.3f}",
        flush=True,
    )
    _, x_obs = simulate(n_obs, seed=123, dim=dim)
    scores = []
    for i, xo in enumerate(x_obs):
        enc = posterior.encode_observation([ObservationBlock("auxiliary", xo)])
        draws = posterior.sample_posterior(enc, n_draws, seed=i).to_physical()
        kl = gaussian_kl(draws, xo)
        score = c2st(reference_posterior(xo, n_draws, seed=1000 + i), draws, seed=i, n_jobs=-1)
        print(
            f"  observation {i}: Gaussian KL = {kl:.4f}, C2ST = {score:.3f} ({n_draws} draws each)",
            flush=True,
        )
        scores.append(score)
    return {"c2st": scores, "train_time_s": train_time, "epochs": epochs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 simulations, fewer epochs")
    parser.add_argument("--sims", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--obs", type=int, default=3)
    parser.add_argument("--draws", type=int, default=10_000, help="draws per C2ST set (sbibm)")
    args = parser.parse_args()
    if args.quick:
        n_sims, epochs, n_obs, n_draws = 2_000, 30, 1, 1_000
    else:
        n_sims, epochs, n_obs, n_draws = args.sims, args.epochs, args.obs, args.draws
    out = run(n_sims, epochs, n_obs, n_draws)
    mean = float(np.mean(out["c2st"]))
    print(f"mean C2ST = {mean:.3f}  (goal <= 0.56; sbibm NPE at 10^4: 0.552)")


if __name__ == "__main__":
    main()
