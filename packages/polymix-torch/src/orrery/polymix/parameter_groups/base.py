"""The parameter-group interface: a variational family over one parameter block."""

from __future__ import annotations

import torch
import torch.distributions as td
from torch import nn

from orrery.interface import ConfigError, OrreryError, check_choice, check_positive_int

from .._checks import check_name
from .._kl import DEFAULT_KL_SAMPLES, KL_ESTIMATORS, kl_divergence
from ..priors import IIDGaussianPrior, Prior

__all__ = ["DEFAULT_KL_SAMPLES", "NoVariationalDistributionError", "ParameterGroup"]


class NoVariationalDistributionError(OrreryError, NotImplementedError, RuntimeError):
    """The group has no explicit `q(θ)` (a point estimate or an implicit sampler).

    It is a `RuntimeError` (what pypolymix raises) and a `NotImplementedError`.
    """


class ParameterGroup(nn.Module):
    """Base class of parameter groups.

    A group owns the trainable quantities that describe `q(θ)` for a block of
    `num_params` surrogate parameters, draws `(S, num_params)` samples from
    it, and returns its regulariser `distribution_loss()` against its prior.

    Args:
        name: a label for the block (the variable name used by `to_draws`).
        num_params: the block's size.
        prior: its prior (default: standard normal `IIDGaussianPrior()`).
        kl_num_mc_samples: draws of the Monte Carlo KL estimate, used only
            when no closed form exists.
        kl_estimator: `"exact"` (default) uses every closed form we know
            (including a Gaussian `q` against a full Gaussian or a Laplace
            prior); `"upstream"` reproduces pypolymix 0.1.9, which uses torch's
            registered closed forms only and a Monte Carlo estimate otherwise.

    Raises:
        ConfigError: for a bad name, size, prior or estimator.
    """

    def __init__(
        self,
        name: str,
        num_params: int,
        prior: Prior | None = None,
        kl_num_mc_samples: int = DEFAULT_KL_SAMPLES,
        *,
        kl_estimator: str = "exact",
    ):
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
        self.kl_num_mc_samples = check_positive_int(kl_num_mc_samples, "kl_num_mc_samples")
        self.kl_estimator = check_choice(kl_estimator, KL_ESTIMATORS, "kl_estimator")

    def _reference(self) -> torch.Tensor:
        """A tensor whose device and dtype the group's samples have."""
        return next(self.parameters())

    def prior_distribution(self) -> td.Distribution:
        """The prior over this block, on the group's device and in its dtype."""
        ref = self._reference()
        return self.prior.distribution(torch.Size([self.num_params]), ref.device, ref.dtype)

    def sample_parameters(self, num_samples: int = 1) -> torch.Tensor:
        """Draw `(num_samples, num_params)` parameter vectors."""
        raise NotImplementedError

    def variational_distribution(self) -> td.Distribution:
        """Return `q(θ)` as a `torch.distributions.Distribution`."""
        raise NotImplementedError

    def distribution_loss(self) -> torch.Tensor:
        """`KL(q‖p)` for this block, by the group's `kl_estimator`.

        A scalar, also for a user's `q` or prior with a batch shape: a closed form is
        summed over it (as pypolymix); so is a Monte Carlo estimate, except with
        `kl_estimator="upstream"`, which averages it over draws and entries as pypolymix.
        """
        kl, analytic = kl_divergence(
            self.variational_distribution(),
            self.prior_distribution(),
            self.kl_num_mc_samples,
            self.kl_estimator,
        )
        return kl.mean() if not analytic and self.kl_estimator == "upstream" else kl.sum()

    @property
    def analytic_kl(self) -> bool:
        """Whether `distribution_loss()` is a closed form (not a Monte Carlo estimate)."""
        with torch.no_grad():
            _, analytic = kl_divergence(
                self.variational_distribution(), self.prior_distribution(), 1, self.kl_estimator
            )
        return analytic

    def extra_repr(self) -> str:
        return f"name={self.name!r}, num_params={self.num_params}"

    def _config(self) -> dict:
        return {
            "name": self.name,
            "num_params": self.num_params,
            "kl_num_mc_samples": self.kl_num_mc_samples,
            "kl_estimator": self.kl_estimator,
        }
