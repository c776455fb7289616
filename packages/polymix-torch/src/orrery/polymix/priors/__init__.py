"""Priors over blocks of surrogate parameters.

A prior is a small `torch.nn.Module` whose hyper-parameters are
non-persistent buffers (as in pypolymix, so they are not part of a group's
`state_dict`; `orrery.polymix.save` stores them): they follow
`.to(device, dtype)` together with the parameter group that owns them, and a
prior can be shared between groups. `Prior.distribution` builds a
`torch.distributions.Distribution` with event shape `(num_params,)` on demand.
"""

from .base import Prior
from .common import GaussianPrior, IIDGaussianPrior, LaplacePrior

__all__ = ["GaussianPrior", "IIDGaussianPrior", "LaplacePrior", "Prior"]
