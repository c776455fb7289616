"""KL(q‖p): analytic when torch knows a formula, a reparameterised MC estimate otherwise."""

from __future__ import annotations

import torch
import torch.distributions as td

__all__ = ["DEFAULT_KL_SAMPLES", "kl_divergence", "to_multivariate_normal"]

#: Samples used by the Monte Carlo KL estimate when no closed form exists.
DEFAULT_KL_SAMPLES = 64

_GAUSSIANS = (td.MultivariateNormal, td.LowRankMultivariateNormal)


def to_multivariate_normal(d: td.Distribution) -> td.Distribution:
    """Rewrite ``Independent(Normal, 1)`` as an equivalent diagonal ``MultivariateNormal``."""
    if (
        isinstance(d, td.Independent)
        and isinstance(d.base_dist, td.Normal)
        and d.reinterpreted_batch_ndims == 1
    ):
        base = d.base_dist
        return td.MultivariateNormal(
            base.loc, scale_tril=torch.diag_embed(base.scale), validate_args=False
        )
    return d


def kl_divergence(
    q: td.Distribution, p: td.Distribution, num_samples: int = DEFAULT_KL_SAMPLES
) -> tuple[torch.Tensor, bool]:
    """Return ``(KL(q‖p), analytic)``.

    The closed form is used when torch registers one, also after rewriting a
    diagonal Gaussian as a ``MultivariateNormal`` when the other side is a full
    or low-rank Gaussian. Otherwise ``mean(log q(θ) - log p(θ))`` over
    ``num_samples`` reparameterised draws ``θ ~ q`` (unbiased, differentiable).
    """
    try:
        return td.kl_divergence(q, p), True
    except NotImplementedError:
        pass
    if isinstance(q, _GAUSSIANS) or isinstance(p, _GAUSSIANS):
        q2, p2 = to_multivariate_normal(q), to_multivariate_normal(p)
        try:
            return td.kl_divergence(q2, p2), True
        except NotImplementedError:
            pass
    theta = q.rsample(torch.Size([num_samples]))
    return (q.log_prob(theta) - p.log_prob(theta)).mean(0), False
