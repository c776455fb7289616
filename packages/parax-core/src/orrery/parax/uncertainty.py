"""Derivatives and lmfit-style uncertainties with respect to physical parameters."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, SupportsFloat, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PyTree

from orrery.interface import ShapeError, ValueDomainError, check_choice

from ._errors import ConfigTypeError

if TYPE_CHECKING:
    from distreqx.distributions import AbstractDistribution

    from .module import Module

M = TypeVar("M", bound="Module")

__all__ = ["covariance", "func_jacobian", "func_sensitivity", "summary"]


def func_jacobian(
    module: M, func: Callable[[M, PyTree], Float[ArrayLike, "..."]], args: PyTree
) -> dict[str, Array]:
    """Forward-mode derivative of ``func(module, args)`` w.r.t. each free flat parameter.

    Derivatives are with respect to the *physical* (unscaled) values.

    Args:
        module: the module.
        func: ``func(module, args) -> array``.
        args: passed to `func`.

    Returns:
        ``{flat name: array shaped like func's output}``.

    Example:
        >>> from orrery.parax import Module, Parameter
        >>> class Line(Module):
        ...     slope: Parameter
        >>> jac = func_jacobian(Line(slope=2.0), lambda m, x: m.slope * x, 3.0)
        >>> float(jac["slope"])
        3.0
    """
    names = module.flat_param_names()
    x0 = module.flat_param_values()
    jac = jax.jacfwd(lambda x: func(module.with_params(x), args))(x0)
    jac = jnp.asarray(jac)
    return {n: jac[..., i] for i, n in enumerate(names)}


def func_sensitivity(
    module: M,
    func: Callable[[M, PyTree], Float[ArrayLike, "..."]],
    args: PyTree,
    kind: str = "relative",
    norm: float | str | None = None,
) -> dict[str, Array] | Array:
    """Sensitivity of ``func(module, args)`` to each free flat parameter.

    Args:
        module: the module.
        func: ``func(module, args) -> array``.
        args: passed to `func`.
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


def covariance(
    module: M,
    loss_fn: Callable[[M, PyTree], Float[ArrayLike, ""]],
    args: PyTree,
    *,
    at_optimum: bool = False,
    tolerance: float = 1e-2,
) -> jax.Array:
    """Physical-space covariance of the free flat parameters at an optimum.

    ``loss_fn(module, args)`` must be a negative log-likelihood (for Gaussian residuals,
    ``0.5 * sum(((y - model) / sigma) ** 2)``). The Hessian ``H`` is taken with respect to
    the physical (unscaled) flat values, so the result does not depend on the bijectors
    the parameters use: ``cov = H⁻¹``. Order follows `Module.flat_param_names`.

    The Laplace approximation only holds at a minimum. The Newton step ``H⁻¹ g`` from the
    gradient ``g`` says how far the minimum is; when some parameter is more than
    `tolerance` of its standard error away, a `UserWarning` is issued (or, with
    ``at_optimum=True``, a `ValueDomainError` raised).

    Args:
        module: the module, at the optimum of `loss_fn`.
        loss_fn: ``loss_fn(module, args) -> scalar`` negative log-likelihood.
        args: passed to `loss_fn`.
        at_optimum: raise instead of warning when the point is not a minimum.
        tolerance: largest accepted distance to the minimum, in standard errors.

    Returns:
        Array of shape ``(num_flat_params, num_flat_params)``.

    Raises:
        ShapeError: the module has no free parameters.
        ValueDomainError: the loss or its derivatives are not finite, the Hessian is not
            positive definite (no minimum there, or parameters that the loss cannot tell
            apart), or the point is not a minimum and `at_optimum` is set.

    Example:
        >>> import jax.numpy as jnp
        >>> from orrery.parax import Module, Parameter
        >>> class Mean(Module):
        ...     mu: Parameter
        >>> y = jnp.array([1.0, 2.0, 3.0, 4.0])
        >>> nll = lambda m, y: 0.5 * jnp.sum((y - m.mu) ** 2)
        >>> cov = covariance(Mean(mu=2.5), nll, y)
        >>> round(float(cov[0, 0]), 4)  # sigma^2 / n
        0.25
    """
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)):
        raise ConfigTypeError(f"tolerance: expected a number, got {type(tolerance).__name__}")
    if not tolerance > 0:
        raise ValueDomainError(f"tolerance: expected a positive number, got {tolerance!r}")
    names = module.flat_param_names()
    x0 = module.flat_param_values()
    if x0.size == 0:
        raise ShapeError("module: covariance needs at least one free parameter, got none")

    def loss(x):
        return jnp.asarray(loss_fn(module.with_params(x), args)).reshape(())

    grad = np.asarray(jax.grad(loss)(x0), dtype=float)
    hess = np.asarray(jax.hessian(loss)(x0), dtype=float)
    if not (np.isfinite(grad).all() and np.isfinite(hess).all()):
        raise ValueDomainError(
            "loss_fn: its gradient or Hessian at the point is not finite; no covariance"
        )
    hess = 0.5 * (hess + hess.T)
    eig = np.linalg.eigvalsh(hess)
    if eig.min() <= eig.max() * 1e-12 or eig.max() <= 0:
        raise ValueDomainError(
            "loss_fn: the Hessian at the point is not positive definite (eigenvalues "
            f"{eig.tolist()}), so the covariance would have negative or infinite variances; "
            "optimise first, or fix parameters the data cannot constrain"
        )
    cov = np.linalg.inv(hess)
    cov = 0.5 * (cov + cov.T)
    stderr = np.sqrt(np.diag(cov))
    away = np.abs(cov @ grad) / stderr
    if away.max() > tolerance:
        worst = int(np.argmax(away))
        msg = (
            f"covariance: the point is not a minimum of loss_fn (gradient {grad.tolist()}); "
            f"a Newton step would move {names[worst]!r} by {away[worst]:.3g} standard errors, "
            "so the covariance is not the one at the optimum; optimise first"
        )
        if at_optimum:
            raise ValueDomainError(msg)
        warnings.warn(msg, UserWarning, stacklevel=2)
    return jnp.asarray(cov, dtype=x0.dtype)


def _fmt(x: SupportsFloat) -> str:
    return f"{float(x):.6g}"


def _describe_dist(d: AbstractDistribution | None) -> str:
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


def summary(module: Module, covariance: Float[ArrayLike, "n n"] | None = None) -> str:
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
        var = np.diag(cov)
        if not (np.isfinite(var).all() and (var >= 0).all()):
            raise ValueDomainError(
                f"covariance: variances must be finite and non-negative, got {var.tolist()}"
            )
        stderr = dict(zip(free_names, np.sqrt(var), strict=True))
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
