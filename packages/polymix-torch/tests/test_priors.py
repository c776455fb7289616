import pytest
import torch
import torch.distributions as td

from orrery.interface import ConfigError, ShapeError, ValueDomainError
from orrery.polymix import GaussianPrior, IIDGaussianPrior, LaplacePrior


def test_iid_gaussian_prior_broadcasts_and_matches_normal():
    prior = IIDGaussianPrior(mean=0.5, std=2.0)
    d = prior.distribution(torch.Size([4]), None, None)
    assert d.event_shape == (4,) and d.sample().shape == (4,)
    x = torch.randn(4)
    want = td.Normal(0.5, 2.0).log_prob(x).sum()
    torch.testing.assert_close(d.log_prob(x), want)


def test_iid_gaussian_prior_per_parameter_values_and_dtype():
    prior = IIDGaussianPrior(mean=torch.arange(3.0), std=torch.tensor([1.0, 2.0, 3.0]))
    d = prior.distribution((3,), "cpu", torch.float64)
    assert d.mean.dtype == torch.float64
    torch.testing.assert_close(d.mean, torch.arange(3.0, dtype=torch.float64))
    with pytest.raises(ShapeError, match="broadcast"):
        prior.distribution(torch.Size([4]), None, None)


def test_prior_follows_module_to():
    prior = IIDGaussianPrior(0.0, 1.0).to(torch.float64)
    assert prior.distribution(torch.Size([2])).mean.dtype == torch.float64


def test_iid_gaussian_prior_rejects_nonpositive_std():
    with pytest.raises(ValueDomainError, match="std"):
        IIDGaussianPrior(0.0, 0.0)
    with pytest.raises(ValueDomainError, match="std"):
        IIDGaussianPrior(0.0, torch.tensor([1.0, -1.0]))


def test_laplace_prior():
    prior = LaplacePrior(loc=0.0, scale=1e-1)
    d = prior.distribution(torch.Size([3]), None, None)
    assert d.sample().shape == (3,)
    x = torch.randn(3)
    torch.testing.assert_close(d.log_prob(x), td.Laplace(0.0, 0.1).log_prob(x).sum())
    with pytest.raises(ValueDomainError, match="scale"):
        LaplacePrior(0.0, -1.0)


def test_gaussian_prior_from_covariance_or_scale_tril():
    cov = torch.tensor([[2.0, 0.5], [0.5, 1.0]])
    a = GaussianPrior(torch.zeros(2), covariance_matrix=cov)
    d = a.distribution(torch.Size([2]), None, None)
    assert isinstance(d, td.MultivariateNormal)
    torch.testing.assert_close(d.covariance_matrix, cov)
    b = GaussianPrior(torch.zeros(2), scale_tril=torch.linalg.cholesky(cov))
    torch.testing.assert_close(b.covariance_matrix, cov)
    x = torch.randn(5, 2)
    torch.testing.assert_close(d.log_prob(x), b.distribution(2).log_prob(x))


def test_gaussian_prior_validation():
    with pytest.raises(ConfigError, match="exactly one"):
        GaussianPrior(torch.zeros(2))
    with pytest.raises(ConfigError, match="both"):
        GaussianPrior(torch.zeros(2), covariance_matrix=torch.eye(2), scale_tril=torch.eye(2))
    with pytest.raises(ShapeError, match=r"\(2, 2\)"):
        GaussianPrior(torch.zeros(2), covariance_matrix=torch.eye(3))
    with pytest.raises(ShapeError, match="mean"):
        GaussianPrior(torch.zeros(2, 2), covariance_matrix=torch.eye(2))
    with pytest.raises(ValueDomainError, match="positive-definite"):
        GaussianPrior(torch.zeros(2), covariance_matrix=torch.tensor([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(ValueDomainError, match="symmetric"):
        GaussianPrior(torch.zeros(2), covariance_matrix=torch.tensor([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(ValueDomainError, match="lower-triangular"):
        GaussianPrior(torch.zeros(2), scale_tril=torch.tensor([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(ValueDomainError, match="diagonal"):
        GaussianPrior(torch.zeros(2), scale_tril=torch.tensor([[1.0, 0.0], [0.5, -1.0]]))
    prior = GaussianPrior(torch.zeros(2), covariance_matrix=torch.eye(2))
    with pytest.raises(ShapeError, match="event shape"):
        prior.distribution(torch.Size([3]), None, None)


def test_prior_base_class_is_abstract_and_priors_are_shared_modules():
    from orrery.polymix import IIDGaussianGroup, Prior

    with pytest.raises(NotImplementedError):
        Prior().distribution(torch.Size([2]))
    shared = IIDGaussianPrior(0.0, 3.0)
    a, b = IIDGaussianGroup("a", 2, prior=shared), IIDGaussianGroup("b", 4, prior=shared)
    assert a.prior is b.prior
    assert a.prior_distribution().event_shape == (2,) and b.prior_distribution().event_shape == (4,)
    with pytest.raises(ShapeError, match="event_shape"):
        shared.distribution(torch.Size([2, 2]))
