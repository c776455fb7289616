"""Worked example: a Bayesian neural surrogate with calibrated bands, and PCE Sobol indices.

Part 1 fits ``y = sin(3x) + 0.3x + noise`` on ``[-1, 1]`` with a neural-network
surrogate whose weights have a mean-field Gaussian posterior
(``IIDGaussianGroup``), trained by maximising the ELBO together with a learned
observation-noise level; its 90% posterior-predictive band is checked on
held-out points.

Part 2 fits a degree-8 Legendre PCE of the Ishigami function by least squares
and compares its Sobol indices with the analytic ones.

Run it with ``uv run python packages/polymix-torch/examples/worked_example.py``.
"""

from __future__ import annotations

import math

import torch

from orrery.polymix import (
    GaussianGroup,
    GaussianPrior,
    IIDGaussianGroup,
    NeuralNetwork,
    PolynomialChaosExpansion,
    StochasticModel,
    predictive_summary,
)


def _truth(x: torch.Tensor) -> torch.Tensor:
    return torch.sin(3 * x) + 0.3 * x


def regression_coverage(
    num_train: int = 1000, num_test: int = 1000, steps: int = 1000, seed: int = 0
) -> dict[str, float]:
    """Train the variational network and return held-out coverage of its 90% band."""
    torch.manual_seed(seed)
    noise = 0.1
    x = torch.rand(num_train, 1) * 2 - 1
    y = _truth(x) + noise * torch.randn_like(x)
    x_test = torch.rand(num_test, 1) * 2 - 1
    y_test = _truth(x_test) + noise * torch.randn_like(x_test)

    surrogate = NeuralNetwork(
        num_inputs=1, num_outputs=1, width=16, depth=1, activation=torch.nn.Tanh
    )
    # start narrow (pypolymix's default std 0.607 needs far more than 1000 steps here)
    group = IIDGaussianGroup("weights", surrogate.num_params(), init_scale=0.5, init_std=1e-2)
    model = StochasticModel(surrogate, [group])
    log_noise = torch.nn.Parameter(torch.tensor(-1.0))
    optimiser = torch.optim.Adam([*model.parameters(), log_noise], lr=1e-2)

    for _ in range(steps):
        optimiser.zero_grad()
        pred = model(x, num_samples=8)  # (8, N, 1)
        sigma = log_noise.exp()
        # expected Gaussian negative log-likelihood over the 8 weight draws
        nll = (0.5 * ((y - pred) / sigma) ** 2 + log_noise).sum((1, 2)).mean()
        loss = (nll + model.distribution_loss()) / num_train  # negative ELBO per point
        loss.backward()
        optimiser.step()

    summary = predictive_summary(
        model,
        x_test,
        num_samples=500,
        quantiles=(0.05, 0.95),
        noise_std=log_noise.exp().item(),
        seed=1,
    )
    lower, upper = summary.quantiles
    inside = ((y_test >= lower) & (y_test <= upper)).double().mean().item()
    rmse = (summary.mean - _truth(x_test)).pow(2).mean().sqrt().item()
    return {"coverage_90": inside, "noise_std": log_noise.exp().item(), "rmse_vs_truth": rmse}


def ishigami(x: torch.Tensor, a: float = 7.0, b: float = 0.1) -> torch.Tensor:
    """The Ishigami function on ``[-π, π]³``."""
    return torch.sin(x[:, 0]) + a * torch.sin(x[:, 1]) ** 2 + b * x[:, 2] ** 4 * torch.sin(x[:, 0])


def ishigami_sobol_analytic(a: float = 7.0, b: float = 0.1) -> tuple[list[float], list[float]]:
    """Analytic first-order and total Sobol indices of the Ishigami function."""
    pi4, pi8 = math.pi**4, math.pi**8
    v1 = 0.5 * (1 + b * pi4 / 5) ** 2
    v2 = a**2 / 8
    v13 = b**2 * pi8 * (1 / 18 - 1 / 50)
    var = v1 + v2 + v13
    return [v1 / var, v2 / var, 0.0], [(v1 + v13) / var, v2 / var, v13 / var]


def ishigami_sobol(degree: int = 8, num_points: int = 2000, seed: int = 0):
    """Fit a Legendre PCE to Ishigami by least squares; return its Sobol indices."""
    gen = torch.Generator().manual_seed(seed)
    u = torch.rand(num_points, 3, generator=gen, dtype=torch.float64) * 2 - 1  # on [-1, 1]
    y = ishigami(math.pi * u)
    pce = PolynomialChaosExpansion(num_inputs=3, degree=degree)
    coefficients = torch.linalg.lstsq(pce.basis(u), y.unsqueeze(-1)).solution.squeeze(-1)
    return pce.sobol_indices(coefficients)


def ishigami_sobol_posterior(
    degree: int = 8,
    num_points: int = 1000,
    noise: float = 0.2,
    num_samples: int = 2000,
    seed: int = 0,
):
    """Sobol indices with uncertainty: one set per posterior sample of the PCE coefficients.

    The coefficients get a Gaussian prior ``N(0, 10² I)`` and the observations
    Gaussian noise, so the posterior is Gaussian and known exactly; it is
    loaded into a ``GaussianGroup`` whose samples give a distribution of indices.
    """
    gen = torch.Generator().manual_seed(seed)
    u = torch.rand(num_points, 3, generator=gen, dtype=torch.float64) * 2 - 1
    y = ishigami(math.pi * u) + noise * torch.randn(num_points, generator=gen, dtype=torch.float64)
    pce = PolynomialChaosExpansion(num_inputs=3, degree=degree).to(torch.float64)
    p = pce.num_params()
    prior = GaussianPrior(torch.zeros(p, dtype=torch.float64), scale_tril=10.0 * torch.eye(p))
    basis = pce.basis(u)
    precision = basis.T @ basis / noise**2 + torch.eye(p, dtype=torch.float64) / 100.0
    cov = torch.cholesky_inverse(torch.linalg.cholesky(precision))
    mean = cov @ basis.T @ y / noise**2
    group = GaussianGroup("coefficients", p, prior=prior).to(torch.float64)
    tril = torch.linalg.cholesky(cov)
    group.set_scale_tril(tril)
    with torch.no_grad():
        group.mean.copy_(mean)
        torch.manual_seed(seed)
        samples = group.sample_parameters(num_samples)
    return pce.sobol_indices(samples)


def main() -> None:
    torch.set_num_threads(1)
    result = regression_coverage()
    print(
        f"1-D regression: 90% band covers {result['coverage_90']:.1%} of held-out points "
        f"(noise std {result['noise_std']:.3f}, RMSE vs truth {result['rmse_vs_truth']:.3f})"
    )
    sobol = ishigami_sobol()
    first, total = ishigami_sobol_analytic()
    for i in range(3):
        print(
            f"Ishigami x{i + 1}: S1 = {sobol.first_order[0, i]:.4f} (analytic {first[i]:.4f}), "
            f"ST = {sobol.total[0, i]:.4f} (analytic {total[i]:.4f})"
        )
    post = ishigami_sobol_posterior()
    lo, hi = torch.quantile(post.first_order[:, 0], torch.tensor([0.05, 0.95]).double(), dim=0)
    for i in range(3):
        print(f"noisy data, x{i + 1}: 90% interval of S1 = [{lo[i]:.4f}, {hi[i]:.4f}]")


if __name__ == "__main__":
    main()
