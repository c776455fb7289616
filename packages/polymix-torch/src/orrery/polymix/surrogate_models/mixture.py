"""Mixture of experts: a softmax gate weighting several surrogate experts."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from orrery.interface import ConfigError

from .base import SurrogateModel
from .neural_network import ACTIVATIONS, NeuralNetwork

__all__ = ["GatingNetwork", "MixtureOfExperts"]


class GatingNetwork(SurrogateModel):
    """A `NeuralNetwork` followed by a softmax over experts.

    Args:
        num_inputs: input width.
        num_experts: number of experts (the output width).
        width: hidden width.
        depth: number of hidden layers.
        activation: hidden activation, as for `NeuralNetwork`.

    Example:
        >>> gating = GatingNetwork(num_inputs=1, num_experts=3, width=8)
        >>> gating(torch.zeros(4, 1), torch.randn(2, gating.num_params())).shape
        torch.Size([2, 4, 3])
    """

    def __init__(
        self,
        num_inputs: int,
        num_experts: int,
        width: int = 16,
        depth: int = 1,
        activation: type[nn.Module] | nn.Module | Callable = nn.ReLU,
    ):
        super().__init__(num_inputs, num_experts)
        self.num_experts = self.num_outputs
        self.network = NeuralNetwork(num_inputs, num_experts, width, depth, activation)

    def num_params(self) -> int:
        """Return the parameter count of the underlying network."""
        return self.network.num_params()

    def forward(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Return mixture weights ``(S, N, num_experts)`` that sum to one over experts."""
        logits = self.network(x, params)
        # written out: torch.softmax is slow on CPU when the last axis is this short
        e = (logits - logits.amax(dim=-1, keepdim=True)).exp()
        return e / e.sum(dim=-1, keepdim=True)

    def _config(self) -> dict:
        cfg = self.network._config()
        cfg["num_experts"] = cfg.pop("num_outputs")
        return cfg

    @classmethod
    def _from_config(cls, config: dict) -> GatingNetwork:
        config = dict(config)
        config["activation"] = ACTIVATIONS[config["activation"]]
        return cls(**config)


def _same_architecture(experts: Sequence[SurrogateModel]) -> bool:
    first = experts[0]
    try:
        cfg = first._config()
        return all(type(e) is type(first) and e._config() == cfg for e in experts[1:])
    except (NotImplementedError, ConfigError):
        return False


class MixtureOfExperts(SurrogateModel):
    """``y(x) = Σ_e g_e(x) f_e(x)`` with a softmax gate ``g`` and experts ``f_e``.

    Parameters are laid out `[expert 0, expert 1, …, gate]` (`param_slices`
    holds the `(start, end)` of each, gate last, as in pypolymix). When all
    experts share one architecture (the usual case) they are evaluated in a
    single batched call by stacking their parameter slices along the sample
    axis; heterogeneous experts are evaluated one after the other.

    Args:
        experts: surrogates with equal `num_inputs` and `num_outputs`.
        gating_network: a surrogate returning the mixture weights, usually a
            `GatingNetwork`, with `num_outputs == len(experts)`.

    Raises:
        ConfigError: when the experts, or the gate and the experts, disagree
            in sizes (checked here rather than at the first forward pass).

    Example:
        >>> experts = [NeuralNetwork(num_inputs=1, num_outputs=1, width=4) for _ in range(2)]
        >>> moe = MixtureOfExperts(experts, GatingNetwork(num_inputs=1, num_experts=2))
        >>> moe(torch.randn(5, 1), torch.randn(3, moe.num_params())).shape
        torch.Size([3, 5, 1])
    """

    def __init__(self, experts: Sequence[SurrogateModel], gating_network: SurrogateModel):
        gating = gating_network
        try:
            if isinstance(experts, SurrogateModel):
                raise TypeError
            experts = list(experts)
        except TypeError:
            raise ConfigError(
                f"experts: expected a list of SurrogateModel, got {type(experts).__name__}"
            ) from None
        if not experts or not all(isinstance(e, SurrogateModel) for e in experts):
            raise ConfigError("experts: expected a non-empty sequence of SurrogateModel instances")
        if not isinstance(gating, SurrogateModel):
            raise ConfigError(
                f"gating_network: expected a SurrogateModel such as GatingNetwork, got "
                f"{type(gating).__name__}"
            )
        first = experts[0]
        for k, e in enumerate(experts):
            if (e.num_inputs, e.num_outputs) != (first.num_inputs, first.num_outputs):
                raise ConfigError(
                    f"experts[{k}]: expected num_inputs={first.num_inputs}, num_outputs="
                    f"{first.num_outputs} like experts[0], got {e.num_inputs}, {e.num_outputs}"
                )
        # a user's gate need not declare its sizes (pypolymix reads the experts' only)
        gate_inputs = getattr(gating, "num_inputs", first.num_inputs)
        gate_outputs = getattr(gating, "num_outputs", len(experts))
        if gate_inputs != first.num_inputs:
            raise ConfigError(
                f"gating_network: expected num_inputs={first.num_inputs} like the experts, got "
                f"{gate_inputs}"
            )
        if gate_outputs != len(experts):
            raise ConfigError(
                f"gating_network: expected num_experts={len(experts)} (one weight per expert), got "
                f"{gate_outputs}"
            )
        super().__init__(first.num_inputs, first.num_outputs)
        self.experts = nn.ModuleList(experts)
        self.gating_network = gating
        self.num_experts = len(experts)
        self._expert_sizes = [e.num_params() for e in experts]
        self._stacked = _same_architecture(experts)
        self.param_slices: list[tuple[int, int]] = []
        start = 0
        for size in [*self._expert_sizes, gating.num_params()]:
            self.param_slices.append((start, start + size))
            start += size

    @property
    def gating(self) -> SurrogateModel:
        """The gating network (short name of `gating_network`)."""
        return self.gating_network

    def num_params(self) -> int:
        """Total parameter count: every expert plus the gate."""
        return sum(self._expert_sizes) + self.gating.num_params()

    def get_expert_outputs(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Evaluate every expert with its slice of ``params``.

        Returns:
            `(S, num_experts, N, num_outputs)`, as in pypolymix (so
            `[:, e]` is expert `e`).
        """
        self._check(x, params)
        s, n_e = params.shape[0], self.num_experts
        if self._stacked:
            p_e = self._expert_sizes[0]
            flat = params[:, : n_e * p_e].reshape(s * n_e, p_e)
            out = self.experts[0](x, flat)  # (S * E, N, out)
            return out.reshape(s, n_e, x.shape[0], self.num_outputs)
        chunks = torch.split(params[:, : sum(self._expert_sizes)], self._expert_sizes, dim=1)
        return torch.stack([e(x, p) for e, p in zip(self.experts, chunks, strict=True)], dim=1)

    def get_gating_weights(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Mixture weights ``(S, N, num_experts)`` from the gate's slice of ``params``."""
        self._check(x, params)
        return self.gating_network(x, params[:, sum(self._expert_sizes) :])

    def forward(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Evaluate experts and gate and mix: ``(S, N, num_outputs)``."""
        weights = self.get_gating_weights(x, params)  # (S, N, E)
        # a broadcast multiply-and-sum: einsum would lower this to S*N tiny matmuls
        experts = self.get_expert_outputs(x, params)  # (S, E, N, out)
        return (weights.transpose(1, 2).unsqueeze(-1) * experts).sum(dim=1)
