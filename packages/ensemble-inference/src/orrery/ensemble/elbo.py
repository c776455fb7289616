r"""The tempered ELBO used by `EnsembleVI` when ``kl_weight != 1``.

For a guide `q` and a model `p(y, θ)` it maximises

    E_q[log p(y | θ)] - β KL(q || p(θ)),

i.e. a posterior whose likelihood is raised to the power `1/β`.

The KL term is computed site by site: analytically (as
``numpyro.infer.TraceMeanField_ELBO`` does) when numpyro registers a
``kl_divergence`` for the pair of guide and prior distributions, and by the
one-sample Monte Carlo estimate `log q(θ) - log p(θ)` at the
guide's draw otherwise. The analytic form requires a mean-field-compatible
guide (a site's prior may depend only on upstream latents, as in
``TraceMeanField_ELBO``); ``analytic_kl=False`` forces Monte Carlo everywhere.
With ``kl_weight == 1`` and ``analytic_kl=False`` it is the ``Trace_ELBO`` estimator.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from numpyro.distributions.kl import kl_divergence
from numpyro.handlers import replay, seed, substitute, trace
from numpyro.infer import ELBO

from orrery.interface import ConfigError

__all__ = ["TemperedELBO"]


def _scaled_log_prob(site: dict[str, Any]) -> jax.Array:
    if site.get("intermediates"):
        log_prob = site["fn"].log_prob(site["value"], site["intermediates"])
    else:
        log_prob = site["fn"].log_prob(site["value"])
    if site.get("scale") is not None:
        log_prob = log_prob * site["scale"]
    return jnp.sum(log_prob)


def _site_kl(guide_site: dict[str, Any], model_site: dict[str, Any], analytic: bool) -> jax.Array:
    if analytic:
        try:
            kl = kl_divergence(guide_site["fn"], model_site["fn"])
        except NotImplementedError:
            pass
        else:
            if guide_site.get("scale") is not None:
                kl = kl * guide_site["scale"]
            return jnp.sum(kl)
    return _scaled_log_prob(guide_site) - _scaled_log_prob(model_site)


class TemperedELBO(ELBO):
    """ELBO with its KL term weighted by ``kl_weight`` (a numpyro ``ELBO`` usable in ``SVI``).

    Args:
        kl_weight: the weight ``β`` of ``KL(q || p)``; ``1`` is the usual ELBO,
            ``< 1`` a cold (likelihood-dominated) posterior.
        num_particles: Monte Carlo particles averaged per loss evaluation.
        analytic_kl: use numpyro's registered closed-form KL where one exists
            (Monte Carlo otherwise); ``False`` always uses Monte Carlo.
        vectorize_particles: as in ``numpyro.infer.ELBO``.
    """

    def __init__(
        self,
        kl_weight: float = 1.0,
        num_particles: int = 1,
        *,
        analytic_kl: bool = True,
        vectorize_particles: bool = True,
    ):
        self.kl_weight = kl_weight
        self.analytic_kl = analytic_kl
        super().__init__(num_particles=num_particles, vectorize_particles=vectorize_particles)

    def loss_with_mutable_state(self, rng_key, param_map, model, guide, *args, **kwargs):
        def particle(key):
            model_key, guide_key = jax.random.split(key)
            guide_trace = trace(substitute(seed(guide, guide_key), data=param_map)).get_trace(
                *args, **kwargs
            )
            mutable = {n: s["value"] for n, s in guide_trace.items() if s["type"] == "mutable"}
            model_params = {**param_map, **mutable}
            model_trace = trace(
                substitute(replay(seed(model, model_key), guide_trace), data=model_params)
            ).get_trace(*args, **kwargs)
            mutable.update(
                {n: s["value"] for n, s in model_trace.items() if s["type"] == "mutable"}
            )

            log_lik = jnp.zeros(())
            kl = jnp.zeros(())
            for name, site in model_trace.items():
                if site["type"] != "sample":
                    continue
                if site["is_observed"]:
                    log_lik = log_lik + _scaled_log_prob(site)
                elif name not in guide_trace:
                    raise ConfigError(
                        f"kl_weight={self.kl_weight}: the model's latent site {name!r} is not "
                        "in the guide, so its KL term is undefined; add it to the guide (or "
                        "observe it), or use kl_weight=1 (Trace_ELBO)"
                    )
                else:
                    kl = kl + _site_kl(guide_trace[name], site, self.analytic_kl)
            for name, site in guide_trace.items():
                # auxiliary guide-only latents enter the entropy term only
                if site["type"] == "sample" and name not in model_trace:
                    kl = kl + _scaled_log_prob(site)
            elbo = log_lik - self.kl_weight * kl
            return elbo, (mutable or None)

        if self.num_particles == 1:
            elbo, mutable = particle(rng_key)
            return {"loss": -elbo, "mutable_state": mutable}
        keys = jax.random.split(rng_key, self.num_particles)
        elbos, _ = self.vectorize_particles_fn(particle, keys)
        return {"loss": -jnp.mean(elbos), "mutable_state": None}
