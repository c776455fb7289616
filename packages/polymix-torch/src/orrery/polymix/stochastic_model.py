"""Glue a deterministic surrogate to the parameter groups that feed it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import torch
from torch import nn

from orrery.interface import ConfigError

from ._checks import as_float_tensor, check_inputs, check_same_dtype, check_samples
from .parameter_groups import ParameterGroup
from .surrogate_models.base import SurrogateModel

__all__ = ["StochasticModel"]


class StochasticModel(nn.Module):
    """A surrogate whose parameters are drawn from variational parameter groups.

    The groups' samples are concatenated in order, so group `k` covers the
    surrogate parameters that follow those of groups `0 … k-1`; their sizes
    must add up to `surrogate_model.num_params()`.

    Args:
        surrogate_model: the deterministic model `(x, params) -> y`.
        parameter_groups: the groups, in parameter order, with distinct names;
            a single group need not be wrapped in a list.

    Raises:
        ConfigError: when the sizes do not add up or names repeat.

    Example:
        >>> from orrery.polymix import parameter_groups, surrogate_models
        >>> surrogate = surrogate_models.NeuralNetwork(num_inputs=1, num_outputs=1)
        >>> groups = [parameter_groups.IIDGaussianGroup("nn", surrogate.num_params())]
        >>> model = StochasticModel(surrogate, groups)
        >>> model(torch.linspace(-1, 1, 32).unsqueeze(-1), num_samples=4).shape
        torch.Size([4, 32, 1])
    """

    def __init__(
        self,
        surrogate_model: SurrogateModel,
        parameter_groups: ParameterGroup | Iterable[ParameterGroup],
    ):
        super().__init__()
        surrogate = surrogate_model
        if not isinstance(surrogate, SurrogateModel):
            raise ConfigError(
                f"surrogate_model: expected a SurrogateModel, got {type(surrogate).__name__}"
            )
        if isinstance(parameter_groups, ParameterGroup):
            parameter_groups = [parameter_groups]
        try:
            groups = list(parameter_groups)
        except TypeError:
            groups = []
        if not groups or not all(isinstance(g, ParameterGroup) for g in groups):
            raise ConfigError(
                "parameter_groups: expected a ParameterGroup or a non-empty list of them, got "
                f"{parameter_groups!r}"
            )
        names = [g.name for g in groups]
        if len(set(names)) != len(names):
            raise ConfigError(f"parameter_groups: group names must be distinct, got {names}")
        total = sum(g.num_params for g in groups)
        if total != surrogate.num_params():
            sizes = " + ".join(f"{g.name}={g.num_params}" for g in groups)
            raise ConfigError(
                f"parameter_groups: sizes {sizes} = {total} do not match the surrogate_model's "
                f"num_params() = {surrogate.num_params()}"
            )
        self.surrogate_model = surrogate
        self.parameter_groups = nn.ModuleList(groups)

    @property
    def surrogate(self) -> SurrogateModel:
        """The surrogate (short name of `surrogate_model`)."""
        return self.surrogate_model

    @property
    def groups(self) -> list[ParameterGroup]:
        """The parameter groups, in parameter order (a typed view of ``parameter_groups``)."""
        return cast(list[ParameterGroup], list(self.parameter_groups))

    @property
    def num_inputs(self) -> int:
        return self.surrogate_model.num_inputs

    @property
    def num_outputs(self) -> int:
        return self.surrogate_model.num_outputs

    def num_params(self) -> int:
        """Total number of surrogate parameters managed by the groups."""
        return sum(g.num_params for g in self.groups)

    def sample_parameters(self, num_samples: int = 1) -> torch.Tensor:
        """Draw from every group and concatenate.

        Args:
            num_samples: number of parameter vectors ``S`` (>= 1).

        Returns:
            ``(S, num_params())``.
        """
        s = check_samples(num_samples)
        return torch.cat([g.sample_parameters(s) for g in self.groups], dim=-1)

    def distribution_loss(self) -> torch.Tensor:
        """Sum of the groups' KL / cross-entropy terms.

        Added with `sum`, as pypolymix, so a user's group may return a Python number.
        """
        total = sum(g.distribution_loss() for g in self.groups)
        return total if isinstance(total, torch.Tensor) else torch.as_tensor(total)

    def forward(self, x: Any, num_samples: int = 1) -> torch.Tensor:
        """Evaluate the surrogate under ``num_samples`` parameter draws.

        Args:
            x: ``(N, num_inputs)`` inputs (array-likes take the model's dtype).
            num_samples: number of draws ``S``.

        Returns:
            ``(S, N, num_outputs)``.
        """
        ref = next(self.parameters())
        x = as_float_tensor(x, "x", like=ref)
        num_inputs = getattr(self.surrogate_model, "num_inputs", None)
        if num_inputs is not None:  # a user's own surrogate need not declare it (as upstream)
            x = check_inputs(x, num_inputs)
        params = self.sample_parameters(num_samples)
        check_same_dtype(x, params)
        return self.surrogate_model(x, params)

    def group_slices(self) -> dict[str, slice]:
        """Where each group's block sits in the concatenated parameter vector."""
        out, start = {}, 0
        for g in self.groups:
            out[g.name] = slice(start, start + g.num_params)
            start += g.num_params
        return out
