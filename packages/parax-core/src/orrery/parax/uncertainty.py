"""Derivatives and lmfit-style uncertainties with respect to physical parameters."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from orrery.interface import ShapeError, check_choice

from .tree import combine, partition

__all__ = ["covariance", "func_jacobian", "func_sensitivity", "summary"]


def func_jacobian(module: Any, func: Callable, args: Any) -> dict[str, jax.Array]:
    """Forward-mode derivative of ``func(module, args)`` w.r.t. each free flat parameter.

    Derivatives are with respect to the *physical* (unscaled) values.

    Returns:
        ``{flat name: array shaped like func's output}``.
    """
    names = module.flat_param_names()
    x0 = module.flat_param_values()
    jac = jax.jacfwd(lambda x: func(module.with_params(x), args))(x0)
    jac = jnp.asarray(jac)
    return {n: jac[..., i] for i, n in enumerate(names)}


def func_sensitivity(
    module: Any, func: Callable, args: Any, kind: str = "relative", norm: Any = None
) -> dict[str, jax.Array] | jax.Array:
    """Sensitivity of ``func(module, args)`` to each free flat parameter.

    Args:
        kind: ``'relative'`` ((dy/dθ)·θ/y), ``'semi-relative'`` ((dy/dθ)·θ) or
            ``'absolute'`` (dy/dθ).
        norm: if given (e.g. 2 or ``jnp.inf``), combine the per-parameter sensitivities
            with this vector norm across parameters, giving one array shaped like the output.

    Returns:
        ``{flat name: array}``, or the combined array when `norm` is given.
    """
    check_choice(kind, ["relative", "semi-relative", "absolute"], "kind")
    jac = func_jacobian(module, func, args)
    theta = module.named_flat_param_values()
    y = jnp.asarray(func(module, args))
    out = {}
    for n, j in jac.items():
        if kind == "absolute":
            out[n] = j
        elif kind == "semi-relative":
            out[n] = j * theta[n]
        else:
            out[n] = j * theta[n] / y
    if norm is None:
        return out
    stacked = jnp.stack(list(out.values()))
    return jnp.linalg.norm(stacked.reshape(stacked.shape[0], -1), ord=norm, axis=0).reshape(y.shape)


def covariance(module: Any, loss_fn: Callable, args: Any) -> jax.Array:
    """Physical-space covariance of the free flat parameters at an optimum.

    ``loss_fn(module, args)`` must be a negative log-likelihood (for Gaussian residuals,
    ``0.5 * sum(((y - model) / sigma) ** 2)``). The Hessian is taken in latent space and
    mapped to physical space with the transform Jacobian ``J``:
    ``cov = J H⁻¹ Jᵀ``. Order follows `Module.flat_param_names`.

    Returns:
        Array of shape ``(num_flat_params, num_flat_params)``.
    """
    dyn, static = partition(module)
    z0, unravel = ravel_pytree(dyn)
    if z0.size == 0:
        raise ShapeError("covariance: the module has no free parameters")

    def loss(z):
        return loss_fn(combine(unravel(z), static), args)

    hess = jax.hessian(loss)(z0)
    cov_latent = jnp.linalg.inv(hess)
    jac = jax.jacfwd(lambda z: combine(unravel(z), static).flat_param_values())(z0)
    return jac @ cov_latent @ jac.T


def _fmt(x: Any) -> str:
    return f"{float(x):.6g}"


def _describe_dist(d: Any) -> str:
    if d is None:
        return "-"
    parts = []
    if dataclasses.is_dataclass(d):
        for f in dataclasses.fields(d):
            v = getattr(d, f.name)
            if hasattr(v, "shape") and np.size(v) <= 3:
                arr = np.asarray(v).ravel()
                parts.append(f"{f.name}=" + ",".join(_fmt(a) for a in arr))
    return f"{type(d).__name__}({', '.join(parts)})"


def summary(module: Any, covariance: Any = None) -> str:
    """Render a table of flat parameters: name, value, stderr, fixed, bounds, distribution.

    Args:
        covariance: optional covariance of the free flat parameters (from `covariance`);
            standard errors are the square roots of its diagonal.
    """
    free_names = module.flat_param_names()
    stderr: dict[str, float] = {}
    if covariance is not None:
        cov = np.asarray(covariance)
        if cov.shape != (len(free_names), len(free_names)):
            raise ShapeError(
                f"covariance: expected shape {(len(free_names), len(free_names))}, got {cov.shape}"
            )
        stderr = dict(zip(free_names, np.sqrt(np.clip(np.diag(cov), 0, None)), strict=True))
    rows = [("name", "value", "stderr", "fixed", "bounds", "distribution")]
    for name, p in module.named_flat_params(include_fixed=True).items():
        bounds = "-" if p.bounds is None else "[" + ", ".join(_fmt(b) for b in p.bounds) + "]"
        rows.append(
            (
                name,
                _fmt(p.value),
                _fmt(stderr[name]) if name in stderr else "-",
                "yes" if p.fixed else "no",
                bounds,
                _describe_dist(p.distribution),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
