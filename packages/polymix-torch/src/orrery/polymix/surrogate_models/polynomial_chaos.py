"""Total-order Legendre polynomial chaos expansions and their Sobol indices."""

from __future__ import annotations

from math import comb
from typing import NamedTuple

import torch

from orrery.interface import ConfigError, ShapeError, check_positive_int

from .._checks import check_domain, check_inputs, check_tensor
from .base import SurrogateModel

__all__ = [
    "PolynomialChaosExpansion",
    "SobolIndices",
    "legendre_polynomial_p",
    "legendre_polynomials",
    "total_order_indices",
]


def _compositions(total: int, parts: int) -> list[tuple[int, ...]]:
    """All tuples of `parts` non-negative integers summing to `total`, ascending lexicographic.

    Iterative (no recursion depth limit on `parts`): from a tuple, the next one
    moves one unit from the tail into the entry just before its last non-zero
    entry and puts the rest of the tail on the last entry.
    """
    a = [0] * (parts - 1) + [total]
    out = [tuple(a)]
    while True:
        last = max((i for i in range(parts) if a[i]), default=0)
        if last == 0:
            return out
        a[last - 1] += 1
        rest = total - sum(a[:last])
        a[last:] = [0] * (parts - last)
        a[-1] = rest
        out.append(tuple(a))


def total_order_indices(num_inputs: int, degree: int) -> torch.Tensor:
    """Multi-indices `α` with `|α| <= degree`, in pypolymix's order.

    Grouped by total degree; within one total degree in ascending
    lexicographic order, so for two inputs and degree 2:
    `00, 01, 10, 02, 11, 20`. Built directly (cost proportional to the
    number of terms), not by filtering all `(degree + 1) ** num_inputs` tuples.

    Args:
        num_inputs: number of inputs (>= 1).
        degree: maximum total degree (>= 0).

    Returns:
        `(num_terms, num_inputs)` integer tensor.

    Example:
        >>> total_order_indices(2, 1).tolist()
        [[0, 0], [0, 1], [1, 0]]
    """
    num_inputs = check_positive_int(num_inputs, "num_inputs")
    degree = check_positive_int(degree, "degree", minimum=0)
    rows = [a for total in range(degree + 1) for a in _compositions(total, num_inputs)]
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


_INTEGER_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def legendre_polynomial_p(x: torch.Tensor, n: int | torch.Tensor) -> torch.Tensor:
    """The Legendre polynomial `P_n` at `x` (pypolymix's helper).

    Computed by the three-term recurrence in `x`'s dtype, differentiable.

    Args:
        x: any shape.
        n: the degree (>= 0), an int or a 0-d integer tensor.

    Returns:
        Same shape as `x`.

    Raises:
        ConfigError: when `n` is not an integer >= 0 (also a `ValueError`).

    Example:
        >>> legendre_polynomial_p(torch.tensor([0.5]), 2)
        tensor([-0.1250])
    """
    if isinstance(n, torch.Tensor) and n.ndim == 0 and n.dtype in _INTEGER_DTYPES:
        n = int(n)  # an entry of `multi_indices`, as pypolymix's expansion passes it
    n = check_positive_int(n, "n", minimum=0)
    return legendre_polynomials(check_tensor(x, "x"), n)[..., n]


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

    Inputs are expected on `[-1, 1]` (the Legendre polynomials are orthogonal
    for the uniform measure there): `basis` and `forward` warn
    (`RuntimeWarning`, naming `x`, see `check_domain`) when an input lies
    outside it beyond rounding, or is NaN or inf, and compute anyway, as
    pypolymix did. The basis holds `C(num_inputs + degree,
    degree)` terms in pypolymix's order (see `total_order_indices`; stored in
    the `multi_indices` buffer, which is in the `state_dict` as upstream), and
    the parameter vector is laid out as upstream's `(num_terms, num_outputs)`
    matrix flattened row by row: parameter `t * num_outputs + o` multiplies
    term `t` of output `o`.

    Args:
        num_inputs: input dimension.
        num_outputs: number of outputs.
        degree: maximum total degree (>= 0).

    Example:
        >>> surrogate = PolynomialChaosExpansion(num_inputs=1, degree=2)
        >>> params = torch.randn(5, surrogate.num_params())
        >>> x = torch.linspace(-1, 1, 20).unsqueeze(-1)
        >>> surrogate(x, params).shape
        torch.Size([5, 20, 1])
    """

    multi_indices: torch.Tensor

    def __init__(self, num_inputs: int, num_outputs: int = 1, degree: int = 3):
        super().__init__(num_inputs, num_outputs)
        self.degree = check_positive_int(degree, "degree", minimum=0)
        alpha = total_order_indices(self.num_inputs, self.degree)
        self.register_buffer("multi_indices", alpha)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # the index set is fixed by (num_inputs, degree): refuse one that is not ours
        key = prefix + "multi_indices"
        given = state_dict.get(key)
        if isinstance(given, torch.Tensor) and not (
            given.shape == self.multi_indices.shape
            and bool(torch.equal(given.to("cpu", torch.long), self.multi_indices.cpu()))
        ):
            raise ConfigError(
                f"{key}: the state dict's multi-indices {tuple(given.shape)} are not those of a "
                f"PolynomialChaosExpansion(num_inputs={self.num_inputs}, degree={self.degree}) "
                f"{tuple(self.multi_indices.shape)}; the coefficients would mean something else"
            )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

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
            x: ``(N, num_inputs)`` inputs in ``[-1, 1]``; values outside (or
                NaN/inf) are evaluated but warned about (`check_domain`).

        Returns:
            ``(N, num_terms)`` design matrix, in ``x``'s dtype.
        """
        check_inputs(x, self.num_inputs)
        check_domain(x)
        p1d = legendre_polynomials(x, self.degree)  # (N, d, p + 1)
        idx = self.multi_indices.T.unsqueeze(0).expand(x.shape[0], -1, -1)  # (N, d, T)
        return torch.gather(p1d, 2, idx).prod(dim=1)

    def forward(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Evaluate the expansion for every coefficient sample.

        Args:
            x: ``(N, num_inputs)`` inputs in ``[-1, 1]`` (see `basis` for others).
            params: ``(S, num_params())`` coefficients.

        Returns:
            ``(S, N, num_outputs)`` outputs.
        """
        self._check(x, params)
        coef = params.reshape(params.shape[0], self.num_terms, self.num_outputs)
        # one GEMM over all samples and outputs (a broadcast matmul is ~30x slower here)
        return torch.einsum("nt,sto->sno", self.basis(x), coef)

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
            `SobolIndices` whose leading axis is ``S`` when a batch was given.

        Raises:
            ShapeError: when the last axis is not ``num_params()`` long.
        """
        c = check_tensor(coefficients, "coefficients")
        if c.ndim not in (1, 2) or c.shape[-1] != self.num_params():
            raise ShapeError(
                f"coefficients: expected shape ({self.num_params()},) or (S, {self.num_params()}), "
                f"got {tuple(c.shape)}"
            )
        c = c.reshape(*c.shape[:-1], self.num_terms, self.num_outputs).transpose(-1, -2)
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
            "num_outputs": self.num_outputs,
            "degree": self.degree,
        }

    @classmethod
    def _from_config(cls, config: dict) -> PolynomialChaosExpansion:
        return cls(**config)
