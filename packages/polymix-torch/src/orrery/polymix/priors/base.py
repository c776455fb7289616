"""The prior interface: a factory of distributions over a parameter block."""

from __future__ import annotations

import torch
import torch.distributions as td
from torch import nn

__all__ = ["Prior"]


class Prior(nn.Module):
    """Base class: a factory of prior distributions over a parameter vector.

    Subclasses implement `distribution`.
    """

    def distribution(
        self,
        event_shape: torch.Size | tuple[int, ...] | int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> td.Distribution:
        """Return the prior as a distribution with event shape ``event_shape``.

        Args:
            event_shape: ``(num_params,)`` of the group the prior applies to.
            device: where the distribution lives (``None``: the buffers' device).
            dtype: its floating dtype (``None``: the buffers' dtype).

        Returns:
            A `torch.distributions.Distribution` with that event shape.
        """
        raise NotImplementedError

    def _shapes(self) -> dict[str, list[int]]:
        return {k: list(v.shape) for k, v in self.named_buffers(recurse=False)}

    def _hyperparameters(self) -> dict[str, torch.Tensor]:
        """The hyper-parameter buffers (not in ``state_dict``, as upstream; saved by `save`)."""
        return dict(self.named_buffers(recurse=False))
