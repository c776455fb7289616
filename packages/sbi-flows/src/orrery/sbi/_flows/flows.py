"""Conditional flows built from flowjax: five families, two bases, an optional base affine.

Every flow is a ``flowjax.distributions.Transformed`` whose bijection runs
``latent -> parameters`` on ``sample`` and ``parameters -> latent`` on
``log_prob``; flowjax's ``invert=True`` puts the fast direction on ``log_prob``
(training).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
from collections.abc import Iterator
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jax.scipy.stats as jstats
from flowjax.bijections import (
    AbstractBijection,
    BlockAutoregressiveNetwork,
    Chain,
    Coupling,
    Invert,
    MaskedAutoregressive,
    NumericalInverse,
    Permute,
    Scan,
)
from flowjax.bijections.block_autoregressive_network import logmatmulexp
from flowjax.distributions import (
    AbstractDistribution,
    Normal,
    StandardNormal,
    StudentT,
    Transformed,
)
from flowjax.flows import _affine_with_min_scale, masked_autoregressive_flow
from jaxtyping import PRNGKeyArray

from orrery.interface import ConfigError, ShapeError, check_choice

from .linear_start import ConditionalLinearGaussian
from .names import BASE_DISTRIBUTIONS, FLOW_FAMILIES
from .spline import SplineCoupling

__all__ = ["BASE_DISTRIBUTIONS", "FLOW_FAMILIES", "build_flow"]

#: Degrees of freedom of the ``"student_t"`` base (heavy tails, finite variance).
STUDENT_T_DF = 5.0


class _FixedStudentT(AbstractDistribution):
    """Independent standard Student-t with a fixed (non-trainable) df."""

    shape: tuple[int, ...]
    df: float = eqx.field(static=True)
    cond_shape: ClassVar[None] = None

    def _log_prob(self, x, condition=None):
        return jstats.t.logpdf(x, self.df).sum()

    def _sample(self, key, condition=None):
        return jr.t(key, self.df, self.shape)


class _SlopedTanh(AbstractBijection):
    """``tanh(x) + min_slope * x``: a real-to-real activation with derivative >= min_slope."""

    min_slope: float = eqx.field(static=True)
    shape: ClassVar[tuple] = ()
    cond_shape: ClassVar[None] = None

    def transform_and_log_det(self, x, condition=None):
        log_tanh_grad = 2.0 * (jnp.log(2.0) - x - jax.nn.softplus(-2.0 * x))
        return jnp.tanh(x) + self.min_slope * x, jnp.logaddexp(
            log_tanh_grad, jnp.log(self.min_slope)
        )

    def inverse_and_log_det(self, y, condition=None):
        raise NotImplementedError("the activation is only used in the forward direction")


class _ResidualBNAF(AbstractBijection):
    """``y = r * x + (1 - r) * f(x)`` with ``f`` a block neural autoregressive network.

    The residual share ``r`` bounds every diagonal Jacobian entry below by ``r``,
    which both conditions the numerical inverse and gives it an exact bracket.
    """

    network: BlockAutoregressiveNetwork
    residual: float = eqx.field(static=True)
    shape: tuple[int, ...]
    cond_shape: tuple[int, ...] | None

    def __init__(self, network: BlockAutoregressiveNetwork, residual: float) -> None:
        self.network = network
        self.residual = residual
        self.shape = network.shape
        self.cond_shape = network.cond_shape

    def _network_and_log_diag(self, x, condition):
        net = self.network
        log_jacs = []
        for i, (linear, log_jacobian_fn) in enumerate(net.layers[:-1]):
            x = linear(x)
            if i == 0 and condition is not None:
                if net.cond_linear is None:
                    raise ShapeError("condition: given to a network built without cond_dim")
                x = x + net.cond_linear(condition)
            log_jacs.append(log_jacobian_fn(linear))
            x, act = net._activation_and_log_jacobian_3d(x)
            log_jacs.append(act)
        linear, log_jacobian_fn = net.layers[-1]
        x = linear(x)
        log_det = log_jacobian_fn(linear)
        for log_jac in reversed(log_jacs):
            log_det = logmatmulexp(log_det, log_jac)
        return x, log_det.reshape(-1)

    def transform_and_log_det(self, x, condition=None):
        r = self.residual
        fx, log_diag = self._network_and_log_diag(x, condition)
        y = r * x + (1.0 - r) * fx
        log_det = jnp.logaddexp(jnp.log(r), jnp.log1p(-r) + log_diag)
        return y, log_det.sum()

    def inverse_and_log_det(self, y, condition=None):
        raise NotImplementedError("wrapped in NumericalInverse")


def _bisection_inverter(steps: int, min_slope: float):
    """Element-wise autoregressive bisection with a fixed number of steps.

    For coordinate ``i`` the scalar map ``t -> f(x with x_i = t)_i`` is increasing with
    slope at least ``min_slope``, so the root lies within
    ``|f(x_i=0)_i - y_i| / min_slope`` of zero: an exact bracket, halved ``steps`` times.
    """

    def inverter(bijection, y, condition=None):
        dim = y.shape[0]

        def solve(x, i):
            def g(t):
                return bijection.transform(x.at[i].set(t), condition)[i] - y[i]

            half = jnp.abs(g(0.0)) / min_slope * 1.01 + 1e-6

            def step(_, bounds):
                lo, hi = bounds
                mid = 0.5 * (lo + hi)
                above = g(mid) > 0
                return jnp.where(above, lo, mid), jnp.where(above, mid, hi)

            lo, hi = jax.lax.fori_loop(0, steps, step, (-half, half))
            return x.at[i].set(0.5 * (lo + hi)), None

        x, _ = jax.lax.scan(solve, jnp.zeros_like(y), jnp.arange(dim))
        return x

    return inverter


def _permute(bijection, dim, key):
    if dim == 1:
        return bijection
    return Chain([bijection, Permute(jr.permutation(key, jnp.arange(dim)))]).merge_chains()


def _coupling_flow(key, base, make_coupling, *, dim, cond_dim, layers, width, depth):
    """Coupling layers whose permutations swap the halves, so every coordinate is
    transformed at least every second layer.

    flowjax's ``coupling_flow`` permutes at random, which with few layers can leave
    a coordinate untransformed (then it keeps the base distribution and ignores the
    observation). Here the transformed half of one layer becomes (shuffled) the
    conditioning half of the next.
    """
    kept = dim // 2

    def make_layer(k):
        k_layer, k_a, k_b = jr.split(k, 3)
        coupling = make_coupling(
            k_layer,
            untransformed_dim=kept,
            dim=dim,
            cond_dim=cond_dim,
            nn_width=width,
            nn_depth=depth,
        )
        if dim == 1:
            return coupling
        perm = jnp.concatenate(
            [jr.permutation(k_a, jnp.arange(kept, dim)), jr.permutation(k_b, jnp.arange(kept))]
        )
        return Chain([coupling, Permute(perm)]).merge_chains()

    stacked = eqx.filter_vmap(make_layer)(jr.split(key, layers))
    return Transformed(base, Invert(Scan(stacked)))


def _affine_autoregressive(key, dim, cond_dim, width, depth):
    """One masked autoregressive affine layer given the observation, on the parameter side.

    After the spline couplings (nearest the parameters) it carries the location
    and scale (and linear correlations) that depend on the observation, so the
    splines, which are the identity outside their interval, only shape what is
    left: a Gaussian or heavy-tailed posterior far from the prior's centre is
    reached by the affine layer, not squeezed through the splines' tails.
    """
    layer = MaskedAutoregressive(
        key,
        transformer=_affine_with_min_scale(),
        dim=dim,
        cond_dim=cond_dim,
        nn_width=width,
        nn_depth=depth,
    )
    return Invert(layer)  # log_prob (training) runs the parallel direction


def _neural_autoregressive_flow(
    key, base, *, cond_dim, dim, layers, depth, block_dim, min_slope, min_residual, steps
):
    inverter = _bisection_inverter(steps, min_residual)

    def make_layer(k):
        k1, k2 = jr.split(k)
        net = BlockAutoregressiveNetwork(
            k1,
            dim=dim,
            cond_dim=cond_dim,
            depth=depth,
            block_dim=block_dim,
            activation=_SlopedTanh(min_slope),
        )
        layer = NumericalInverse(_ResidualBNAF(net, min_residual), inverter)
        return _permute(layer, dim, k2)

    stacked = eqx.filter_vmap(make_layer)(jr.split(key, layers))
    return Transformed(base, Invert(Scan(stacked)))


def build_base(dim: int, base_distribution: str, use_base_affine: bool) -> AbstractDistribution:
    """The flow's base: standard Gaussian or Student-t, with a trainable affine if asked."""
    check_choice(base_distribution, BASE_DISTRIBUTIONS, "base_distribution")
    if base_distribution == "gaussian":
        return Normal(jnp.zeros(dim), jnp.ones(dim)) if use_base_affine else StandardNormal((dim,))
    if use_base_affine:
        return StudentT(jnp.full(dim, STUDENT_T_DF), jnp.zeros(dim), jnp.ones(dim))
    return _FixedStudentT((dim,), STUDENT_T_DF)


#: equinox's module-global switch for its runtime checks (read when a check is made)
_EQX_SETTING = "EQX_ON_ERROR"


@contextlib.contextmanager
def _own_arguments_unchecked() -> Iterator[None]:
    """flowjax's constructors without their ``eqx.error_if`` argument checks.

    ``Permute`` checks that its permutation is one and ``Affine`` that its scale is
    positive; the flows here hand them ``jax.random.permutation`` draws and unit
    scales, which always pass. Traced in the compiled network build, each check is a
    host callback, and JAX's persistent compilation cache refuses a program with
    host callbacks: the build would be compiled again in every process. equinox
    reads its ``EQX_ON_ERROR`` setting (module-global, private) when a check is
    made, so it is ``"off"`` while a flow is built; the values are the same.
    """
    try:
        errors = importlib.import_module("equinox._errors")
    except ImportError:  # a future equinox: the checks stay
        yield
        return
    before = getattr(errors, _EQX_SETTING, None)
    if before is None:
        yield
        return
    setattr(errors, _EQX_SETTING, "off")
    try:
        yield
    finally:
        setattr(errors, _EQX_SETTING, before)


@_own_arguments_unchecked()
def build_flow(
    key: PRNGKeyArray,
    *,
    flow_family: str,
    dim: int,
    cond_dim: int,
    num_layers: int,
    hidden_dim: int,
    depth: int,
    base_distribution: str = "gaussian",
    use_base_affine: bool = False,
    num_spline_bins: int = 8,
    spline_bound: float = 10.0,
    autoregressive_transform_units: int = 16,
    neural_autoregressive_min_slope: float = 1e-3,
    neural_autoregressive_min_residual: float = 0.05,
    neural_autoregressive_inverse_bisection_steps: int = 48,
    linear_gaussian_end: bool = False,
) -> Transformed:
    """Build a conditional flow over ``dim`` parameters given a ``cond_dim`` context.

    Families:
        ``"spline"``: coupling layers with ``RationalQuadraticSpline(knots=num_spline_bins,
        interval=spline_bound)`` (identity outside the interval); the halves swap
        between layers so every coordinate is transformed.
        ``"affine"``: affine coupling layers (RealNVP-style).
        ``"autoregressive"``: masked autoregressive affine layers whose MADE network
        has ``autoregressive_transform_units * dim`` hidden units per layer.
        ``"spline_affine"``: the ``"spline"`` couplings, then one masked autoregressive
        affine layer given the condition (on the parameter side), which carries the
        location, scale and linear correlations, also far outside the splines' interval.
        ``"neural_autoregressive"``: block neural autoregressive layers (block size
        ``autoregressive_transform_units``) with activation ``tanh(x) + min_slope*x``
        and a residual share ``min_residual``; sampling inverts them by element-wise
        bisection with ``inverse_bisection_steps`` halvings.

    With ``linear_gaussian_end`` the flow gains a `ConditionalLinearGaussian` layer,
    the identity until ``_linear_start.linear_gaussian_start`` sets it. In the spline
    families it sits between the couplings: ``num_layers - num_layers // 2`` of them
    (and the affine layer) on the base side shape the standardised residual of the
    linear prediction, where a shape that moves with the observation (a mixture
    around it) stands still; ``num_layers // 2`` on the parameter side shape what
    stands still in parameter space (the walls of a bounded prior). The other
    families end in it.

    Returns:
        A ``flowjax`` ``Transformed`` distribution with ``cond_shape == (cond_dim,)``.
    """
    family_args = {k: v for k, v in locals().items() if k != "linear_gaussian_end"}
    if not linear_gaussian_end:
        return _build_family_flow(**family_args)
    linear = ConditionalLinearGaussian(dim, cond_dim)
    outer_layers = num_layers // 2 if flow_family in ("spline", "spline_affine") else 0
    if not outer_layers:
        flow = _build_family_flow(**family_args)
        return Transformed(flow.base_dist, Chain([flow.bijection, linear]))
    k_inner, k_outer = jr.split(key)
    family_args.update(key=k_inner, num_layers=num_layers - outer_layers)
    inner = _build_family_flow(**family_args)
    outer = _coupling_flow(
        k_outer,
        inner.base_dist,
        _spline_coupling(num_spline_bins, spline_bound),
        dim=dim,
        cond_dim=cond_dim,
        layers=outer_layers,
        width=hidden_dim,
        depth=depth,
    )
    return Transformed(inner.base_dist, Chain([inner.bijection, linear, outer.bijection]))


def _spline_coupling(num_spline_bins: int, spline_bound: float):
    return functools.partial(SplineCoupling, knots=num_spline_bins, interval=spline_bound)


def _build_family_flow(
    key,
    *,
    flow_family,
    dim,
    cond_dim,
    num_layers,
    hidden_dim,
    depth,
    base_distribution,
    use_base_affine,
    num_spline_bins,
    spline_bound,
    autoregressive_transform_units,
    neural_autoregressive_min_slope,
    neural_autoregressive_min_residual,
    neural_autoregressive_inverse_bisection_steps,
) -> Transformed:
    check_choice(flow_family, FLOW_FAMILIES, "flow_family")
    base = build_base(dim, base_distribution, use_base_affine)
    if flow_family in ("spline", "affine", "spline_affine"):
        if flow_family == "affine":
            make_coupling = functools.partial(Coupling, transformer=_affine_with_min_scale())
        else:
            make_coupling = _spline_coupling(num_spline_bins, spline_bound)
        k_coupling, k_affine = jr.split(key) if flow_family == "spline_affine" else (key, None)
        flow = _coupling_flow(
            k_coupling,
            base,
            make_coupling,
            dim=dim,
            cond_dim=cond_dim,
            layers=num_layers,
            width=hidden_dim,
            depth=depth,
        )
        if flow_family != "spline_affine":
            return flow
        affine = _affine_autoregressive(k_affine, dim, cond_dim, hidden_dim, depth)
        return Transformed(base, Chain([flow.bijection, affine]))
    if flow_family == "autoregressive":
        return masked_autoregressive_flow(
            key,
            base_dist=base,
            cond_dim=cond_dim,
            flow_layers=num_layers,
            nn_width=autoregressive_transform_units * max(dim, 1),
            nn_depth=depth,
        )
    if not 0 < neural_autoregressive_min_residual < 1:
        raise ConfigError(
            "neural_autoregressive_min_residual: expected a value in (0, 1), got "
            f"{neural_autoregressive_min_residual}"
        )
    if not neural_autoregressive_min_slope > 0:
        raise ConfigError(
            "neural_autoregressive_min_slope: expected a positive value, got "
            f"{neural_autoregressive_min_slope}"
        )
    return _neural_autoregressive_flow(
        key,
        base,
        cond_dim=cond_dim,
        dim=dim,
        layers=num_layers,
        depth=depth,
        block_dim=autoregressive_transform_units,
        min_slope=neural_autoregressive_min_slope,
        min_residual=neural_autoregressive_min_residual,
        steps=neural_autoregressive_inverse_bisection_steps,
    )
