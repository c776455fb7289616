"""pypolymix 0.1.9 code and checkpoints run unchanged on `orrery.polymix`.

Construction with upstream's names, order and defaults; upstream's polynomial
chaos layout; initial values; a state dict with upstream's keys and shapes
(written out by hand here) loading with `strict=True`; and the reference's
documented examples, run with only the import swapped.
"""

import doctest
import importlib
import math

import pytest
import torch
import torch.distributions as td
import torch.nn.functional as F

import orrery.polymix as polymix
from orrery.interface import ConfigError
from orrery.polymix import (
    DeterministicGroup,
    GatingNetwork,
    GaussianGroup,
    GaussianPrior,
    IIDGaussianGroup,
    IIDGaussianPrior,
    LangevinGroup,
    LaplacePrior,
    LowRankGaussianGroup,
    MixtureOfExperts,
    NeuralNetwork,
    PolynomialChaosExpansion,
    StochasticModel,
    legendre_polynomial_p,
)

# -- module paths --------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "names"),
    [
        ("parameter_groups.base", ["ParameterGroup"]),
        ("parameter_groups.deterministic", ["DeterministicGroup"]),
        (
            "parameter_groups.gaussian",
            ["IIDGaussianGroup", "GaussianGroup", "LowRankGaussianGroup"],
        ),
        ("parameter_groups.langevin", ["LangevinGroup"]),
        ("priors.base", ["Prior"]),
        ("priors.common", ["IIDGaussianPrior", "GaussianPrior", "LaplacePrior"]),
        ("surrogate_models.base", ["SurrogateModel"]),
        ("surrogate_models.mixture", ["GatingNetwork", "MixtureOfExperts"]),
        ("surrogate_models.neural_network", ["NeuralNetwork"]),
        (
            "surrogate_models.polynomial_chaos",
            ["PolynomialChaosExpansion", "legendre_polynomial_p"],
        ),
        ("stochastic_model", ["StochasticModel"]),
    ],
)
def test_upstream_module_paths_import(module, names):
    mod = importlib.import_module(f"orrery.polymix.{module}")
    for name in names:
        assert hasattr(mod, name), (module, name)


def test_legendre_polynomial_p():
    from orrery.polymix.surrogate_models.polynomial_chaos import legendre_polynomial_p

    x = torch.tensor([-1.0, 0.0, 0.5, 1.0])
    torch.testing.assert_close(legendre_polynomial_p(x, 0), torch.ones(4))
    torch.testing.assert_close(legendre_polynomial_p(x, 3), (5 * x**3 - 3 * x) / 2)
    with pytest.raises(ValueError, match="n"):
        legendre_polynomial_p(x, -1)


# -- constructors, keywords, defaults -----------------------------------------


def test_stochastic_model_keywords_and_single_group():
    pce = PolynomialChaosExpansion(1, 1, 5)  # upstream positional order
    assert pce.degree == 5 and pce.num_params() == 6
    group = IIDGaussianGroup("c", pce.num_params())
    model = StochasticModel(surrogate_model=pce, parameter_groups=group)
    assert model.surrogate_model is pce and list(model.parameter_groups) == [group]
    assert model(torch.zeros(3, 1), num_samples=2).shape == (2, 3, 1)
    with pytest.raises(ValueError, match="num_params"):
        StochasticModel(pce, IIDGaussianGroup("c", 5))


def test_surrogate_defaults():
    net = NeuralNetwork(3)
    assert (net.num_outputs, net.width, net.depth) == (1, 16, 1)
    pce = PolynomialChaosExpansion(2)
    assert (pce.num_outputs, pce.degree, pce.num_terms) == (1, 3, 10)
    # pypolymix's default activation is the functional relu
    relu = NeuralNetwork(2, 1, width=8, depth=2, activation=F.relu)
    assert relu.num_params() == 105
    params, x = torch.randn(3, 105), torch.randn(5, 2)
    torch.testing.assert_close(relu(x, params), NeuralNetwork(2, 1, width=8, depth=2)(x, params))
    assert relu.param_slices[0] == (0, 16, (2, 8)) and relu.param_slices[1] == (16, 24, (8,))


def test_mixture_keywords_param_slices_and_expert_shape():
    experts = [NeuralNetwork(num_inputs=1, num_outputs=2, width=4) for _ in range(3)]
    gating = GatingNetwork(num_inputs=1, num_experts=3, width=5)
    moe = MixtureOfExperts(experts=experts, gating_network=gating)
    size = experts[0].num_params()
    assert moe.param_slices == [
        (0, size),
        (size, 2 * size),
        (2 * size, 3 * size),
        (3 * size, 3 * size + gating.num_params()),
    ]
    x, params = torch.randn(7, 1), torch.randn(4, moe.num_params())
    out = moe.get_expert_outputs(x, params)
    assert out.shape == (4, 3, 7, 2)  # (S, E, N, out)
    for e in range(3):
        start, end = moe.param_slices[e]
        torch.testing.assert_close(out[:, e], experts[e](x, params[:, start:end]))
    weights = moe.get_gating_weights(x, params)
    torch.testing.assert_close(moe(x, params), torch.einsum("tbe,tebo->tbo", weights, out))


def test_group_keywords_and_defaults():
    assert IIDGaussianGroup("a", 2).kl_num_mc_samples == 64
    g = GaussianGroup("b", 3, None, init_scale_diag=0.2, jitter=1e-5, kl_num_mc_samples=8)
    assert g.jitter == 1e-5 and g.kl_num_mc_samples == 8
    lr = LowRankGaussianGroup("c", 5, 2, None, init_scale_diag=0.3, init_scale_factor=0.0)
    torch.testing.assert_close(lr.cov_diag, torch.full((5,), 0.3))
    torch.testing.assert_close(lr._cov_diag, lr.cov_diag)
    torch.testing.assert_close(g._scale_tril, g.scale_tril)
    d = DeterministicGroup("d", 4)
    assert d.params.shape == (4,) and isinstance(d.params, torch.nn.Parameter)
    with pytest.raises(RuntimeError):
        d.variational_distribution()
    with pytest.raises(ValueError, match="rank"):
        LowRankGaussianGroup("c", 2, rank=3)


def test_langevin_signature_attributes_and_modes():
    score = NeuralNetwork(num_inputs=6, num_outputs=6, width=16, depth=2)
    group = LangevinGroup("coeffs", 6, score, None, None)
    assert (group.num_particles, group.num_diffusion_steps) == (32, 50)
    assert group.step_size == 1e-3 and group.init_std == 1.0
    assert group.surrogate_params.shape == (score.num_params(),)
    assert group.sample_parameters().shape == (32, 6)
    assert group._score(torch.zeros(4, 6)).shape == (4, 6)
    energy = LangevinGroup("e", 2, energy_model=NeuralNetwork(2, 1, width=3), num_particles=5)
    assert energy.sample_parameters().shape == (5, 2)
    with pytest.raises(ValueError, match="exactly one"):
        LangevinGroup("x", 2, score_model=score, energy_model=NeuralNetwork(6, 1))
    with pytest.raises(RuntimeError):
        group.variational_distribution()


def test_priors_upstream_calls():
    assert IIDGaussianPrior(mean=0.0, std=0.5).distribution(
        torch.Size([4]), None, None
    ).sample().shape == (4,)
    prior = GaussianPrior(torch.zeros(2), covariance_matrix=torch.eye(2))
    assert isinstance(prior.distribution(torch.Size([2]), None, None), td.MultivariateNormal)
    laplace = LaplacePrior(loc=0.0, scale=1e-1).distribution(torch.Size([3]), None, None)
    assert laplace.sample().shape == (3,)
    # hyper-parameters are not persistent state, as upstream
    group = IIDGaussianGroup("w", 3, prior=IIDGaussianPrior(0.0, 2.0))
    assert set(group.state_dict()) == {"mean", "log_std"}


# -- polynomial chaos layout -----------------------------------------------------


def test_pce_two_inputs_degree_one_multi_index_order():
    pce = PolynomialChaosExpansion(2, 1, 1)
    assert pce.multi_indices.tolist() == [[0, 0], [0, 1], [1, 0]]
    x = torch.tensor([[0.5, -0.25], [1.0, 2.0]])
    c = torch.tensor([[1.0, 2.0, 3.0]])
    # term [0, 1] is P1 of the second input, [1, 0] of the first
    want = 1.0 + 2.0 * x[:, 1] + 3.0 * x[:, 0]
    torch.testing.assert_close(pce(x, c)[0, :, 0], want)


def test_pce_two_outputs_coefficient_blocks():
    pce = PolynomialChaosExpansion(num_inputs=1, num_outputs=2, degree=1)
    x = torch.tensor([[0.5], [-1.0]])
    a0, b0, a1, b1 = 1.0, -2.0, 3.0, 0.5
    # upstream reshapes the coefficients to (num_terms, num_outputs): [a0, b0, a1, b1]
    y = pce(x, torch.tensor([[a0, b0, a1, b1]]))[0]
    torch.testing.assert_close(y[:, 0], a0 + a1 * x[:, 0])
    torch.testing.assert_close(y[:, 1], b0 + b1 * x[:, 0])


def test_pce_degree_two_hand_computed():
    pce = PolynomialChaosExpansion(2, 1, 2)
    assert pce.multi_indices.tolist() == [[0, 0], [0, 1], [1, 0], [0, 2], [1, 1], [2, 0]]
    x = torch.tensor([[0.3, -0.6]], dtype=torch.float64)
    u, v = 0.3, -0.6
    c = torch.tensor([[0.0, 0.0, 0.0, 1.0, 2.0, -1.0]], dtype=torch.float64)
    want = (3 * v**2 - 1) / 2 + 2 * u * v - (3 * u**2 - 1) / 2
    assert pce.to(torch.float64)(x, c).item() == pytest.approx(want, abs=1e-12)


# -- initial values ---------------------------------------------------------------


def test_initial_values_and_random_streams_match_upstream():
    torch.manual_seed(3)
    iid = IIDGaussianGroup("a", 5)
    torch.manual_seed(3)
    torch.testing.assert_close(iid.mean.detach(), torch.randn(5))
    torch.testing.assert_close(iid.log_std.detach(), torch.full((5,), -0.5))
    assert iid.std[0].item() == pytest.approx(math.exp(-0.5))  # ≈ 0.607

    gauss = GaussianGroup("b", 4)
    assert torch.equal(gauss.mean.detach(), torch.zeros(4))
    torch.testing.assert_close(
        torch.diagonal(gauss.scale_tril).detach(), torch.full((4,), 0.1), rtol=0, atol=1e-7
    )
    assert torch.equal(torch.tril(gauss.scale_tril, -1), torch.zeros(4, 4))

    torch.manual_seed(4)
    low = LowRankGaussianGroup("c", 6, rank=3)
    torch.manual_seed(4)
    torch.testing.assert_close(low.cov_factor.detach(), torch.randn(6, 3) * 0.1)
    torch.testing.assert_close(low.cov_diag.detach(), torch.full((6,), 0.1), rtol=0, atol=1e-7)
    marginal = low.variational_distribution().variance.detach()
    torch.testing.assert_close(marginal, 0.1 + low.cov_factor.detach().square().sum(1))
    # 0.1 + 3 * 0.1² on average: a marginal std of about 0.36

    torch.manual_seed(5)
    det = DeterministicGroup("d", 3)
    torch.manual_seed(5)
    torch.testing.assert_close(det.params.detach(), torch.randn(3))

    torch.manual_seed(6)
    lang = LangevinGroup("e", 2, NeuralNetwork(2, 2, width=3))
    torch.manual_seed(6)
    torch.testing.assert_close(lang.surrogate_params.detach(), torch.randn(17) * 0.01)


def test_sampling_uses_upstream_random_stream():
    group = _perturbed_low_rank()
    torch.manual_seed(7)
    ours = group.sample_parameters(5)
    torch.manual_seed(7)
    torch.testing.assert_close(ours, group.variational_distribution().rsample((5,)))
    iid = IIDGaussianGroup("a", 4)
    torch.manual_seed(8)
    ours = iid.sample_parameters(3)
    torch.manual_seed(8)
    torch.testing.assert_close(ours, iid.variational_distribution().rsample((3,)))


def _perturbed_low_rank() -> LowRankGaussianGroup:
    group = LowRankGaussianGroup("c", 4, rank=2)
    with torch.no_grad():
        group.mean.copy_(torch.randn(4))
        group.raw_cov_diag.copy_(torch.randn(4))
    return group


# -- KL estimators -------------------------------------------------------------------


def test_upstream_kl_estimator_reproduces_monte_carlo():
    group = GaussianGroup("w", 3, kl_estimator="upstream")
    assert not group.analytic_kl  # full Gaussian vs IID prior: no torch closed form
    torch.manual_seed(0)
    got = group.distribution_loss()
    torch.manual_seed(0)
    q, p = group.variational_distribution(), group.prior_distribution()
    z = q.rsample((64,))
    torch.testing.assert_close(got, (q.log_prob(z) - p.log_prob(z)).mean())
    exact = GaussianGroup("w", 3)
    assert exact.analytic_kl


# -- checkpoints -----------------------------------------------------------------------


def _upstream_state_dict() -> dict[str, torch.Tensor]:
    """A pypolymix state dict, keys and shapes as upstream writes them."""
    return {
        "surrogate_model.multi_indices": torch.tensor(
            [[0, 0], [0, 1], [1, 0], [0, 2], [1, 1], [2, 0]]
        ),
        "parameter_groups.0.mean": torch.tensor([0.1, -0.2, 0.3]),
        "parameter_groups.0.raw_tril": torch.tensor([0.5, 0.1, -1.0, 0.2, 0.3, 0.0]),
        "parameter_groups.1.mean": torch.zeros(4),
        "parameter_groups.1.cov_factor": torch.full((4, 2), 0.05),
        "parameter_groups.1.raw_cov_diag": torch.full((4,), -2.0),
        "parameter_groups.2.mean": torch.tensor([1.0, 2.0, 3.0]),
        "parameter_groups.2.log_std": torch.tensor([-1.0, -2.0, -3.0]),
        "parameter_groups.3.params": torch.tensor([0.7, -0.7]),
    }


def _upstream_model() -> StochasticModel:
    pce = PolynomialChaosExpansion(2, 2, 2)  # 6 terms x 2 outputs = 12 coefficients
    groups = [
        GaussianGroup("a", 3, prior=LaplacePrior(0.0, 0.5)),
        LowRankGaussianGroup("b", 4, rank=2),
        IIDGaussianGroup("c", 3),
        DeterministicGroup("d", 2),
    ]
    return StochasticModel(pce, groups)


def test_upstream_state_dict_loads_strictly():
    model = _upstream_model()
    state = _upstream_state_dict()
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == {
        k: tuple(v.shape) for k, v in state.items()
    }
    model.load_state_dict(state, strict=True)
    softplus = F.softplus
    raw = state["parameter_groups.0.raw_tril"]
    tril = model.parameter_groups[0].scale_tril.detach()
    # packed row by row: (0,0), (1,0), (1,1), (2,0), (2,1), (2,2)
    want = torch.tensor(
        [
            [softplus(raw[0]) + 1e-6, 0.0, 0.0],
            [raw[1], softplus(raw[2]) + 1e-6, 0.0],
            [raw[3], raw[4], softplus(raw[5]) + 1e-6],
        ]
    )
    torch.testing.assert_close(tril, want)
    torch.testing.assert_close(
        model.parameter_groups[1].cov_diag.detach(), softplus(torch.full((4,), -2.0)) + 1e-6
    )
    theta = model.sample_parameters(2)
    torch.testing.assert_close(theta[:, -2:], torch.tensor([[0.7, -0.7]] * 2))
    # ours round-trips through its own state dict
    again = _upstream_model()
    again.load_state_dict(model.state_dict(), strict=True)
    x = torch.rand(5, 2) * 2 - 1
    torch.manual_seed(1)
    want_y = model(x, num_samples=3)
    torch.manual_seed(1)
    torch.testing.assert_close(again(x, num_samples=3), want_y)


def test_langevin_and_mixture_state_dict_keys():
    experts = [PolynomialChaosExpansion(1, 1, 2) for _ in range(2)]
    moe = MixtureOfExperts(experts, GatingNetwork(1, 2, width=3))
    lang = LangevinGroup("l", 3, score_model=PolynomialChaosExpansion(3, 3, 1))
    rest = DeterministicGroup("r", moe.num_params() - 3)
    model = StochasticModel(moe, [lang, rest])
    assert set(model.state_dict()) == {
        "surrogate_model.experts.0.multi_indices",
        "surrogate_model.experts.1.multi_indices",
        "parameter_groups.0.surrogate_params",
        "parameter_groups.0.score_model.multi_indices",
        "parameter_groups.1.params",
    }


def test_state_dict_with_other_multi_index_order_is_refused():
    model = _upstream_model()
    state = _upstream_state_dict()
    state["surrogate_model.multi_indices"] = state["surrogate_model.multi_indices"].flip(1)
    with pytest.raises(ConfigError, match="multi-indices"):
        model.load_state_dict(state, strict=True)


# -- the reference's documented examples, import swapped ---------------------------------

_EXAMPLES = {
    "stochastic_model": """
>>> import torch
>>> from orrery.polymix import StochasticModel, parameter_groups, surrogate_models
>>> surrogate = surrogate_models.NeuralNetwork(num_inputs=1, num_outputs=1)
>>> group = parameter_groups.IIDGaussianGroup("nn", surrogate.num_params())
>>> model = StochasticModel(surrogate, [group])
>>> x = torch.linspace(-1, 1, 32).unsqueeze(-1)
>>> y = model(x, num_samples=8) # (8, 32, 1)
>>> loss = y.mean() + model.distribution_loss()
>>> from orrery.polymix import parameter_groups, surrogate_models
>>> surrogate = surrogate_models.NeuralNetwork(num_inputs=1, num_outputs=1)
>>> groups = [parameter_groups.IIDGaussianGroup("nn", surrogate.num_params())]
>>> model = StochasticModel(surrogate, groups)
>>> x = torch.linspace(-1, 1, 32).unsqueeze(-1)
>>> y = model(x, num_samples=4) # (4, 32, 1)
>>> y = model(x, num_samples=10)
>>> y.shape == torch.Size([10, x.shape[0], surrogate.num_outputs])
True
""",
    "parameter_groups": """
>>> from orrery.polymix.parameter_groups import DeterministicGroup, IIDGaussianGroup
>>> from orrery.polymix.parameter_groups import LowRankGaussianGroup, LangevinGroup
>>> group = DeterministicGroup("weights", num_params=3)
>>> theta = group.sample_parameters(2)
>>> theta.shape
torch.Size([2, 3])
>>> group = IIDGaussianGroup("weights", num_params=4)
>>> samples = group.sample_parameters(16)
>>> samples.shape
torch.Size([16, 4])
>>> from orrery.polymix.parameter_groups import GaussianGroup
>>> group = GaussianGroup("weights", num_params=2)
>>> group.variational_distribution().rsample().shape
torch.Size([2])
>>> group = LowRankGaussianGroup("weights", num_params=8, rank=3)
>>> samples = group.sample_parameters(4)
>>> samples.shape
torch.Size([4, 8])
>>> from orrery.polymix.surrogate_models import NeuralNetwork
>>> score_model = NeuralNetwork(num_inputs=6, num_outputs=6, width=16, depth=2)
>>> group = LangevinGroup("coeffs", num_params=6, score_model=score_model)
>>> samples = group.sample_parameters(num_samples=8)
>>> samples.shape
torch.Size([8, 6])
""",
    "priors": """
>>> import torch.distributions as td
>>> from orrery.polymix.priors import IIDGaussianPrior, GaussianPrior, LaplacePrior
>>> prior = IIDGaussianPrior(mean=0.0, std=0.5)
>>> prior.distribution(torch.Size([4]), None, None).sample().shape
torch.Size([4])
>>> mean = torch.zeros(2)
>>> cov = torch.eye(2)
>>> prior = GaussianPrior(mean, covariance_matrix=cov)
>>> isinstance(prior.distribution(torch.Size([2]), None, None), td.MultivariateNormal)
True
>>> prior = LaplacePrior(loc=0.0, scale=1e-1)
>>> prior.distribution(torch.Size([3]), None, None).sample().shape
torch.Size([3])
""",
    "surrogate_models": """
>>> from orrery.polymix.surrogate_models import NeuralNetwork, PolynomialChaosExpansion
>>> from orrery.polymix.surrogate_models import GatingNetwork, MixtureOfExperts
>>> surrogate = NeuralNetwork(num_inputs=2, num_outputs=1, width=8, depth=2)
>>> surrogate.num_params()
105
>>> params = torch.randn(3, surrogate.num_params())
>>> x = torch.randn(5, 2)
>>> surrogate(x, params).shape
torch.Size([3, 5, 1])
>>> surrogate = PolynomialChaosExpansion(num_inputs=1, degree=2)
>>> params = torch.randn(5, surrogate.num_params())
>>> x = torch.linspace(-1, 1, 20).unsqueeze(-1)
>>> surrogate(x, params).shape
torch.Size([5, 20, 1])
>>> gating = GatingNetwork(num_inputs=1, num_experts=3, width=8)
>>> params = torch.randn(2, gating.num_params())
>>> x = torch.zeros(4, 1)
>>> gating(x, params).shape
torch.Size([2, 4, 3])
>>> from orrery.polymix.surrogate_models import NeuralNetwork
>>> experts = [NeuralNetwork(num_inputs=1, num_outputs=1, width=4) for _ in range(2)]
>>> gating = GatingNetwork(num_inputs=1, num_experts=len(experts))
>>> moe = MixtureOfExperts(experts, gating)
>>> params = torch.randn(3, moe.num_params())
>>> x = torch.randn(5, 1)
>>> moe(x, params).shape
torch.Size([3, 5, 1])
""",
}


@pytest.mark.parametrize("name", list(_EXAMPLES))
def test_reference_examples_run_as_written(name):
    test = doctest.DocTestParser().get_doctest(
        _EXAMPLES[name], {"torch": torch, "polymix": polymix}, name, None, 0
    )
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    result = runner.run(test)
    assert result.failed == 0, name


def test_user_surrogate_written_for_upstream_runs():
    from orrery.polymix.surrogate_models.base import SurrogateModel

    class Line(SurrogateModel):  # no __init__, no num_inputs: as pypolymix allows
        def forward(self, x, params):
            return params[:, None, :1] + params[:, None, 1:] * x.unsqueeze(0)

        def num_params(self) -> int:
            return 2

    model = StochasticModel(Line(), DeterministicGroup("ab", 2))
    with torch.no_grad():
        model.parameter_groups[0].params.copy_(torch.tensor([1.0, 2.0]))
    y = model(torch.tensor([[0.0], [1.0]]), num_samples=3)
    torch.testing.assert_close(y, torch.tensor([[[1.0], [3.0]]] * 3))


# -- audit against pypolymix's source ---------------------------------------------------


def test_tensor_prior_hyperparameters_keep_their_gradient():
    # pypolymix keeps a tensor mean/std (loc/scale) as given (`torch.as_tensor`), so a
    # learnable prior (empirical Bayes: the tensor handed to the optimiser) gets a gradient
    # and the prior sees every optimiser step; a detached copy would silently freeze it
    torch.manual_seed(0)
    loc = torch.nn.Parameter(torch.tensor(0.2))
    std = torch.nn.Parameter(torch.tensor([1.0, 2.0, 0.5]))
    scale = torch.nn.Parameter(torch.tensor([0.5, 1.5, 1.0]))
    iid = IIDGaussianGroup("a", 3, IIDGaussianPrior(loc, std))
    det = DeterministicGroup("b", 3, LaplacePrior(loc, scale))
    (iid.distribution_loss() + det.distribution_loss()).backward()
    for t in (loc, std, scale):
        assert t.grad is not None and bool(torch.isfinite(t.grad).all()) and t.grad.abs().sum() > 0
    # KL(N(m, s²) ‖ N(loc, std²)) by hand: d/dstd = 1/std - (s² + (m - loc)²)/std³
    m, s = iid.mean.detach(), iid.std.detach()
    want = 1 / std.detach() - (s**2 + (m - 0.2) ** 2) / std.detach() ** 3
    torch.testing.assert_close(std.grad, want)
    # an optimiser step on the hyper-parameter is what the prior uses next
    opt = torch.optim.SGD([std], lr=0.1)
    opt.step()
    assert torch.equal(iid.prior_distribution().base_dist.scale.detach(), std.detach())


def test_activation_module_is_registered_once_as_upstream():
    # pypolymix stores the activation as `activation` only: a stateful activation module
    # (PReLU) appears once in the state dict, under upstream's key
    torch.manual_seed(0)
    net = NeuralNetwork(1, 1, width=3, activation=torch.nn.PReLU())
    assert list(net.state_dict()) == ["activation.weight"]
    gate = GatingNetwork(1, 2, width=3, activation=torch.nn.PReLU())
    assert list(gate.state_dict()) == ["network.activation.weight"]
    model = StochasticModel(net, IIDGaussianGroup("w", net.num_params()))
    upstream_state = {
        "surrogate_model.activation.weight": torch.tensor([0.3]),
        "parameter_groups.0.mean": torch.zeros(net.num_params()),
        "parameter_groups.0.log_std": torch.full((net.num_params(),), -0.5),
    }
    model.load_state_dict(upstream_state, strict=True)
    assert net.activation.weight.item() == pytest.approx(0.3)
    assert [n for n, _ in model.named_parameters()] == [
        "surrogate_model.activation.weight",
        "parameter_groups.0.mean",
        "parameter_groups.0.log_std",
    ]


def test_legendre_polynomial_p_takes_a_tensor_degree_as_upstream():
    # pypolymix's expansion calls it with an entry of `multi_indices` (a 0-d long tensor)
    x = torch.linspace(-1, 1, 7)
    pce = PolynomialChaosExpansion(2, 1, 3)
    for alpha in pce.multi_indices:
        for dim in range(2):
            torch.testing.assert_close(
                legendre_polynomial_p(x, alpha[dim]), legendre_polynomial_p(x, int(alpha[dim]))
            )
    with pytest.raises(ConfigError, match="n"):
        legendre_polynomial_p(x, torch.tensor(-1))
    with pytest.raises(ConfigError, match="n"):
        legendre_polynomial_p(x, torch.tensor(1.5))


# -- user extensions written for pypolymix: custom groups, priors and gates ------------------


class _BatchPrior(polymix.priors.Prior):
    """A user prior with a batch shape (no `Independent`), as pypolymix allows."""

    def distribution(self, event_shape, device, dtype):
        return td.Normal(torch.zeros(event_shape, device=device, dtype=dtype), 2.0)


class _BatchGroup(polymix.parameter_groups.ParameterGroup):
    """A user group whose `q` has a batch shape; only the abstract methods are written."""

    def __init__(self, name, num_params, prior=None, **kwargs):
        super().__init__(name, num_params, prior, **kwargs)
        self.loc = torch.nn.Parameter(torch.linspace(0.0, 1.0, num_params))

    def sample_parameters(self, num_samples=1):
        return self.variational_distribution().rsample((num_samples,))

    def variational_distribution(self):
        return td.Normal(self.loc, 0.5)


def test_user_group_kl_is_summed_to_a_scalar_as_upstream():
    # pypolymix's base class returns `kl_divergence(q, p).sum()`
    group = _BatchGroup("g", 3, _BatchPrior())
    loc = torch.linspace(0.0, 1.0, 3)
    want = td.kl_divergence(td.Normal(loc, 0.5), td.Normal(torch.zeros(3), 2.0)).sum()
    got = group.distribution_loss()
    assert got.shape == ()
    torch.testing.assert_close(got, want)
    net = NeuralNetwork(1, 1, width=2)
    model = StochasticModel(net, [group, IIDGaussianGroup("w", net.num_params() - 3)])
    assert model.distribution_loss().shape == ()
    # its Monte Carlo fallback (no closed form against a Student-t batch) as upstream: the
    # mean of log q - log p over draws and entries
    group = _BatchGroup("g", 3, kl_estimator="upstream")
    group.prior = type(
        "P",
        (polymix.priors.Prior,),
        {"distribution": lambda self, s, d, t: td.StudentT(3.0, torch.zeros(s, dtype=t))},
    )()
    torch.manual_seed(2)
    got = group.distribution_loss()
    torch.manual_seed(2)
    q, p = group.variational_distribution(), td.StudentT(3.0, torch.zeros(3))
    z = q.rsample((64,))
    torch.testing.assert_close(got, (q.log_prob(z) - p.log_prob(z)).mean())


def test_user_gating_network_without_sizes_runs_as_upstream():
    # pypolymix reads num_inputs/num_outputs of the experts only
    from orrery.polymix.surrogate_models.base import SurrogateModel

    class Gate(SurrogateModel):
        def __init__(self):
            super().__init__()
            self.net = GatingNetwork(1, 2, width=3)

        def forward(self, x, params):
            return self.net(x, params)

        def num_params(self):
            return self.net.num_params()

    torch.manual_seed(0)
    experts = [NeuralNetwork(1, 1, width=2) for _ in range(2)]
    moe = MixtureOfExperts(experts, Gate())
    x, params = torch.rand(4, 1), torch.randn(3, moe.num_params())
    n_e = experts[0].num_params()
    weights = moe.gating_network(x, params[:, 2 * n_e :])
    want = sum(
        weights[..., e : e + 1] * experts[e](x, params[:, e * n_e : (e + 1) * n_e])
        for e in range(2)
    )
    torch.testing.assert_close(moe(x, params), want)


def test_user_group_with_a_float_loss_adds_up_as_upstream():
    # pypolymix adds the groups' losses with `sum`, so a fixed block may return 0.0
    class Fixed(polymix.parameter_groups.ParameterGroup):
        def __init__(self, name, num_params):
            super().__init__(name, num_params)
            self.register_buffer("value", torch.zeros(num_params))

        def sample_parameters(self, num_samples=1):
            return self.value.expand(num_samples, -1)

        def variational_distribution(self):
            raise RuntimeError("fixed")

        def distribution_loss(self):
            return 0.0

    net = NeuralNetwork(1, 1, width=2)
    iid = IIDGaussianGroup("w", net.num_params() - 4)
    model = StochasticModel(net, [Fixed("f", 4), iid])
    loss = model.distribution_loss()
    assert isinstance(loss, torch.Tensor) and loss.requires_grad
    torch.testing.assert_close(loss, iid.distribution_loss())
    assert model(torch.zeros(2, 1), num_samples=3).shape == (3, 2, 1)
