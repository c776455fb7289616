"""The surrogate-model interface: a deterministic map ``(x, params) -> y``."""

from __future__ import annotations

import torch
from torch import nn

from orrery.interface import check_positive_int

from .._checks import check_inputs, check_params, check_same_dtype, check_tensor

__all__ = ["SurrogateModel"]


class SurrogateModel(nn.Module):
    """Base class of deterministic surrogates evaluated under sampled parameters.

    A surrogate owns no trainable weights: every scalar it needs arrives in
    ``params``, one row per parameter sample, so one call evaluates all samples
    at once.

    Args:
        num_inputs: width of `x` (optional, as in pypolymix, where a subclass
            sets it itself; the built-in surrogates always set it).
        num_outputs: width of the output (optional, likewise).

    Subclasses implement `num_params` and `forward` with
    `x: (N, num_inputs)`, `params: (S, num_params())` and output
    `(S, N, num_outputs)`.

    Example:
        >>> class Identity(SurrogateModel):
        ...     def forward(self, x, params):
        ...         return x.unsqueeze(0).expand(params.shape[0], -1, -1)
        ...     def num_params(self) -> int:
        ...         return 0
        >>> Identity()(torch.ones(3, 2), torch.zeros(4, 0)).shape
        torch.Size([4, 3, 2])
    """

    def __init__(self, num_inputs: int | None = None, num_outputs: int | None = None):
        super().__init__()
        if num_inputs is not None:
            self.num_inputs = check_positive_int(num_inputs, "num_inputs")
        if num_outputs is not None:
            self.num_outputs = check_positive_int(num_outputs, "num_outputs")

    def num_params(self) -> int:
        """Return the number of scalar parameters one evaluation consumes."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Evaluate the surrogate.

        Args:
            x: ``(N, num_inputs)`` inputs.
            params: ``(S, num_params())`` parameter samples.

        Returns:
            ``(S, N, num_outputs)`` outputs.
        """
        raise NotImplementedError

    def _check(self, x: torch.Tensor, params: torch.Tensor) -> None:
        check_tensor(x, "x")
        check_tensor(params, "params")
        check_inputs(x, self.num_inputs)
        check_params(params, self.num_params())
        check_same_dtype(x, params)

    def _config(self) -> dict:
        """JSON-safe constructor arguments (used by `orrery.polymix.save`)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be saved")
