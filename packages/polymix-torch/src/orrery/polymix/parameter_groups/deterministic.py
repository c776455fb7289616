"""A point-estimate parameter group (MAP for its block)."""

from __future__ import annotations

import torch
import torch.distributions as td
from torch import nn

from orrery.interface import check_nonnegative_float

from .._checks import check_samples
from .._kl import DEFAULT_KL_SAMPLES
from ..priors import Prior
from .base import NoVariationalDistributionError, ParameterGroup

__all__ = ["DeterministicGroup"]


class DeterministicGroup(ParameterGroup):
    """A point estimate: every "sample" is the same learnable vector `params`.

    Its loss is the negative log prior density at the point, so training gives
    a MAP estimate for this block.

    Args:
        name: block label.
        num_params: block size.
        prior: prior (default standard normal).
        kl_num_mc_samples: unused (a point estimate has no KL); kept for a
            uniform signature.
        init_scale: the initial value is `init_scale * N(0, 1)` (pypolymix:
            1; 0 gives zeros).
        kl_estimator: unused, as `kl_num_mc_samples`.

    Example:
        >>> group = DeterministicGroup("weights", num_params=3)
        >>> group.sample_parameters(2).shape
        torch.Size([2, 3])
        >>> group.params.shape
        torch.Size([3])
    """

    def __init__(
        self,
        name: str,
        num_params: int,
        prior: Prior | None = None,
        *,
        kl_num_mc_samples: int = DEFAULT_KL_SAMPLES,
        init_scale: float = 1.0,
        kl_estimator: str = "exact",
    ):
        super().__init__(name, num_params, prior, kl_num_mc_samples, kl_estimator=kl_estimator)
        scale = check_nonnegative_float(init_scale, "init_scale")
        self.params = nn.Parameter(scale * torch.randn(self.num_params))

    @property
    def value(self) -> torch.Tensor:
        """The point estimate (the same tensor as `params`)."""
        return self.params

    def sample_parameters(self, num_samples: int = 1) -> torch.Tensor:
        """Return `params` repeated `num_samples` times: `(num_samples, num_params)`."""
        return self.params.unsqueeze(0).expand(check_samples(num_samples), -1)

    def variational_distribution(self) -> td.Distribution:
        """Always raises `NoVariationalDistributionError`: a point has no distribution."""
        raise NoVariationalDistributionError(
            f"DeterministicGroup {self.name!r} is a point estimate and has no variational "
            "distribution; use sample_parameters() or .params"
        )

    def distribution_loss(self) -> torch.Tensor:
        """`-log p(params)`."""
        return -self.prior_distribution().log_prob(self.params)

    @property
    def analytic_kl(self) -> bool:
        return True
