"""A multilayer perceptron whose weights arrive as sampled parameter vectors."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from orrery.interface import ConfigError, check_positive_int

from .base import SurrogateModel

__all__ = ["ACTIVATIONS", "NeuralNetwork"]

#: The activations that `save` can describe and `load` rebuilds, by name: an
#: explicit allow-list (a name read from a file never reaches `getattr`).
ACTIVATIONS: dict[str, type[nn.Module] | Callable] = {
    **{
        c.__name__: c
        for c in (
            nn.ReLU,
            nn.Tanh,
            nn.Sigmoid,
            nn.GELU,
            nn.SiLU,
            nn.ELU,
            nn.Softplus,
            nn.LeakyReLU,
            nn.Identity,
            nn.Mish,
            nn.SELU,
            nn.CELU,
            nn.Hardtanh,
            nn.Softsign,
            nn.Tanhshrink,
        )
    },
    **{f"torch.{f.__name__}": f for f in (torch.relu, torch.tanh, torch.sigmoid)},
    **{
        f"torch.nn.functional.{f.__name__}": f
        for f in (F.relu, F.tanh, F.sigmoid, F.gelu, F.silu, F.elu, F.softplus, F.leaky_relu)
    },
}


def _activation(activation: type[nn.Module] | nn.Module | Callable) -> Callable:
    if isinstance(activation, type) and issubclass(activation, nn.Module):
        return activation()
    if callable(activation):
        return activation
    raise ConfigError(f"activation: expected an nn.Module class or a callable, got {activation!r}")


def _activation_name(spec: object, act: Callable) -> str | None:
    """The allow-list name of an activation, or `None` when it cannot be saved."""
    if isinstance(spec, type) and issubclass(spec, nn.Module):
        name = spec.__name__
    elif isinstance(spec, nn.Module) and not spec.extra_repr():
        name = type(spec).__name__  # an instance without arguments, e.g. nn.Tanh()
    else:
        return next((k for k, v in ACTIVATIONS.items() if v is spec), None)
    if ACTIVATIONS.get(name) is not type(act) or list(act.parameters()):  # type: ignore[union-attr]
        return None
    return name


class NeuralNetwork(SurrogateModel):
    """Fully connected network evaluated for many parameter samples at once.

    The layers are ``num_inputs -> width`` (``depth`` hidden layers of size
    ``width``) ``-> num_outputs``; ``depth=0`` is a linear map. Each layer
    consumes, in order, its weight matrix laid out ``(in, out)`` (row-major)
    and then its bias ``(out,)``. The activation follows every hidden layer.

    Args:
        num_inputs: input width.
        num_outputs: output width.
        width: hidden width.
        depth: number of hidden layers (>= 0).
        activation: an `nn.Module` class (instantiated without arguments), a
            module instance, or any element-wise callable such as pypolymix's
            default `torch.nn.functional.relu` (the same function as our
            default `nn.ReLU`). Those in `ACTIVATIONS` can be saved.

    Example:
        >>> surrogate = NeuralNetwork(num_inputs=2, num_outputs=1, width=8, depth=2)
        >>> surrogate.num_params()
        105
        >>> surrogate(torch.randn(5, 2), torch.randn(3, 105)).shape
        torch.Size([3, 5, 1])
    """

    activation_spec: type[nn.Module] | nn.Module | Callable

    def __init__(
        self,
        num_inputs: int,
        num_outputs: int = 1,
        width: int = 16,
        depth: int = 1,
        activation: type[nn.Module] | nn.Module | Callable = nn.ReLU,
    ):
        super().__init__(num_inputs, num_outputs)
        self.width = check_positive_int(width, "width")
        self.depth = check_positive_int(depth, "depth", minimum=0)
        # kept out of the module registry: a module instance is registered once, as
        # `activation` (pypolymix's state_dict key), not a second time under this name
        self.__dict__["activation_spec"] = activation
        act = _activation(activation)
        # registered as a submodule only when it is one, so modules with state move with .to()
        self.activation = act
        sizes = [self.num_inputs] + [self.width] * self.depth + [self.num_outputs]
        self.layer_sizes: list[tuple[int, int]] = list(itertools.pairwise(sizes))
        self._num_params = sum(i * o + o for i, o in self.layer_sizes)
        # pypolymix's bookkeeping: (weight shape, bias shape) per layer and flat slices
        self.layer_shapes: list[tuple[int, ...]] = []
        for i, o in self.layer_sizes:
            self.layer_shapes += [(i, o), (o,)]
        self.param_slices: list[tuple[int, int, tuple[int, ...]]] = []
        start = 0
        for shape in self.layer_shapes:
            size = shape[0] * shape[1] if len(shape) == 2 else shape[0]
            self.param_slices.append((start, start + size, shape))
            start += size

    def num_params(self) -> int:
        """Return ``sum(in * out + out)`` over the layers."""
        return self._num_params

    def forward(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Evaluate the network for every parameter row.

        Args:
            x: ``(N, num_inputs)`` inputs.
            params: ``(S, num_params())`` flattened weights and biases.

        Returns:
            ``(S, N, num_outputs)`` outputs.
        """
        self._check(x, params)
        s = params.shape[0]
        offset = 0
        h: torch.Tensor | None = None
        last = len(self.layer_sizes) - 1
        for k, (n_in, n_out) in enumerate(self.layer_sizes):
            w = params[:, offset : offset + n_in * n_out].reshape(s, n_in, n_out)
            offset += n_in * n_out
            b = params[:, offset : offset + n_out].unsqueeze(1)
            offset += n_out
            # the first layer reads the shared x through a stride-0 batch view
            h = torch.baddbmm(b, x.expand(s, -1, -1) if h is None else h, w)
            if k < last:
                h = self.activation(h)
        assert h is not None
        return h

    def _config(self) -> dict:
        name = _activation_name(self.activation_spec, self.activation)
        if name is None:
            raise ConfigError(
                "NeuralNetwork: only the activations in "
                f"orrery.polymix.surrogate_models.ACTIVATIONS can be saved, got "
                f"{self.activation_spec!r}"
            )
        return {
            "num_inputs": self.num_inputs,
            "num_outputs": self.num_outputs,
            "width": self.width,
            "depth": self.depth,
            "activation": name,
        }

    @classmethod
    def _from_config(cls, config: dict) -> NeuralNetwork:
        config = dict(config)
        config["activation"] = ACTIVATIONS[config["activation"]]
        return cls(**config)
