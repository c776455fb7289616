import math

import pytest
import torch
import torch.distributions as td

from orrery.interface import ConfigError
from orrery.polymix import (
    DeterministicGroup,
    GaussianGroup,
    GaussianPrior,
    IIDGaussianGroup,
    IIDGaussianPrior,
    LangevinGroup,
    LaplacePrior,
    LowRankGaussianGroup,
    NeuralNetwork,
    NoVariationalDistributionError,
    ParameterGroup,
    PolynomialChaosExpansion,
)

F64 = torch.float64


def _perturb(group: ParameterGroup, scale: float = 0.3) -> ParameterGroup:
    """Move a freshly initialised group away from its (near-degenerate) start."""
    with torch.no_grad():
        for name, p in group.named_parameters():
            if name.startswith("log_"):
                p.copy_(math.log(0.6) + scale * torch.randn_like(p))
            elif name == "raw_tril":
                p.copy_(scale * torch.randn_like(p))
            else:
                p.copy_(scale * 2 * torch.randn_like(p))
    return group


def _mc_kl(group: ParameterGroup, n: int = 200_000) -> tuple[float, float]:
    with torch.no_grad():
        q, p = group.variational_distribution(), group.prior_distribution()
        theta = q.sample(torch.Size([n]))
        terms = q.log_prob(theta) - p.log_prob(theta)
    return terms.mean().item(), terms.std().item() / math.sqrt(n)


# -- common behaviour -----------------------------------------------------------

GROUPS = {
    "deterministic": lambda **kw: DeterministicGroup("g", 5, **kw),
    "iid": lambda **kw: IIDGaussianGroup("g", 5, **kw),
    "gaussian": lambda **kw: GaussianGroup("g", 5, **kw),
    "lowrank": lambda **kw: LowRankGaussianGroup("g", 5, rank=2, **kw),
    "langevin": lambda **kw: LangevinGroup(
        "g", 5, NeuralNetwork(5, 5, width=4), num_diffusion_steps=3, **kw
    ),
}


@pytest.mark.parametrize("kind", list(GROUPS))
def test_group_interface_shapes_and_dtype(kind):
    group = GROUPS[kind]()
    assert group.name == "g" and group.num_params == 5
    assert isinstance(group.prior, IIDGaussianPrior)
    assert group.sample_parameters(7).shape == (7, 5)
    loss = group.distribution_loss()
    assert loss.shape == () and torch.isfinite(loss)
    group = group.to(F64)
    assert group.sample_parameters(3).dtype == F64
    assert group.distribution_loss().dtype == F64
    with pytest.raises(ConfigError, match="num_samples"):
        group.sample_parameters(0)


@pytest.mark.parametrize("kind", list(GROUPS))
def test_group_loss_and_samples_are_differentiable(kind):
    group = GROUPS[kind]()
    (group.sample_parameters(4).square().sum() + group.distribution_loss()).backward()
    grads = [p.grad for p in group.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_group_argument_validation():
    with pytest.raises(ConfigError, match="name"):
        IIDGaussianGroup("", 3)
    with pytest.raises(ConfigError, match="num_params"):
        IIDGaussianGroup("w", 0)
    with pytest.raises(ConfigError, match="prior"):
        IIDGaussianGroup("w", 3, prior=td.Normal(0.0, 1.0))
    with pytest.raises(ConfigError, match="init_scale_diag"):
        GaussianGroup("w", 3, init_scale_diag=0.0)
    with pytest.raises(ConfigError, match="kl_estimator"):
        GaussianGroup("w", 3, kl_estimator="mc")
    with pytest.raises(ConfigError, match=r"rank: expected an integer in \[1, 4\], got 5"):
        LowRankGaussianGroup("w", 4, rank=5)
    with pytest.raises(ConfigError, match="rank"):
        LowRankGaussianGroup("w", 4, rank=0)


# -- DeterministicGroup ---------------------------------------------------------


def test_deterministic_group_repeats_point_and_uses_neg_log_prior():
    prior = IIDGaussianPrior(0.0, 2.0)
    group = DeterministicGroup("weights", num_params=3, prior=prior)
    theta = group.sample_parameters(2)
    assert theta.shape == (2, 3)
    torch.testing.assert_close(theta[0], theta[1])
    torch.testing.assert_close(theta[0], group.params.detach())
    want = -td.Normal(0.0, 2.0).log_prob(group.params).sum()
    torch.testing.assert_close(group.distribution_loss(), want)
    with pytest.raises(NoVariationalDistributionError, match="point estimate"):
        group.variational_distribution()
    with pytest.raises(NotImplementedError):
        group.variational_distribution()


# -- IIDGaussianGroup -----------------------------------------------------------


def test_iid_group_std_and_sample_moments():
    group = _perturb(IIDGaussianGroup("w", 4))
    torch.testing.assert_close(group.std, group.log_std.exp())
    assert torch.all(group.std > 0)
    with torch.no_grad():
        s = group.sample_parameters(50_000)
    torch.testing.assert_close(s.mean(0), group.mean.detach(), atol=0.02, rtol=0)
    torch.testing.assert_close(s.std(0), group.std.detach(), atol=0.02, rtol=0)
    q = group.variational_distribution()
    assert isinstance(q, td.Independent) and q.event_shape == (4,)


# -- GaussianGroup --------------------------------------------------------------


def test_gaussian_group_factor_is_valid_and_samples_match_covariance():
    group = _perturb(GaussianGroup("w", 3))
    with torch.no_grad():
        group.raw_tril[0] = -2.0  # negative raw diagonal must still give a valid factor
        tril = group.scale_tril
        assert torch.equal(tril, torch.tril(tril)) and torch.all(torch.diagonal(tril) > 0)
        assert group.variational_distribution().rsample().shape == (3,)
        s = group.sample_parameters(60_000)
    torch.testing.assert_close(s.mean(0), group.mean.detach(), atol=0.03, rtol=0)
    cov = torch.cov(s.T)
    torch.testing.assert_close(cov, group.covariance_matrix.detach(), atol=0.04, rtol=0)
    assert isinstance(group.variational_distribution(), td.MultivariateNormal)


# -- LowRankGaussianGroup -------------------------------------------------------


def test_lowrank_group_samples_match_covariance():
    group = _perturb(LowRankGaussianGroup("w", num_params=6, rank=2))
    q = group.variational_distribution()
    assert isinstance(q, td.LowRankMultivariateNormal)
    assert group.cov_factor.shape == (6, 2)
    want = group.covariance_matrix.detach()
    torch.testing.assert_close(q.covariance_matrix.detach(), want)
    with torch.no_grad():
        s = group.sample_parameters(60_000)
    torch.testing.assert_close(torch.cov(s.T), want, atol=0.05, rtol=0.05)


# -- KL: analytic against Monte Carlo ------------------------------------------

CASES = {
    "iid|iid": (lambda p: IIDGaussianGroup("w", 4, prior=p), lambda: IIDGaussianPrior(0.3, 1.5)),
    "iid|laplace": (lambda p: IIDGaussianGroup("w", 4, prior=p), lambda: LaplacePrior(0.1, 0.7)),
    "iid|gauss": (
        lambda p: IIDGaussianGroup("w", 3, prior=p),
        lambda: GaussianPrior(torch.zeros(3), covariance_matrix=torch.eye(3) + 0.3),
    ),
    "gauss|iid": (lambda p: GaussianGroup("w", 4, prior=p), lambda: IIDGaussianPrior(0.0, 1.2)),
    "gauss|gauss": (
        lambda p: GaussianGroup("w", 3, prior=p),
        lambda: GaussianPrior(torch.ones(3), covariance_matrix=2 * torch.eye(3) + 0.5),
    ),
    "lowrank|iid": (
        lambda p: LowRankGaussianGroup("w", 5, rank=2, prior=p),
        lambda: IIDGaussianPrior(0.0, 1.0),
    ),
    "gauss|laplace": (lambda p: GaussianGroup("w", 4, prior=p), lambda: LaplacePrior(0.2, 0.8)),
    "lowrank|laplace": (
        lambda p: LowRankGaussianGroup("w", 5, rank=2, prior=p),
        lambda: LaplacePrior(torch.linspace(-0.5, 0.5, 5), 0.6),
    ),
    "lowrank|gauss": (
        lambda p: LowRankGaussianGroup("w", 3, rank=1, prior=p),
        lambda: GaussianPrior(torch.zeros(3), covariance_matrix=torch.eye(3) + 0.2),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_analytic_kl_matches_monte_carlo(case):
    make_group, make_prior = CASES[case]
    group = _perturb(make_group(make_prior()).to(F64))
    assert group.analytic_kl
    with torch.no_grad():
        kl = group.distribution_loss().item()
    mc, se = _mc_kl(group)
    assert abs(kl - mc) < 5 * se + 1e-3, (kl, mc, se)


@pytest.mark.parametrize("kind", ["gaussian", "lowrank"])
def test_upstream_monte_carlo_kl_on_request(kind):
    prior = LaplacePrior(0.2, 0.8)
    group = GROUPS[kind](prior=prior, kl_num_mc_samples=20_000, kl_estimator="upstream")
    group = _perturb(group.to(F64))
    assert not group.analytic_kl
    mc, se = _mc_kl(group)
    with torch.no_grad():
        est = group.distribution_loss().item()
    assert abs(est - mc) < 6 * math.sqrt(200_000 / 20_000) * se, (est, mc, se)
    # the estimate is reparameterised: gradients reach the variational parameters
    group.distribution_loss().backward()
    assert group.mean.grad is not None and group.mean.grad.abs().sum() > 0


# -- LangevinGroup --------------------------------------------------------------


def test_langevin_validates_score_model_and_has_no_explicit_q():
    with pytest.raises(ConfigError, match="score_model: expected num_inputs=3"):
        LangevinGroup("c", 3, NeuralNetwork(3, 2))
    with pytest.raises(ConfigError, match="exactly one"):
        LangevinGroup("c", 3)
    with pytest.raises(ConfigError, match="energy_model: expected num_inputs=3"):
        LangevinGroup("c", 3, energy_model=NeuralNetwork(3, 3))
    with pytest.raises(ConfigError, match="score_model"):
        LangevinGroup("c", 3, NeuralNetwork(2, 3))
    with pytest.raises(ConfigError, match="step_size"):
        LangevinGroup("c", 3, NeuralNetwork(3, 3), step_size=-1.0)
    with pytest.raises(ConfigError, match="num_diffusion_steps"):
        LangevinGroup("c", 3, NeuralNetwork(3, 3), num_diffusion_steps=0)
    group = LangevinGroup("c", 3, NeuralNetwork(3, 3), num_particles=5, num_diffusion_steps=2)
    assert group.sample_parameters().shape == (5, 3)
    assert group.sample_parameters(num_samples=8).shape == (8, 3)
    with pytest.raises(NoVariationalDistributionError, match="implicit"):
        group.variational_distribution()


def test_langevin_loss_is_cross_entropy_of_latest_particles():
    prior = IIDGaussianPrior(0.0, 2.0)
    score = NeuralNetwork(2, 2, width=4)
    group = LangevinGroup("c", 2, score, prior=prior, num_diffusion_steps=2)
    theta = group.sample_parameters(6)
    want = -td.Normal(0.0, 2.0).log_prob(theta).sum(-1).mean()
    torch.testing.assert_close(group.distribution_loss(), want)
    # as in pypolymix, a second loss reuses the cached particles
    assert group._last_samples is theta
    torch.testing.assert_close(group.distribution_loss(), want)


def test_langevin_particles_approach_gaussian_target():
    mu = torch.tensor([1.0, -0.5], dtype=F64)
    cov = torch.tensor([[1.0, 0.5], [0.5, 0.8]], dtype=F64)
    prec = torch.linalg.inv(cov)
    # a linear score model (depth 0) set to the exact score -Σ⁻¹(θ - μ)
    score = NeuralNetwork(num_inputs=2, num_outputs=2, depth=0)
    group = LangevinGroup(
        "c", 2, score, step_size=0.01, num_diffusion_steps=800, num_particles=4000
    )
    group = group.to(F64)
    with torch.no_grad():
        group.surrogate_params.copy_(torch.cat([(-prec).reshape(-1), prec @ mu]))
        theta = group.sample_parameters()
    torch.testing.assert_close(theta.mean(0), mu, atol=0.06, rtol=0)
    torch.testing.assert_close(torch.cov(theta.T), cov, atol=0.07, rtol=0)


def test_langevin_trains_its_score_model_through_the_chain():
    pce = PolynomialChaosExpansion(3, num_outputs=3, degree=1)
    group = LangevinGroup("c", 3, pce, num_diffusion_steps=4)
    theta = group.sample_parameters(10)
    (theta.square().sum() + group.distribution_loss()).backward()
    grad = group.surrogate_params.grad
    assert grad is not None and grad.abs().sum() > 0


def test_langevin_energy_mode_score_is_the_energy_gradient():
    # a linear energy E(θ) = w·θ + b has the constant score w
    energy = NeuralNetwork(num_inputs=2, num_outputs=1, depth=0)
    group = LangevinGroup("c", 2, energy_model=energy, num_diffusion_steps=3)
    assert group.mode == "energy" and group.score_model is None
    with torch.no_grad():
        group.surrogate_params.copy_(torch.tensor([0.5, -2.0, 0.3]))
    theta = torch.randn(4, 2)
    torch.testing.assert_close(group._score(theta), torch.tensor([[0.5, -2.0]]).expand(4, 2))
    samples = group.sample_parameters(5)
    (samples.sum() + group.distribution_loss()).backward()
    assert group.surrogate_params.grad is not None
