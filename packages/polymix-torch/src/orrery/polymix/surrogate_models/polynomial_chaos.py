"""Total-order Legendre polynomial chaos expansions and their Sobol indices."""

from __future__ import annotations

import itertools
from math import comb
from typing import NamedTuple

import torch

from orrery.interface import ShapeError, check_positive_int

from .._checks import check_inputs
from .base import SurrogateModel

__all__ = [
    "PolynomialChaosExpansion",
    "SobolIndices",
    "legendre_polynomials",
    "total_order_indices",
]


def total_order_indices(num_inputs: int, degree: int) -> torch.Tensor:
    """Multi-indices ``α`` with ``|α| <= degree``, grouped by total degree.

    Within one total degree the indices are in descending lexicographic order,
    so for two inputs and degree 2: ``00, 10, 01, 20, 11, 02``.

    Returns:
        ``(num_terms, num_inputs)`` integer tensor.
    """
    rows: list[tuple[int, ...]] = []
    for total in range(degree + 1):
        level = [
            a for a in itertools.product(range(total + 1), repeat=num_inputs) if sum(a) == total
        ]
        rows.extend(sorted(level, reverse=True))
    return torch.tensor(rows, dtype=torch.long).reshape(len(rows), num_inputs)


def legendre_polynomials(x: torch.Tensor, degree: int) -> torch.Tensor:
    """Legendre polynomials ``P_0 … P_degree`` at ``x`` by the three-term recurrence.

    ``(n + 1) P_{n+1} = (2n + 1) x P_n - n P_{n-1}``. Computed in ``x``'s dtype
    and differentiable with respect to ``x``.

    Args:
        x: any shape.
        degree: highest degree (>= 0).

    Returns:
        ``x.shape + (degree + 1,)``.
    """
    polys = [torch.ones_like(x)]
    if degree >= 1:
        polys.append(x)
    for n in range(1, degree):
        polys.append(((2 * n + 1) * x * polys[n] - n * polys[n - 1]) / (n + 1))
    return torch.stack(polys, dim=-1)


class SobolIndices(NamedTuple):
    """Variance-based sensitivity indices derived from PCE coefficients.

    Attributes:
        first_order: ``(..., num_outputs, num_inputs)`` main-effect indices.
        total: ``(..., num_outputs, num_inputs)`` total-effect indices.
        mean: ``(..., num_outputs)`` mean of the expansion (the constant term).
        variance: ``(..., num_outputs)`` total variance of the expansion.
    """

    first_order: torch.Tensor
    total: torch.Tensor
    mean: torch.Tensor
    variance: torch.Tensor


class PolynomialChaosExpansion(SurrogateModel):
    """Polynomial chaos expansion on the total-order Legendre basis.

    Inputs are expected on ``[-1, 1]`` (the Legendre polynomials are orthogonal
    for the uniform measure there). The basis holds ``C(num_inputs + degree,
    degree)`` terms grouped by total degree (see :func:`total_order_indices`);
    the parameter vector holds the coefficients output by output: parameter
    ``o * num_terms + t`` multiplies term ``t`` of output ``o``.

    Args:
        num_inputs: input dimension.
        degree: maximum total degree (>= 0).
        num_outputs: number of outputs.

    Example:
        >>> surrogate = PolynomialChaosExpansion(num_inputs=1, degree=2)
        >>> params = torch.randn(5, surrogate.num_params())
        >>> x = torch.linspace(-1, 1, 20).unsqueeze(-1)
        >>> surrogate(x, params).shape
        torch.Size([5, 20, 1])
    """

    multi_indices: torch.Tensor

    def __init__(self, num_inputs: int, degree: int, num_outputs: int = 1):
        super().__init__(num_inputs, num_outputs)
        self.degree = check_positive_int(degree, "degree", minimum=0)
        alpha = total_order_indices(self.num_inputs, self.degree)
        self.register_buffer("multi_indices", alpha, persistent=False)

    @property
    def num_terms(self) -> int:
        """``C(num_inputs + degree, degree)``: the size of the total-order basis."""
        return comb(self.num_inputs + self.degree, self.degree)

    def num_params(self) -> int:
        """Return ``num_terms * num_outputs``."""
        return self.num_terms * self.num_outputs

    def norms(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Squared norms ``E[Ψ_t(u)²] = ∏_j 1/(2 α_tj + 1)`` under the uniform measure.

        Returns:
            ``(num_terms,)`` tensor in ``dtype`` (default: the default dtype).
        """
        dtype = dtype or torch.get_default_dtype()
        return (1.0 / (2.0 * self.multi_indices.to(dtype) + 1.0)).prod(dim=1)

    def basis(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluate every basis polynomial at every point.

        Args:
            x: ``(N, num_inputs)`` inputs in ``[-1, 1]``.

        Returns:
            ``(N, num_terms)`` design matrix, in ``x``'s dtype.
        """
        check_inputs(x, self.num_inputs)
        p1d = legendre_polynomials(x, self.degree)  # (N, d, p + 1)
        idx = self.multi_indices.T.unsqueeze(0).expand(x.shape[0], -1, -1)  # (N, d, T)
        return torch.gather(p1d, 2, idx).prod(dim=1)

    def forward(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Evaluate the expansion for every coefficient sample.

        Args:
            x: ``(N, num_inputs)`` inputs in ``[-1, 1]``.
            params: ``(S, num_params())`` coefficients.

        Returns:
            ``(S, N, num_outputs)`` outputs.
        """
        self._check(x, params)
        coef = params.reshape(params.shape[0], self.num_outputs, self.num_terms)
        return torch.einsum("nt,sot->sno", self.basis(x), coef)

    def sobol_indices(self, coefficients: torch.Tensor) -> SobolIndices:
        """First-order and total Sobol indices of the expansion.

        With orthogonal terms the variance splits exactly: term ``t`` contributes
        ``c_t² ∏_j 1/(2 α_tj + 1)``. The first-order index of input ``i`` sums the
        terms that involve input ``i`` only; the total index every term that
        involves input ``i`` at all. Inputs are taken as independent and
        uniform on ``[-1, 1]``.

        Args:
            coefficients: ``(num_params(),)`` for one expansion or
                ``(S, num_params())`` for a batch (e.g. posterior samples).

        Returns:
            :class:`SobolIndices` whose leading axis is ``S`` when a batch was given.

        Raises:
            ShapeError: when the last axis is not ``num_params()`` long.
        """
        c = coefficients
        if c.ndim not in (1, 2) or c.shape[-1] != self.num_params():
            raise ShapeError(
                f"coefficients: expected shape ({self.num_params()},) or (S, {self.num_params()}), "
                f"got {tuple(c.shape)}"
            )
        c = c.reshape(*c.shape[:-1], self.num_outputs, self.num_terms)
        part = c[..., 1:] ** 2 * self.norms(c.dtype)[1:]  # (..., out, T-1)
        variance = part.sum(-1)
        involved = (self.multi_indices[1:] > 0).to(c.dtype)  # (T-1, d)
        only = involved * (involved.sum(1, keepdim=True) == 1).to(c.dtype)
        denom = variance.unsqueeze(-1)
        first = (part @ only) / denom
        total = (part @ involved) / denom
        return SobolIndices(first_order=first, total=total, mean=c[..., 0], variance=variance)

    def _config(self) -> dict:
        return {
            "num_inputs": self.num_inputs,
            "degree": self.degree,
            "num_outputs": self.num_outputs,
        }

    @classmethod
    def _from_config(cls, config: dict) -> PolynomialChaosExpansion:
        return cls(**config)
