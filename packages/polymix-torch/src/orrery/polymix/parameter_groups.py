"""Variational families over blocks of surrogate parameters.

A parameter group owns the trainable quantities that describe ``q(θ)`` for a
contiguous block of ``num_params`` surrogate parameters, draws ``(S,
num_params)`` samples from it, and returns its regulariser
(:meth:`ParameterGroup.distribution_loss`) against its :class:`Prior`.
Several groups are concatenated, in order, by :class:`StochasticModel`.
"""

from __future__ import annotations

import math

import torch
import torch.distributions as td
from torch import nn

from orrery.interface import ConfigError, OrreryError, check_positive_int

from ._checks import check_name, check_samples
from ._kl import DEFAULT_KL_SAMPLES, kl_divergence
from .priors import IIDGaussianPrior, Prior
from .surrogate_models.base import SurrogateModel

__all__ = [
    "DEFAULT_KL_SAMPLES",
    "DeterministicGroup",
    "GaussianGroup",
    "IIDGaussianGroup",
    "LangevinGroup",
    "LowRankGaussianGroup",
    "NoVariationalDistributionError",
    "ParameterGroup",
]


class NoVariationalDistributionError(OrreryError, NotImplementedError):
    """The group has no explicit ``q(θ)`` (a point estimate or an implicit sampler)."""


def _check_positive_float(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{name}: expected a positive number, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{name}: expected a finite number, got {value!r}")
    return float(value)


class ParameterGroup(nn.Module):
    """Base class of parameter groups.

    Args:
        name: a label for the block (used as the variable name by
            :func:`orrery.polymix.to_draws`).
        num_params: the block's size.
        prior: its prior (default: standard normal).

    Subclasses implement :meth:`sample_parameters` and
    :meth:`variational_distribution`; the default :meth:`distribution_loss`
    is ``KL(q‖p)`` — analytic where torch registers a formula, otherwise a
    reparameterised Monte Carlo estimate from ``kl_samples`` draws.
    """

    kl_samples: int = DEFAULT_KL_SAMPLES

    def __init__(self, name: str, num_params: int, prior: Prior | None = None):
        super().__init__()
        self.name = check_name(name)
        self.num_params = check_positive_int(num_params, "num_params")
        if prior is None:
            prior = IIDGaussianPrior(0.0, 1.0)
        if not isinstance(prior, Prior):
            raise ConfigError(
                f"prior: expected an orrery.polymix Prior, got {type(prior).__name__}"
            )
        self.prior = prior

    def _reference(self) -> torch.Tensor:
        """A tensor whose device and dtype the group's samples have."""
        return next(self.parameters())

    def prior_distribution(self) -> td.Distribution:
        """The prior over this block, on the group's device and in its dtype."""
        ref = self._reference()
        return self.prior.distribution(torch.Size([self.num_params]), ref.device, ref.dtype)

    def sample_parameters(self, num_samples: int = 1) -> torch.Tensor:
        """Draw ``(num_samples, num_params)`` parameter vectors."""
        raise NotImplementedError

    def variational_distribution(self) -> td.Distribution:
        """Return ``q(θ)`` as a :class:`torch.distributions.Distribution`."""
        raise NotImplementedError

    def distribution_loss(self) -> torch.Tensor:
        """``KL(q‖p)``: analytic if torch has it, else an MC estimate (``kl_samples`` draws)."""
        kl, _ = kl_divergence(
            self.variational_distribution(), self.prior_distribution(), self.kl_samples
        )
        return kl

    @property
    def analytic_kl(self) -> bool:
        """Whether :meth:`distribution_loss` uses a closed form."""
        with torch.no_grad():
            _, analytic = kl_divergence(
                self.variational_distribution(), self.prior_distribution(), 1
            )
        return analytic

    def extra_repr(self) -> str:
        return f"name={self.name!r}, num_params={self.num_params}"

    def _config(self) -> dict:
        return {"name": self.name, "num_params": self.num_params}


class DeterministicGroup(ParameterGroup):
    """A point estimate: every "sample" is the same learnable vector.

    Its loss is the negative log prior density at the point, so training gives
    a MAP estimate for this block.

    Args:
        name: block label.
        num_params: block size.
        prior: prior (default standard normal).
        init_scale: the initial value is ``init_scale * N(0, 1)`` (0 gives zeros).

    Example:
        >>> group = DeterministicGroup("weights", num_params=3)
        >>> group.sample_parameters(2).shape
        torch.Size([2, 3])
    """

    def __init__(
        self, name: str, num_params: int, prior: Prior | None = None, init_scale: float = 0.1
    ):
        super().__init__(name, num_params, prior)
        self.value = nn.Parameter(init_scale * torch.randn(self.num_params))

    def sample_parameters(self, num_samples: int = 1) -> torch.Tensor:
        """Return ``value`` repeated ``num_samples`` times: ``(num_samples, num_params)``."""
        return self.value.expand(check_samples(num_samples), -1)

    def variational_distribution(self) -> td.Distribution:
        """Always raises: a point estimate has no distribution."""
        raise NoVariationalDistributionError(
            f"DeterministicGroup {self.name!r} is a point estimate and has no variational "
            "distribution; use sample_parameters() or .value"
        )

    def distribution_loss(self) -> torch.Tensor:
        """``-log p(value)``."""
        return -self.prior_distribution().log_prob(self.value)

    @property
    def analytic_kl(self) -> bool:
        return True


class IIDGaussianGroup(ParameterGroup):
    """Mean-field Gaussian ``q = N(mean, diag(std²))`` with ``std = exp(log_std)``.

    Args:
        name: block label.
        num_params: block size.
        prior: prior (default standard normal).
        init_scale: initial means are ``init_scale * N(0, 1)``.
        init_std: initial standard deviation of every parameter.
        kl_samples: draws of the MC KL estimate when no closed form exists.

    Example:
        >>> group = IIDGaussianGroup("weights", num_params=4)
        >>> group.sample_parameters(16).shape
        torch.Size([16, 4])
    """

    def __init__(
        self,
        name: str,
        num_params: int,
        prior: Prior | None = None,
        init_scale: float = 0.1,
        init_std: float = 1e-2,
        kl_samples: int = DEFAULT_KL_SAMPLES,
    ):
        super().__init__(name, num_params, prior)
        _check_positive_float(init_std, "init_std")
        self.kl_samples = check_positive_int(kl_samples, "kl_samples")
        self.mean = nn.Parameter(init_scale * torch.randn(self.num_params))
        self.log_std = nn.Parameter(torch.full((self.num_params,), math.log(init_std)))

    @property
    def std(self) -> torch.Tensor:
        """Positive standard deviations ``exp(log_std)``."""
        return self.log_std.exp()

    def variational_distribution(self) -> td.Distribution:
        """``Independent(Normal(mean, std), 1)``."""
        return td.Independent(td.Normal(self.mean, self.std, validate_args=False), 1)

    def sample_parameters(self, num_samples: int = 1) -> torch.Tensor:
        """Reparameterised draws ``mean + std * ε``: ``(num_samples, num_params)``."""
        eps = torch.randn(
            check_samples(num_samples),
            self.num_params,
            device=self.mean.device,
            dtype=self.mean.dtype,
        )
        return self.mean + self.std * eps

    def _config(self) -> dict:
        return {**super()._config(), "kl_samples": self.kl_samples}


class GaussianGroup(ParameterGroup):
    """Full-covariance Gaussian ``q = N(mean, L Lᵀ)`` with a learnable Cholesky factor.

    ``L`` is the strictly lower triangle of ``raw_scale_tril`` plus
    ``exp(diag(raw_scale_tril))`` on the diagonal, so it is always a valid
    factor. Use it when posterior correlations matter.

    Args:
        name: block label.
        num_params: block size.
        prior: prior (default standard normal).
        init_scale: initial means are ``init_scale * N(0, 1)``.
        init_std: initial marginal standard deviation (``L = init_std * I``).
        kl_samples: draws of the MC KL estimate when no closed form exists.

    Example:
        >>> group = GaussianGroup("weights", num_params=2)
        >>> group.variational_distribution().rsample().shape
        torch.Size([2])
    """

    def __init__(
        self,
        name: str,
        num_params: int,
        prior: Prior | None = None,
        init_scale: float = 0.1,
        init_std: float = 1e-2,
        kl_samples: int = DEFAULT_KL_SAMPLES,
    ):
        super().__init__(name, num_params, prior)
        _check_positive_float(init_std, "init_std")
        self.kl_samples = check_positive_int(kl_samples, "kl_samples")
        self.mean = nn.Parameter(init_scale * torch.randn(self.num_params))
        self.raw_scale_tril = nn.Parameter(
            torch.diag(torch.full((self.num_params,), math.log(init_std)))
        )

    @property
    def scale_tril(self) -> torch.Tensor:
        """The lower-triangular factor ``L`` with a positive diagonal."""
        raw = self.raw_scale_tril
        return torch.tril(raw, -1) + torch.diag_embed(torch.diagonal(raw).exp())

    @property
    def covariance_matrix(self) -> torch.Tensor:
        """``L Lᵀ``."""
        tril = self.scale_tril
        return tril @ tril.T

    def variational_distribution(self) -> td.Distribution:
        """``MultivariateNormal(mean, scale_tril=L)``."""
        return td.MultivariateNormal(self.mean, scale_tril=self.scale_tril, validate_args=False)

    def sample_parameters(self, num_samples: int = 1) -> torch.Tensor:
        """Reparameterised draws ``mean + L ε``: ``(num_samples, num_params)``."""
        eps = torch.randn(
            check_samples(num_samples),
            self.num_params,
            device=self.mean.device,
            dtype=self.mean.dtype,
        )
        return self.mean + eps @ self.scale_tril.T

    def _config(self) -> dict:
        return {**super()._config(), "kl_samples": self.kl_samples}


class LowRankGaussianGroup(ParameterGroup):
    """Gaussian with low-rank plus diagonal covariance ``U Uᵀ + diag(d)``.

    Captures the ``rank`` dominant correlations with ``O(num_params * rank)``
    parameters instead of a full Cholesky factor; ``d = exp(log_cov_diag)``.

    Args:
        name: block label.
        num_params: block size.
        rank: columns of ``U``, in ``[1, num_params]``.
        prior: prior (default standard normal).
        init_scale: initial means are ``init_scale * N(0, 1)``.
        init_std: initial standard deviation of the diagonal part; ``U`` starts
            at ``init_std * N(0, 1) / sqrt(rank)``.
        kl_samples: draws of the MC KL estimate when no closed form exists.

    Example:
        >>> group = LowRankGaussianGroup("weights", num_params=8, rank=3)
        >>> group.sample_parameters(4).shape
        torch.Size([4, 8])
    """

    def __init__(
        self,
        name: str,
        num_params: int,
        rank: int,
        prior: Prior | None = None,
        init_scale: float = 0.1,
        init_std: float = 1e-2,
        kl_samples: int = DEFAULT_KL_SAMPLES,
    ):
        super().__init__(name, num_params, prior)
        self.rank = check_positive_int(rank, "rank")
        if self.rank > self.num_params:
            raise ConfigError(f"rank: expected an integer in [1, {self.num_params}], got {rank}")
        _check_positive_float(init_std, "init_std")
        self.kl_samples = check_positive_int(kl_samples, "kl_samples")
        self.mean = nn.Parameter(init_scale * torch.randn(self.num_params))
        self.cov_factor = nn.Parameter(
            init_std * torch.randn(self.num_params, self.rank) / self.rank**0.5
        )
        self.log_cov_diag = nn.Parameter(torch.full((self.num_params,), 2 * math.log(init_std)))

    @property
    def cov_diag(self) -> torch.Tensor:
        """The positive diagonal ``d``."""
        return self.log_cov_diag.exp()

    @property
    def covariance_matrix(self) -> torch.Tensor:
        """``U Uᵀ + diag(d)``."""
        return self.cov_factor @ self.cov_factor.T + torch.diag_embed(self.cov_diag)

    def variational_distribution(self) -> td.Distribution:
        """``LowRankMultivariateNormal(mean, cov_factor=U, cov_diag=d)``."""
        return td.LowRankMultivariateNormal(
            self.mean, self.cov_factor, self.cov_diag, validate_args=False
        )

    def sample_parameters(self, num_samples: int = 1) -> torch.Tensor:
        """Reparameterised draws ``mean + U η + sqrt(d) ε``: ``(num_samples, num_params)``."""
        s = check_samples(num_samples)
        kw = {"device": self.mean.device, "dtype": self.mean.dtype}
        eta = torch.randn(s, self.rank, **kw)
        eps = torch.randn(s, self.num_params, **kw)
        return self.mean + eta @ self.cov_factor.T + self.cov_diag.sqrt() * eps

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}"

    def _config(self) -> dict:
        return {**super()._config(), "rank": self.rank, "kl_samples": self.kl_samples}


class LangevinGroup(ParameterGroup):
    """Implicit posterior sampled by unadjusted Langevin dynamics with a learned score.

    Particles start from ``N(0, init_std² I)`` and take ``num_steps`` steps
    ``θ ← θ + h s(θ) + sqrt(2h) ξ`` with ``ξ ~ N(0, I)``, where ``s`` is the
    ``score_model`` evaluated with the group's learnable ``score_params``. The
    chain is differentiable, so the score model trains through the samples.

    Args:
        name: block label.
        num_params: block size.
        score_model: a surrogate with ``num_inputs == num_outputs == num_params``
            (typically a :class:`~orrery.polymix.surrogate_models.NeuralNetwork`).
        prior: prior used by :meth:`distribution_loss` (default standard normal).
        step_size: ``h > 0``.
        num_steps: Langevin steps per call (>= 1).
        num_particles: particles drawn when ``num_samples`` is not given.
        init_std: standard deviation of the initial particles.
        init_scale: the score parameters start at ``init_scale * N(0, 1)``.

    Example:
        >>> from orrery.polymix.surrogate_models import NeuralNetwork
        >>> score = NeuralNetwork(num_inputs=6, num_outputs=6, width=16, depth=2)
        >>> group = LangevinGroup("coeffs", num_params=6, score_model=score)
        >>> group.sample_parameters(num_samples=8).shape
        torch.Size([8, 6])
    """

    def __init__(
        self,
        name: str,
        num_params: int,
        score_model: SurrogateModel,
        prior: Prior | None = None,
        step_size: float = 1e-2,
        num_steps: int = 50,
        num_particles: int = 16,
        init_std: float = 1.0,
        init_scale: float = 0.1,
    ):
        super().__init__(name, num_params, prior)
        if not isinstance(score_model, SurrogateModel):
            raise ConfigError(
                f"score_model: expected a SurrogateModel, got {type(score_model).__name__}"
            )
        if score_model.num_inputs != self.num_params or score_model.num_outputs != self.num_params:
            raise ConfigError(
                "score_model: expected num_inputs == num_outputs == num_params = "
                f"{self.num_params}, got num_inputs={score_model.num_inputs}, "
                f"num_outputs={score_model.num_outputs}"
            )
        self.score_model = score_model
        self.step_size = _check_positive_float(step_size, "step_size")
        self.num_steps = check_positive_int(num_steps, "num_steps")
        self.num_particles = check_positive_int(num_particles, "num_particles")
        self.init_std = _check_positive_float(init_std, "init_std")
        self.score_params = nn.Parameter(init_scale * torch.randn(score_model.num_params()))
        self._particles: torch.Tensor | None = None

    def score(self, theta: torch.Tensor) -> torch.Tensor:
        """The learned score ``s(θ)`` for ``θ`` of shape ``(S, num_params)``."""
        return self.score_model(theta, self.score_params.unsqueeze(0))[0]

    def sample_parameters(self, num_samples: int | None = None) -> torch.Tensor:
        """Run the Langevin chain and return its final particles.

        Args:
            num_samples: number of particles (default ``num_particles``).

        Returns:
            ``(num_samples, num_params)``; also kept for :meth:`distribution_loss`.
        """
        s = self.num_particles if num_samples is None else check_samples(num_samples)
        ref = self.score_params
        theta = self.init_std * torch.randn(s, self.num_params, device=ref.device, dtype=ref.dtype)
        noise_scale = math.sqrt(2.0 * self.step_size)
        for _ in range(self.num_steps):  # sequential in time; all particles move together
            theta = (
                theta + self.step_size * self.score(theta) + noise_scale * torch.randn_like(theta)
            )
        self._particles = theta
        return theta

    def distribution_loss(self) -> torch.Tensor:
        """MC estimate of the cross-entropy ``-E_q[log p(θ)]`` over the latest particles.

        The particles of the last :meth:`sample_parameters` call are used once
        (so a training step pairs its forward pass with its loss); when there
        are none, a fresh set of ``num_particles`` is drawn.
        """
        theta = self._particles if self._particles is not None else self.sample_parameters()
        self._particles = None
        return -self.prior_distribution().log_prob(theta).mean()

    def variational_distribution(self) -> td.Distribution:
        """Always raises: Langevin sampling defines ``q`` only implicitly."""
        raise NoVariationalDistributionError(
            f"LangevinGroup {self.name!r} defines an implicit posterior through its sampler; "
            "use sample_parameters() instead"
        )

    @property
    def analytic_kl(self) -> bool:
        return False

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, step_size={self.step_size}, num_steps={self.num_steps}, "
            f"num_particles={self.num_particles}"
        )

    def _config(self) -> dict:
        return {
            **super()._config(),
            "step_size": self.step_size,
            "num_steps": self.num_steps,
            "num_particles": self.num_particles,
            "init_std": self.init_std,
        }
