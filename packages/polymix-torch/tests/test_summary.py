import numpy as np
import pytest
import torch

from orrery.interface import ConfigError, Draws, ShapeError
from orrery.polymix import (
    DeterministicGroup,
    IIDGaussianGroup,
    NeuralNetwork,
    PolynomialChaosExpansion,
    StochasticModel,
    predictive_summary,
    to_draws,
)


def _linear_model() -> StochasticModel:
    # y = c0 + c1 * x with c ~ N(mean, std²): predictive mean/std are known exactly
    model = StochasticModel(PolynomialChaosExpansion(1, degree=1), [IIDGaussianGroup("c", 2)])
    group = model.parameter_groups[0]
    with torch.no_grad():
        group.mean.copy_(torch.tensor([1.0, 2.0]))
        group.log_std.copy_(torch.log(torch.tensor([0.5, 0.25])))
    return model.to(torch.float64)


def test_predictive_summary_matches_closed_form():
    model = _linear_model()
    x = torch.linspace(-1, 1, 5, dtype=torch.float64).unsqueeze(-1)
    s = predictive_summary(model, x, num_samples=40_000, quantiles=(0.05, 0.5, 0.95), seed=0)
    mean = 1.0 + 2.0 * x
    std = torch.sqrt(0.5**2 + (0.25 * x) ** 2)
    assert s.mean.shape == (5, 1) and s.std.shape == (5, 1) and s.quantiles.shape == (3, 5, 1)
    assert s.samples.shape == (40_000, 5, 1)
    torch.testing.assert_close(s.mean, mean, atol=0.02, rtol=0)
    torch.testing.assert_close(s.std, std, rtol=0.03, atol=0)
    torch.testing.assert_close(s.quantiles[1], mean, atol=0.02, rtol=0)
    torch.testing.assert_close(s.quantiles[2], mean + 1.6449 * std, atol=0.03, rtol=0)
    torch.testing.assert_close(s.levels, torch.tensor([0.05, 0.5, 0.95], dtype=torch.float64))


def test_predictive_summary_noise_seed_and_no_grad():
    model = _linear_model()
    x = torch.zeros(3, 1, dtype=torch.float64)
    a = predictive_summary(model, x, num_samples=20_000, noise_std=1.0, seed=1)
    b = predictive_summary(model, x, num_samples=20_000, noise_std=1.0, seed=1)
    torch.testing.assert_close(a.samples, b.samples)
    assert not a.samples.requires_grad
    torch.testing.assert_close(
        a.std, torch.full((3, 1), (0.25 + 1.0) ** 0.5).double(), rtol=0.03, atol=0
    )
    # seeding does not disturb the global stream
    torch.manual_seed(4)
    first = torch.rand(1)
    torch.manual_seed(4)
    predictive_summary(model, x, num_samples=10, seed=9)
    torch.testing.assert_close(torch.rand(1), first)


def test_predictive_summary_validation():
    model = _linear_model()
    x = torch.zeros(3, 1, dtype=torch.float64)
    with pytest.raises(ConfigError, match="num_samples"):
        predictive_summary(model, x, num_samples=1)
    with pytest.raises(ConfigError, match="quantiles"):
        predictive_summary(model, x, quantiles=(0.5, 1.5))
    with pytest.raises(ShapeError, match="x"):
        predictive_summary(model, torch.zeros(3, 2, dtype=torch.float64))
    with pytest.raises(ShapeError, match="noise_std"):
        predictive_summary(model, x, noise_std=torch.ones(4))
    with pytest.raises(ConfigError, match="model"):
        predictive_summary(torch.nn.Linear(1, 1), x)


def test_to_draws_names_shapes_and_values():
    surrogate = NeuralNetwork(1, 1, width=2)  # 7 parameters
    model = StochasticModel(
        surrogate, [IIDGaussianGroup("hidden", 4), DeterministicGroup("out", 3)]
    )
    draws = to_draws(model, num_samples=500, seed=0)
    assert isinstance(draws, Draws)
    assert draws.names == ["hidden", "out"]
    assert draws["hidden"].shape == (1, 500, 4) and draws["out"].shape == (1, 500, 3)
    assert draws["hidden"].dtype == np.float64
    np.testing.assert_allclose(
        draws["out"][0, 0], model.parameter_groups[1].params.detach().numpy()
    )
    group = model.parameter_groups[0]
    # std 0.607 (pypolymix's start), 500 draws: standard error 0.027
    np.testing.assert_allclose(draws.mean()["hidden"], group.mean.detach().numpy(), atol=0.15)
    matrix, names = draws.to_matrix()
    assert matrix.shape == (500, 7) and names[:2] == ["hidden[0]", "hidden[1]"]
    again = to_draws(model, num_samples=500, seed=0)
    np.testing.assert_array_equal(again["hidden"], draws["hidden"])
    with pytest.raises(ConfigError, match="num_samples"):
        to_draws(model, num_samples=0)
