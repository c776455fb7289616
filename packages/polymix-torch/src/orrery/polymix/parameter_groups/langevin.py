"""An implicit parameter group sampled by unadjusted Langevin dynamics."""

from __future__ import annotations

import math

import torch
import torch.distributions as td
from torch import nn

from orrery.interface import ConfigError, check_positive_float, check_positive_int

from .._checks import check_samples, domain_checks_off
from .._kl import DEFAULT_KL_SAMPLES
from ..priors import Prior
from ..surrogate_models.base import SurrogateModel
from .base import NoVariationalDistributionError, ParameterGroup

__all__ = ["LangevinGroup"]


class LangevinGroup(ParameterGroup):
    """Implicit posterior sampled by unadjusted Langevin dynamics with a learned score.

    Particles start from `N(0, init_std² I)` and take `num_diffusion_steps`
    steps `θ ← θ + h s(θ) + sqrt(2h) ξ` with `ξ ~ N(0, I)`. The score `s` is
    either a `score_model` (outputs `num_params` values) or the gradient with
    respect to `θ` of a scalar `energy_model` (one output, read as a
    log-density up to a constant, as in pypolymix). Either surrogate is
    evaluated with the group's learnable `surrogate_params` (starting at
    `0.01 * N(0, 1)`). The chain is differentiable, so the surrogate trains
    through the samples.

    Args:
        name: block label.
        num_params: block size.
        score_model: a surrogate with `num_inputs == num_outputs == num_params`
            (typically a `NeuralNetwork`).
        energy_model: a surrogate with `num_inputs == num_params` and one
            output; give exactly one of `score_model` and `energy_model`.
        prior: prior used by `distribution_loss()` (default standard normal).
        num_particles: particles drawn when `num_samples` is not given.
        num_diffusion_steps: Langevin steps per call (>= 1).
        step_size: `h > 0`.
        init_std: standard deviation of the initial particles.
        kl_num_mc_samples: unused (the loss is a cross-entropy over particles);
            kept for a uniform signature.
        kl_estimator: unused, as `kl_num_mc_samples`.

    Raises:
        ConfigError: for a missing or doubled surrogate, mismatched sizes or
            non-positive settings (also a `ValueError`, as upstream).

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
        score_model: SurrogateModel | None = None,
        energy_model: SurrogateModel | None = None,
        prior: Prior | None = None,
        *,
        num_particles: int = 32,
        num_diffusion_steps: int = 50,
        step_size: float = 1e-3,
        init_std: float = 1.0,
        kl_num_mc_samples: int = DEFAULT_KL_SAMPLES,
        kl_estimator: str = "exact",
    ):
        super().__init__(name, num_params, prior, kl_num_mc_samples, kl_estimator=kl_estimator)
        self.num_particles = check_positive_int(num_particles, "num_particles")
        self.num_diffusion_steps = check_positive_int(num_diffusion_steps, "num_diffusion_steps")
        self.step_size = check_positive_float(step_size, "step_size")
        self.init_std = check_positive_float(init_std, "init_std")
        if (score_model is None) == (energy_model is None):
            raise ConfigError(
                "score_model, energy_model: give exactly one of them, got "
                + ("neither" if score_model is None else "both")
            )
        mode = "score" if score_model is not None else "energy"
        surrogate = score_model if score_model is not None else energy_model
        if not isinstance(surrogate, SurrogateModel):
            raise ConfigError(
                f"{mode}_model: expected a SurrogateModel, got {type(surrogate).__name__}"
            )
        outputs = self.num_params if mode == "score" else 1
        if surrogate.num_inputs != self.num_params or surrogate.num_outputs != outputs:
            raise ConfigError(
                f"{mode}_model: expected num_inputs={self.num_params} (num_params) and "
                f"num_outputs={outputs}, got num_inputs={surrogate.num_inputs}, "
                f"num_outputs={surrogate.num_outputs}"
            )
        self._mode = mode
        self.score_model = score_model
        self.energy_model = energy_model
        self.surrogate_params = nn.Parameter(torch.randn(surrogate.num_params()) * 0.01)
        self._last_samples: torch.Tensor | None = None

    @property
    def mode(self) -> str:
        """`"score"` or `"energy"`: which surrogate drives the dynamics."""
        return self._mode

    def _energy(self, theta: torch.Tensor) -> torch.Tensor:
        """The scalar energy surrogate at every particle: `(S,)`."""
        if self.energy_model is None:
            raise ConfigError(f"LangevinGroup {self.name!r} has no energy_model")
        with domain_checks_off():  # particles are no chaos inputs: a PCE here is a polynomial
            return self.energy_model(theta, self.surrogate_params.unsqueeze(0))[0, :, 0]

    def _score(self, theta: torch.Tensor) -> torch.Tensor:
        """The score `s(θ)` at every particle: `(S, num_params)`."""
        if self.score_model is not None:
            with domain_checks_off():
                return self.score_model(theta, self.surrogate_params.unsqueeze(0))[0]
        create_graph = torch.is_grad_enabled()
        leaf = theta if theta.requires_grad else theta.detach().requires_grad_(True)
        with torch.enable_grad():
            energy = self._energy(leaf)
            (grad,) = torch.autograd.grad(energy.sum(), leaf, create_graph=create_graph)
        return grad

    def score(self, theta: torch.Tensor) -> torch.Tensor:
        """The learned score `s(θ)` for `θ` of shape `(S, num_params)`."""
        return self._score(theta)

    def sample_parameters(self, num_samples: int | None = None) -> torch.Tensor:
        """Run the Langevin chain and return its final particles.

        Args:
            num_samples: number of particles (default `num_particles`).

        Returns:
            `(num_samples, num_params)`; also cached for `distribution_loss()`.
        """
        s = self.num_particles if num_samples is None else check_samples(num_samples)
        ref = self.surrogate_params
        theta = torch.randn(s, self.num_params, device=ref.device, dtype=ref.dtype) * self.init_std
        noise_scale = math.sqrt(2.0 * self.step_size)
        for _ in range(self.num_diffusion_steps):  # sequential in time; particles move together
            drift = self.step_size * self._score(theta)
            theta = theta + drift + noise_scale * torch.randn_like(theta)
        self._last_samples = theta
        return theta

    def distribution_loss(self) -> torch.Tensor:
        """MC estimate of the cross-entropy `-E_q[log p(θ)]` over the cached particles.

        The particles of the latest `sample_parameters` call are used (every
        call until the next sampling reuses them, as in pypolymix); when there
        are none yet, `num_particles` are drawn first.
        """
        theta = self._last_samples if self._last_samples is not None else self.sample_parameters()
        ref = self.surrogate_params
        prior = self.prior.distribution(torch.Size([self.num_params]), ref.device, theta.dtype)
        return -prior.log_prob(theta).mean()

    def variational_distribution(self) -> td.Distribution:
        """Always raises `NoVariationalDistributionError`: `q` is only implicit."""
        raise NoVariationalDistributionError(
            f"LangevinGroup {self.name!r} defines an implicit posterior through its sampler; "
            "use sample_parameters() instead"
        )

    @property
    def analytic_kl(self) -> bool:
        return False

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, mode={self._mode!r}, step_size={self.step_size}, "
            f"num_diffusion_steps={self.num_diffusion_steps}, num_particles={self.num_particles}"
        )

    def _config(self) -> dict:
        return {
            **super()._config(),
            "num_particles": self.num_particles,
            "num_diffusion_steps": self.num_diffusion_steps,
            "step_size": self.step_size,
            "init_std": self.init_std,
        }
