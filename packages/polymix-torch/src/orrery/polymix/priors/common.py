"""The priors shipped with the package: IID Gaussian, full Gaussian, IID Laplace."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributions as td

from orrery.interface import ConfigError, ShapeError, ValueDomainError

from .base import Prior

__all__ = ["GaussianPrior", "IIDGaussianPrior", "LaplacePrior"]


def _buffer(value: Any, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        # a floating tensor is kept as given (pypolymix's `torch.as_tensor`): a learnable
        # hyper-parameter keeps its gradient and the prior sees every optimiser step
        return value if torch.is_floating_point(value) else value.to(torch.get_default_dtype())
    try:
        return torch.as_tensor(value, dtype=torch.get_default_dtype())
    except (TypeError, ValueError, RuntimeError) as err:
        raise ConfigError(f"{name}: expected a float or a tensor, got {value!r}") from err


def _check_finite(t: torch.Tensor, name: str) -> None:
    if not bool(torch.isfinite(t).all()):
        raise ValueDomainError(f"{name}: expected finite values, got {t.tolist()!r}")


def _check_positive(t: torch.Tensor, name: str) -> None:
    if not bool(torch.isfinite(t).all()) or bool((t <= 0).any()):
        raise ValueDomainError(f"{name}: expected finite values > 0, got {t.tolist()!r}")


def _to(t: torch.Tensor, device: Any, dtype: Any) -> torch.Tensor:
    return t.to(device=device if device is not None else t.device, dtype=dtype or t.dtype)


def _event_shape(event_shape: Any) -> torch.Size:
    if isinstance(event_shape, int):
        return torch.Size([event_shape])
    shape = torch.Size(event_shape)
    if len(shape) != 1:
        raise ShapeError(f"event_shape: expected one dimension (num_params,), got {tuple(shape)}")
    return shape


def _independent(family, loc, scale, event_shape, device, dtype, what: str) -> td.Distribution:
    """``Independent(family(loc, scale), 1)`` with loc/scale broadcast to ``event_shape``.

    ``what`` names the prior and its parameter shapes in the error message.
    """
    shape = _event_shape(event_shape)
    try:
        loc = _to(loc, device, dtype).expand(shape)
        scale = _to(scale, device, dtype).expand(shape)
    except RuntimeError as err:
        raise ShapeError(f"{what} do not broadcast to event shape {tuple(shape)}") from err
    return td.Independent(family(loc, scale, validate_args=False), 1)


class IIDGaussianPrior(Prior):
    """Independent Gaussian prior ``N(mean, std²)`` on every parameter.

    Args:
        mean: a float or a tensor broadcastable to ``(num_params,)``.
        std: a positive float or tensor broadcastable to ``(num_params,)``.

    Example:
        >>> prior = IIDGaussianPrior(mean=0.0, std=0.5)
        >>> prior.distribution(torch.Size([4]), None, None).sample().shape
        torch.Size([4])
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: float | torch.Tensor = 0.0, std: float | torch.Tensor = 1.0):
        super().__init__()
        mean_t, std_t = _buffer(mean, "mean"), _buffer(std, "std")
        _check_finite(mean_t, "mean")
        _check_positive(std_t, "std")
        self.register_buffer("mean", mean_t, persistent=False)
        self.register_buffer("std", std_t, persistent=False)

    def distribution(self, event_shape, device=None, dtype=None) -> td.Distribution:
        """Return ``Independent(Normal(mean, std), 1)`` broadcast to ``event_shape``."""
        what = f"IIDGaussianPrior: mean {tuple(self.mean.shape)} and std {tuple(self.std.shape)}"
        return _independent(td.Normal, self.mean, self.std, event_shape, device, dtype, what)


class LaplacePrior(Prior):
    """Independent Laplace prior, which favours sparse parameter vectors.

    Args:
        loc: a float or a tensor broadcastable to ``(num_params,)``.
        scale: a positive float or tensor broadcastable to ``(num_params,)``.

    Example:
        >>> prior = LaplacePrior(loc=0.0, scale=1e-1)
        >>> prior.distribution(torch.Size([3]), None, None).sample().shape
        torch.Size([3])
    """

    loc: torch.Tensor
    scale: torch.Tensor

    def __init__(self, loc: float | torch.Tensor = 0.0, scale: float | torch.Tensor = 1.0):
        super().__init__()
        loc_t, scale_t = _buffer(loc, "loc"), _buffer(scale, "scale")
        _check_finite(loc_t, "loc")
        _check_positive(scale_t, "scale")
        self.register_buffer("loc", loc_t, persistent=False)
        self.register_buffer("scale", scale_t, persistent=False)

    def distribution(self, event_shape, device=None, dtype=None) -> td.Distribution:
        """Return ``Independent(Laplace(loc, scale), 1)`` broadcast to ``event_shape``."""
        what = f"LaplacePrior: loc {tuple(self.loc.shape)} and scale {tuple(self.scale.shape)}"
        return _independent(td.Laplace, self.loc, self.scale, event_shape, device, dtype, what)


class GaussianPrior(Prior):
    """Full-covariance Gaussian prior ``N(mean, Σ)``.

    Give exactly one of ``covariance_matrix`` and ``scale_tril`` (the lower
    Cholesky factor of Σ); the factor is what is stored.

    Args:
        mean: ``(P,)`` mean vector.
        covariance_matrix: ``(P, P)`` symmetric positive-definite matrix.
        scale_tril: ``(P, P)`` lower-triangular factor with a positive diagonal.

    Raises:
        ConfigError: when neither or both of the matrices are given.
        ShapeError: when the shapes do not agree.
        ValueDomainError: when the covariance is not positive definite.

    Example:
        >>> prior = GaussianPrior(torch.zeros(2), covariance_matrix=torch.eye(2))
        >>> isinstance(prior.distribution(torch.Size([2]), None, None), td.MultivariateNormal)
        True
    """

    mean: torch.Tensor
    scale_tril: torch.Tensor

    def __init__(
        self,
        mean: torch.Tensor,
        covariance_matrix: torch.Tensor | None = None,
        scale_tril: torch.Tensor | None = None,
    ):
        super().__init__()
        if (covariance_matrix is None) == (scale_tril is None):
            raise ConfigError(
                "GaussianPrior: give exactly one of covariance_matrix and scale_tril, got "
                + ("neither" if covariance_matrix is None else "both")
            )
        # copies, as pypolymix's `clone()` (the factor is computed once, here)
        mean_t = _buffer(mean, "mean").detach().clone()
        if mean_t.ndim != 1:
            raise ShapeError(f"mean: expected shape (P,), got {tuple(mean_t.shape)}")
        _check_finite(mean_t, "mean")
        p = mean_t.shape[0]
        given = "covariance_matrix" if covariance_matrix is not None else "scale_tril"
        mat = _buffer(covariance_matrix if covariance_matrix is not None else scale_tril, given)
        mat = mat.detach().clone()
        if tuple(mat.shape) != (p, p):
            raise ShapeError(
                f"{given}: expected shape ({p}, {p}) to match mean, got {tuple(mat.shape)}"
            )
        mat = mat.to(mean_t.dtype)
        if covariance_matrix is not None:
            if not torch.allclose(mat, mat.T, rtol=1e-5, atol=1e-8):
                raise ValueDomainError("covariance_matrix: expected a symmetric matrix")
            tril, info = torch.linalg.cholesky_ex(mat)
            if int(info) != 0:
                raise ValueDomainError("covariance_matrix: expected a positive-definite matrix")
        else:
            if not torch.equal(mat, torch.tril(mat)):
                raise ValueDomainError("scale_tril: expected a lower-triangular matrix")
            diag = torch.diagonal(mat)
            if not bool((diag > 0).all()):
                raise ValueDomainError("scale_tril: expected a strictly positive diagonal")
            tril = mat
        self.register_buffer("mean", mean_t, persistent=False)
        self.register_buffer("scale_tril", tril, persistent=False)

    @property
    def covariance_matrix(self) -> torch.Tensor:
        """Σ = L Lᵀ."""
        return self.scale_tril @ self.scale_tril.T

    def distribution(self, event_shape, device=None, dtype=None) -> td.Distribution:
        """Check ``event_shape`` against the mean and return a ``MultivariateNormal``."""
        shape = _event_shape(event_shape)
        if shape != self.mean.shape:
            raise ShapeError(
                f"GaussianPrior: event shape {tuple(shape)} differs from the prior's mean "
                f"shape {tuple(self.mean.shape)}"
            )
        return td.MultivariateNormal(
            _to(self.mean, device, dtype),
            scale_tril=_to(self.scale_tril, device, dtype),
            validate_args=False,
        )
