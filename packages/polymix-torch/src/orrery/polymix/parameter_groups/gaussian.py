"""Gaussian variational families: mean-field, full covariance and low rank plus diagonal.

The trainable tensors, their names, shapes and initial values are those of
pypolymix 0.1.9, so its `state_dict`s load here unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.distributions as td
import torch.nn.functional as F
from torch import nn

from orrery.interface import (
    ConfigError,
    ShapeError,
    ValueDomainError,
    check_nonnegative_float,
    check_positive_float,
    check_positive_int,
)

from .._checks import check_samples
from .._kl import DEFAULT_KL_SAMPLES
from ..priors import Prior
from .base import ParameterGroup

__all__ = ["GaussianGroup", "IIDGaussianGroup", "LowRankGaussianGroup"]

_DEFAULT_IID_STD = math.exp(-0.5)


def _inverse_softplus(value: float) -> torch.Tensor:
    """`log(expm1(value))` in the default dtype, as pypolymix computes it."""
    return torch.log(torch.expm1(torch.tensor(value)))


def _raw_diagonal(init_scale_diag: float, jitter: float) -> torch.Tensor:
    check_positive_float(init_scale_diag, "init_scale_diag")
    return _inverse_softplus(max(init_scale_diag - jitter, 1e-12))


class IIDGaussianGroup(ParameterGroup):
    """Mean-field Gaussian `q = N(mean, diag(std²))` with `std = exp(log_std)`.

    Trainable tensors `mean` and `log_std`, both `(num_params,)`; they start
    at `N(0, 1)` draws and `-0.5` (std ≈ 0.607), as in pypolymix.

    Args:
        name: block label.
        num_params: block size.
        prior: prior (default standard normal).
        kl_num_mc_samples: draws of the MC KL estimate when no closed form exists.
        kl_estimator: `"exact"` or `"upstream"` (see `ParameterGroup`).
        init_scale: initial means are `init_scale * N(0, 1)`.
        init_std: initial standard deviation of every parameter.

    Example:
        >>> group = IIDGaussianGroup("weights", num_params=4)
        >>> group.sample_parameters(16).shape
        torch.Size([16, 4])
        >>> round(group.std[0].item(), 3)
        0.607
    """

    def __init__(
        self,
        name: str,
        num_params: int,
        prior: Prior | None = None,
        *,
        kl_num_mc_samples: int = DEFAULT_KL_SAMPLES,
        kl_estimator: str = "exact",
        init_scale: float = 1.0,
        init_std: float = _DEFAULT_IID_STD,
    ):
        super().__init__(name, num_params, prior, kl_num_mc_samples, kl_estimator=kl_estimator)
        scale = check_nonnegative_float(init_scale, "init_scale")
        log_std = (
            -0.5
            if init_std == _DEFAULT_IID_STD
            else math.log(check_positive_float(init_std, "init_std"))
        )
        self.mean = nn.Parameter(scale * torch.randn(self.num_params))
        self.log_std = nn.Parameter(torch.full((self.num_params,), log_std))

    @property
    def std(self) -> torch.Tensor:
        """Positive standard deviations `exp(log_std)`."""
        return self.log_std.exp()

    def variational_distribution(self) -> td.Distribution:
        """`Independent(Normal(mean, std), 1)`."""
        return td.Independent(td.Normal(self.mean, self.std, validate_args=False), 1)

    def sample_parameters(self, num_samples: int = 1) -> torch.Tensor:
        """Reparameterised draws `mean + std * ε`: `(num_samples, num_params)`."""
        eps = torch.randn(
            check_samples(num_samples),
            self.num_params,
            device=self.mean.device,
            dtype=self.mean.dtype,
        )
        return self.mean + self.std * eps


class GaussianGroup(ParameterGroup):
    """Full-covariance Gaussian `q = N(mean, L Lᵀ)` with a learnable Cholesky factor.

    `L` is stored packed: `raw_tril` holds the `num_params (num_params + 1) / 2`
    entries of the lower triangle in `torch.tril_indices` (row-major) order;
    off-diagonal entries are used as they are and diagonal ones through
    `softplus(raw) + jitter`, so `L` is always a valid factor. `mean` starts at
    zero and `L` at `init_scale_diag * I`. Use it when posterior correlations
    matter.

    Args:
        name: block label.
        num_params: block size.
        prior: prior (default standard normal).
        kl_num_mc_samples: draws of the MC KL estimate when no closed form exists.
        kl_estimator: `"exact"` or `"upstream"` (see `ParameterGroup`).
        init_scale_diag: initial marginal standard deviation (> 0).
        jitter: added to the diagonal of `L` (>= 0).

    Example:
        >>> group = GaussianGroup("weights", num_params=2)
        >>> group.variational_distribution().rsample().shape
        torch.Size([2])
        >>> group.raw_tril.shape
        torch.Size([3])
        >>> torch.diagonal(group.scale_tril)
        tensor([0.1000, 0.1000], grad_fn=<DiagonalBackward0>)
    """

    _tri_i: torch.Tensor
    _tri_j: torch.Tensor
    _tri_diag: torch.Tensor

    def __init__(
        self,
        name: str,
        num_params: int,
        prior: Prior | None = None,
        *,
        kl_num_mc_samples: int = DEFAULT_KL_SAMPLES,
        kl_estimator: str = "exact",
        init_scale_diag: float = 1e-1,
        jitter: float = 1e-6,
    ):
        super().__init__(name, num_params, prior, kl_num_mc_samples, kl_estimator=kl_estimator)
        d = self.num_params
        self.jitter = check_nonnegative_float(jitter, "jitter")
        self.mean = nn.Parameter(torch.zeros(d))
        self.raw_tril = nn.Parameter(torch.zeros(d * (d + 1) // 2))
        i, j = torch.tril_indices(d, d, 0)
        self.register_buffer("_tri_i", i, persistent=False)
        self.register_buffer("_tri_j", j, persistent=False)
        self.register_buffer("_tri_diag", i == j, persistent=False)
        with torch.no_grad():
            self.raw_tril[self._tri_diag] = _raw_diagonal(init_scale_diag, self.jitter)

    @property
    def scale_tril(self) -> torch.Tensor:
        """The lower-triangular factor `L` (positive diagonal)."""
        d = self.num_params
        raw = self.raw_tril
        values = torch.where(self._tri_diag, F.softplus(raw) + self.jitter, raw)
        tril = torch.zeros(d, d, device=raw.device, dtype=raw.dtype)
        return tril.index_put((self._tri_i, self._tri_j), values)

    @property
    def _scale_tril(self) -> torch.Tensor:
        """pypolymix's name of `scale_tril`."""
        return self.scale_tril

    @property
    def covariance_matrix(self) -> torch.Tensor:
        """`L Lᵀ`."""
        tril = self.scale_tril
        return tril @ tril.T

    def set_scale_tril(self, scale_tril: torch.Tensor) -> None:
        """Set `raw_tril` so that `scale_tril` equals the given factor.

        Args:
            scale_tril: `(num_params, num_params)` lower-triangular factor whose
                diagonal exceeds `jitter`.

        Raises:
            ShapeError: for a wrong shape.
            ValueDomainError: for non-finite values, non-zero entries above the
                diagonal, or a diagonal not above `jitter`.
        """
        d = self.num_params
        if not isinstance(scale_tril, torch.Tensor) or tuple(scale_tril.shape) != (d, d):
            got = tuple(scale_tril.shape) if isinstance(scale_tril, torch.Tensor) else scale_tril
            raise ShapeError(f"scale_tril: expected a ({d}, {d}) tensor, got {got!r}")
        if not bool(torch.isfinite(scale_tril).all()):
            raise ValueDomainError("scale_tril: expected finite values")
        if not torch.equal(scale_tril, torch.tril(scale_tril)):
            # an upper factor would otherwise lose its off-diagonal entries silently
            raise ValueDomainError(
                "scale_tril: expected a lower-triangular factor (zeros above the diagonal)"
            )
        diag = torch.diagonal(scale_tril) - self.jitter
        if not bool((diag > 0).all()):
            raise ValueDomainError(f"scale_tril: expected a diagonal above jitter={self.jitter}")
        raw = scale_tril[self._tri_i, self._tri_j].clone()
        raw[self._tri_diag] = diag + torch.log(-torch.expm1(-diag))  # inverse softplus
        with torch.no_grad():
            self.raw_tril.copy_(raw)

    def variational_distribution(self) -> td.Distribution:
        """`MultivariateNormal(mean, scale_tril=L)`."""
        return td.MultivariateNormal(self.mean, scale_tril=self.scale_tril, validate_args=False)

    def sample_parameters(self, num_samples: int = 1) -> torch.Tensor:
        """Reparameterised draws `mean + L ε`: `(num_samples, num_params)`."""
        eps = torch.randn(
            check_samples(num_samples),
            self.num_params,
            device=self.mean.device,
            dtype=self.mean.dtype,
        )
        return self.mean + eps @ self.scale_tril.T

    def _config(self) -> dict:
        return {**super()._config(), "jitter": self.jitter}


class LowRankGaussianGroup(ParameterGroup):
    """Gaussian with low-rank plus diagonal covariance `U Uᵀ + diag(d)`.

    Captures the `rank` dominant correlations with `O(num_params * rank)`
    parameters. Trainable tensors: `mean` (starts at zero), `cov_factor`
    (`U`, `(num_params, rank)`, starts at `init_scale_factor * N(0, 1)`) and
    `raw_cov_diag` with `d = softplus(raw_cov_diag) + jitter` (starts at
    `init_scale_diag`).

    Args:
        name: block label.
        num_params: block size.
        rank: columns of `U`, in `[1, num_params]`.
        prior: prior (default standard normal).
        kl_num_mc_samples: draws of the MC KL estimate when no closed form exists.
        kl_estimator: `"exact"` or `"upstream"` (see `ParameterGroup`).
        init_scale_diag: initial value of `d` (> 0).
        init_scale_factor: scale of the initial `U` (>= 0).
        jitter: added to `d` (>= 0).

    Raises:
        ConfigError: when `rank` is outside `[1, num_params]` (also a `ValueError`).

    Example:
        >>> group = LowRankGaussianGroup("weights", num_params=8, rank=3)
        >>> group.sample_parameters(4).shape
        torch.Size([4, 8])
        >>> group.cov_factor.shape, group.raw_cov_diag.shape
        (torch.Size([8, 3]), torch.Size([8]))
    """

    def __init__(
        self,
        name: str,
        num_params: int,
        rank: int,
        prior: Prior | None = None,
        *,
        kl_num_mc_samples: int = DEFAULT_KL_SAMPLES,
        kl_estimator: str = "exact",
        init_scale_diag: float = 1e-1,
        init_scale_factor: float = 1e-1,
        jitter: float = 1e-6,
    ):
        super().__init__(name, num_params, prior, kl_num_mc_samples, kl_estimator=kl_estimator)
        self.rank = check_positive_int(rank, "rank")
        if self.rank > self.num_params:
            raise ConfigError(f"rank: expected an integer in [1, {self.num_params}], got {rank}")
        self.jitter = check_nonnegative_float(jitter, "jitter")
        factor = check_nonnegative_float(init_scale_factor, "init_scale_factor")
        raw_diag = _raw_diagonal(init_scale_diag, self.jitter)
        self.mean = nn.Parameter(torch.zeros(self.num_params))
        self.cov_factor = nn.Parameter(torch.randn(self.num_params, self.rank) * factor)
        self.raw_cov_diag = nn.Parameter(torch.full((self.num_params,), float(raw_diag)))

    @property
    def cov_diag(self) -> torch.Tensor:
        """The positive diagonal `d = softplus(raw_cov_diag) + jitter`."""
        return F.softplus(self.raw_cov_diag) + self.jitter

    @property
    def _cov_diag(self) -> torch.Tensor:
        """pypolymix's name of `cov_diag`."""
        return self.cov_diag

    @property
    def covariance_matrix(self) -> torch.Tensor:
        """`U Uᵀ + diag(d)`."""
        return self.cov_factor @ self.cov_factor.T + torch.diag_embed(self.cov_diag)

    def variational_distribution(self) -> td.Distribution:
        """`LowRankMultivariateNormal(mean, cov_factor=U, cov_diag=d)`."""
        return td.LowRankMultivariateNormal(
            self.mean, self.cov_factor, self.cov_diag, validate_args=False
        )

    def sample_parameters(self, num_samples: int = 1) -> torch.Tensor:
        """Reparameterised draws `mean + U η + sqrt(d) ε`: `(num_samples, num_params)`."""
        s = check_samples(num_samples)
        kw = {"device": self.mean.device, "dtype": self.mean.dtype}
        eta = torch.randn(s, self.rank, **kw)
        eps = torch.randn(s, self.num_params, **kw)
        return self.mean + eta @ self.cov_factor.T + self.cov_diag.sqrt() * eps

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}"

    def _config(self) -> dict:
        return {**super()._config(), "rank": self.rank, "jitter": self.jitter}
