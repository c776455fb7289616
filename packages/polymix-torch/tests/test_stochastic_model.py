import numpy as np
import pytest
import torch
from torch.func import functional_call

from orrery.interface import ConfigError, ShapeError
from orrery.polymix import (
    DeterministicGroup,
    GaussianGroup,
    IIDGaussianGroup,
    LangevinGroup,
    LowRankGaussianGroup,
    NeuralNetwork,
    PolynomialChaosExpansion,
    StochasticModel,
)


def _mixed_model() -> StochasticModel:
    surrogate = NeuralNetwork(num_inputs=2, num_outputs=1, width=8, depth=2)  # 105 parameters
    groups = [
        IIDGaussianGroup("first", 24),
        GaussianGroup("second", 30),
        LowRankGaussianGroup("third", 42, rank=3),
        DeterministicGroup("last", 9),
    ]
    return StochasticModel(surrogate, groups)


def test_forward_shapes_and_parameter_counts():
    model = _mixed_model()
    assert model.num_params() == 105
    assert model.num_inputs == 2 and model.num_outputs == 1
    assert model(torch.randn(5, 2)).shape == (1, 5, 1)
    assert model(torch.randn(5, 2), num_samples=8).shape == (8, 5, 1)
    assert model.sample_parameters(4).shape == (4, 105)
    slices = model.group_slices()
    assert slices["third"] == slice(54, 96)


def test_sample_parameters_concatenates_groups_in_order():
    model = _mixed_model()
    theta = model.sample_parameters(3)
    last = model.parameter_groups[3]
    torch.testing.assert_close(theta[:, 96:], last.params.detach().expand(3, -1))
    torch.manual_seed(5)
    theta = model.sample_parameters(2)
    torch.manual_seed(5)
    parts = [g.sample_parameters(2) for g in model.parameter_groups]
    torch.testing.assert_close(theta, torch.cat(parts, -1))


def test_forward_equals_surrogate_on_sampled_parameters():
    model = _mixed_model()
    x = torch.randn(6, 2)
    torch.manual_seed(3)
    y = model(x, num_samples=4)
    torch.manual_seed(3)
    torch.testing.assert_close(y, model.surrogate_model(x, model.sample_parameters(4)))


def test_distribution_loss_is_sum_over_groups():
    model = _mixed_model()
    want = sum(g.distribution_loss() for g in model.parameter_groups)
    torch.testing.assert_close(model.distribution_loss(), want)


def test_construction_errors():
    surrogate = NeuralNetwork(num_inputs=2, num_outputs=1, width=8, depth=2)
    with pytest.raises(ConfigError, match=r"a=100 \+ b=4 = 104 do not match .* 105"):
        StochasticModel(surrogate, [IIDGaussianGroup("a", 100), IIDGaussianGroup("b", 4)])
    with pytest.raises(ConfigError, match="distinct"):
        StochasticModel(surrogate, [IIDGaussianGroup("a", 100), IIDGaussianGroup("a", 5)])
    with pytest.raises(ConfigError, match="parameter_groups"):
        StochasticModel(surrogate, [])
    with pytest.raises(ConfigError, match="surrogate"):
        StochasticModel(torch.nn.Linear(2, 1), [IIDGaussianGroup("a", 105)])


def test_forward_input_validation():
    model = _mixed_model()
    with pytest.raises(ShapeError, match=r"x: expected shape \(N, 2\)"):
        model(torch.randn(5, 3))
    with pytest.raises(ConfigError, match="num_samples"):
        model(torch.randn(5, 2), num_samples=0)
    with pytest.raises(ConfigError, match="dtype"):
        model(torch.randn(5, 2, dtype=torch.float64))
    # array-likes are converted to the model's dtype
    assert model(np.zeros((3, 2)), num_samples=2).dtype == torch.float32


def test_float64_end_to_end_with_gradients_wrt_x():
    model = StochasticModel(
        PolynomialChaosExpansion(num_inputs=2, degree=3),
        [IIDGaussianGroup("c", 10)],
    ).to(torch.float64)
    x = (torch.rand(4, 2, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    y = model(x, num_samples=3)
    assert y.dtype == torch.float64
    (gx,) = torch.autograd.grad(y.sum(), x)
    assert torch.isfinite(gx).all() and gx.abs().sum() > 0


def test_gradcheck_through_reparameterised_sampling():
    model = StochasticModel(
        NeuralNetwork(1, 1, width=3, activation=torch.nn.Tanh),
        [GaussianGroup("a", 6), LowRankGaussianGroup("b", 4, rank=2)],
    ).to(torch.float64)
    names = [n for n, _ in model.named_parameters()]
    values = tuple(p.detach().clone().requires_grad_(True) for p in model.parameters())
    x = torch.randn(3, 1, dtype=torch.float64, requires_grad=True)

    def f(x, *params):
        torch.manual_seed(11)  # the same noise on every evaluation
        out = functional_call(
            model, dict(zip(names, params, strict=True)), (x,), {"num_samples": 2}
        )
        return out

    assert torch.autograd.gradcheck(f, (x, *values))


def test_training_reduces_the_loss():
    torch.manual_seed(0)
    x = torch.linspace(-1, 1, 32).unsqueeze(-1)
    y = x**2
    model = StochasticModel(PolynomialChaosExpansion(1, degree=2), [IIDGaussianGroup("c", 3)])
    opt = torch.optim.Adam(model.parameters(), lr=0.05)

    def loss_fn():
        return (model(x, num_samples=8) - y).square().mean() + 1e-3 * model.distribution_loss()

    first = loss_fn().item()
    for _ in range(150):
        opt.zero_grad()
        loss_fn().backward()
        opt.step()
    assert loss_fn().item() < 0.2 * first


def test_langevin_group_inside_stochastic_model():
    surrogate = PolynomialChaosExpansion(1, degree=2)
    group = LangevinGroup("c", 3, NeuralNetwork(3, 3, width=4), num_diffusion_steps=3)
    model = StochasticModel(surrogate, [group])
    y = model(torch.zeros(4, 1), num_samples=5)
    assert y.shape == (5, 4, 1)
    (y.sum() + model.distribution_loss()).backward()
    assert group.surrogate_params.grad is not None


@pytest.mark.gpu
def test_model_and_summaries_on_cuda():
    from orrery.polymix import predictive_summary

    model = _mixed_model().to("cuda", torch.float64)
    x = torch.randn(5, 2, device="cuda", dtype=torch.float64)
    assert model(x, num_samples=3).device.type == "cuda"
    assert model.distribution_loss().device.type == "cuda"
    assert predictive_summary(model, x, num_samples=8, seed=0).mean.device.type == "cuda"
