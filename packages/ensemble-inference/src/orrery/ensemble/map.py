"""Layer 2: `EnsembleMAP`, an ``init`` / ``update`` / ``run`` runner for MAP/MLE."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import optax
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray, PyTree

from orrery.interface import ConfigError, check_positive_int

from . import _loop
from ._checks import as_key, check_data, check_member_count, check_on_nonfinite, check_weight
from ._kernels import LogJoint, LossAndGrad, check_optimizer, step_members
from ._sharding import (
    Devices,
    MemberShardings,
    constrain_members,
    normalize_devices,
    put_members,
    put_replicated,
    resolve_shardings,
)
from .primitives import ensemble_init, ensemble_loss
from .state import EnsembleResult, EnsembleState

__all__ = ["EnsembleMAP"]


def batch_indices(
    key: PRNGKeyArray, step: Int[Array, ""], n: int, batch_size: int
) -> Int[Array, " B"]:
    """The minibatch of step ``step``: ``permutation(fold_in(key, step), n)[:batch_size]``."""
    return jr.permutation(jr.fold_in(key, step), n)[:batch_size]


def _prior_weight(value: float | Float[ArrayLike, ""]) -> float:
    return check_weight(value, "prior_weight")


class EnsembleMAP(eqx.Module):
    r"""An ensemble of MAP (or MLE) fits with numpyro's ``init`` / ``update`` / ``run`` surface.

    Member ``e`` minimises the tempered negative log posterior
    `-(N/|B|) Σ_{i in B} log p(y_i | x_i, θ_e) - w log p(θ_e)`
    with ``w = prior_weight``.

    Args:
        log_joint: ``(params, x_batch, y_batch) -> (loglik, logprior)``.
        init_fn: ``key -> params`` for one member.
        optimizer: an ``optax.GradientTransformation``.
        ensemble_size: the number of members ``E``.
        prior_weight: ``1`` for MAP, ``0`` for MLE (the prior is then never evaluated).
        on_nonfinite: what a member whose loss, gradient or update is NaN/inf does:
            ``"skip"`` keeps its previous state for that step, ``"ignore"``
            applies the step anyway, ``"raise"`` stops ``run`` with
            `ValueDomainError`.
        devices: ``None`` (default placement), ``"all"`` or a sequence of
            ``jax.Device``: the member axis is split over a 1-D mesh of them
            and the data replicated. ``ensemble_size`` must be a multiple of
            the device count.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> x = jnp.linspace(-1.0, 1.0, 32)
        >>> y = 2.0 * x
        >>> def log_joint(p, x, y):
        ...     return -0.5 * jnp.sum((y - p["a"] * x) ** 2), -0.5 * p["a"] ** 2
        >>> runner = EnsembleMAP(log_joint, lambda k: {"a": jax.random.normal(k)},
        ...                      optax.adam(0.05), ensemble_size=8)
        >>> state = runner.init(jax.random.key(0))
        >>> state, losses = runner.update(state, x, y)  # one step for every member
        >>> losses.shape
        (8,)
        >>> params, losses = runner.run(jax.random.key(0), 100, x, y, batch_size=16)
        >>> params["a"].shape, losses.shape
        ((8,), (8, 100))
    """

    log_joint: LogJoint
    init_fn: Callable[[PRNGKeyArray], PyTree]
    optimizer: optax.GradientTransformation
    ensemble_size: int = eqx.field(static=True, default=16)
    prior_weight: float = eqx.field(static=True, default=1.0, converter=_prior_weight)
    on_nonfinite: str = eqx.field(static=True, default="skip")
    devices: Devices = eqx.field(static=True, default=None, converter=normalize_devices)

    def __check_init__(self):
        check_member_count(self.ensemble_size)
        check_on_nonfinite(self.on_nonfinite)
        if not callable(self.log_joint):
            raise ConfigError(
                f"log_joint: expected a callable, got {type(self.log_joint).__name__}"
            )
        if not callable(self.init_fn):
            raise ConfigError(f"init_fn: expected a callable, got {type(self.init_fn).__name__}")
        check_optimizer(self.optimizer)
        resolve_shardings(self.devices, self.ensemble_size)

    @property
    def shardings(self) -> MemberShardings | None:
        """The member and replicated shardings, or ``None`` without ``devices``."""
        return resolve_shardings(self.devices, self.ensemble_size)

    def init(self, seed: PRNGKeyArray | int) -> EnsembleState:
        """Initialise every member (mirrors ``numpyro.infer.SVI.init``).

        Args:
            seed: a PRNG key (or an int seed), split into one key per member.
        """
        return _init(self, as_key(seed), self.shardings)

    def update(
        self,
        state: EnsembleState,
        x_batch: PyTree[ArrayLike],
        y_batch: PyTree[ArrayLike],
        *,
        scale: float | Float[ArrayLike, ""] = 1.0,
    ) -> tuple[EnsembleState, Float[Array, " E"]]:
        """One optimizer step for every member (mirrors ``numpyro.infer.SVI.update``).

        Args:
            state: the current `EnsembleState`.
            x_batch: inputs of this step.
            y_batch: targets of this step.
            scale: weight of the log likelihood, ``N / |B|`` for a minibatch.

        Returns:
            ``(new_state, losses)`` with losses ``(E,)`` from before the update.

        The batch is not checked (one step, possibly under ``jax.jit``, as
        ``SVI.update``; `run` checks the data once, up front): NaN or inf in it
        makes every member's loss non-finite, so under ``on_nonfinite="skip"``
        every member keeps its state and the returned losses are NaN, and
        ``"raise"`` raises `ValueDomainError`.
        """
        new_state, losses, ok = _update(self, state, x_batch, y_batch, scale)
        if self.on_nonfinite == "raise":
            _loop.raise_if_concrete_nonfinite(ok)
        return new_state, losses

    def run(
        self,
        seed: PRNGKeyArray | int,
        num_epochs: int,
        x: PyTree[ArrayLike],
        y: ArrayLike,
        *,
        batch_size: int | None = None,
        init_state: EnsembleState | EnsembleResult | None = None,
        progress: bool | None = False,
    ) -> EnsembleResult:
        """Fit every member for ``num_epochs`` optimizer steps (mirrors ``SVI.run``).

        ``seed`` splits into an init key and a batch key. With ``batch_size <
        n`` step ``t`` uses the rows ``permutation(fold_in(batch_key, t),
        n)[:batch_size]`` (the same rows for every member) and the likelihood
        is scaled by ``n / batch_size``; a ``batch_size >= n`` means full batch
        with scale 1. The steps run as one ``lax.scan`` (several with
        ``progress=True``).

        Args:
            seed: a PRNG key or an int seed.
            num_epochs: the number of optimizer steps per member.
            x: inputs, an array (or pytree of arrays) with ``n`` rows.
            y: targets with ``n`` rows.
            batch_size: minibatch size; ``None`` for full batch.
            init_state: continue from this `EnsembleState` or
                `EnsembleResult` instead of initialising. A result also
                carries the step count, so that two runs of ``T1`` and ``T2``
                steps with the same ``seed`` equal one run of ``T1 + T2``.
            progress: show a tqdm progress bar (the scan is then chunked).

        Returns:
            An `EnsembleResult`; ``params, losses = result`` unpacks the
            final parameters and the ``(E, num_epochs)`` loss history.
        """
        num_epochs = check_positive_int(num_epochs, "num_epochs")
        x, y = check_data(x, y)
        n = y.shape[0]
        if batch_size is not None:
            batch_size = check_positive_int(batch_size, "batch_size")
        bsz = n if batch_size is None else min(batch_size, n)
        scale = n / bsz

        init_key, batch_key = jr.split(as_key(seed))
        shardings = self.shardings
        start = 0
        if init_state is None:
            state = self.init(init_key)
        else:
            state, start = self._continue_from(init_state)
        state = put_members(state, shardings)
        x, y = put_replicated((x, y), shardings)

        def run_chunk(st, step, length):
            return _run_chunk(
                self,
                st,
                x,
                y,
                batch_key,
                jnp.asarray(step, jnp.int32),
                length,
                bsz,
                scale,
                shardings,
            )

        state, losses, bad = _loop.drive(
            run_chunk,
            state,
            num_steps=num_epochs,
            start_step=start,
            progress=progress,
            on_nonfinite=self.on_nonfinite,
            desc="EnsembleMAP",
            members=self.ensemble_size,
        )
        skipped = _loop.previous_skips(init_state, self.ensemble_size) + bad
        return EnsembleResult(state.params, losses, skipped, state, start + num_epochs)

    def _continue_from(self, init_state: object) -> tuple[EnsembleState, int]:
        if isinstance(init_state, EnsembleResult):
            if init_state.state is None:
                raise ConfigError("init_state: this EnsembleResult carries no optimizer state")
            state, start = init_state.state, init_state.num_steps or 0
        elif isinstance(init_state, EnsembleState):
            state, start = init_state, 0
        else:
            raise ConfigError(
                "init_state: expected an EnsembleState or an EnsembleResult, "
                f"got {type(init_state).__name__}"
            )
        sizes = {
            leaf.shape[0] for leaf in jax.tree.leaves(state) if eqx.is_array(leaf) and leaf.ndim
        }
        if sizes != {self.ensemble_size}:
            raise ConfigError(
                f"init_state: expected arrays with a leading member axis of {self.ensemble_size}, "
                f"got leading sizes {sorted(sizes)}"
            )
        return state, start


def _loss_fn(runner: EnsembleMAP, scale: float | Float[ArrayLike, ""]) -> LossAndGrad:
    return ensemble_loss(runner.log_joint, prior_weight=runner.prior_weight, scale=scale)


@eqx.filter_jit
def _init(runner: EnsembleMAP, key, shardings):
    state = ensemble_init(
        runner.init_fn, runner.optimizer, ensemble_size=runner.ensemble_size, seed=key
    )
    return constrain_members(state, shardings)


@eqx.filter_jit
def _update(runner: EnsembleMAP, state, x_batch, y_batch, scale):
    return step_members(
        state,
        x_batch,
        y_batch,
        loss_fn=_loss_fn(runner, scale),
        optimizer=runner.optimizer,
        on_nonfinite=runner.on_nonfinite,
    )


@eqx.filter_jit
def _run_chunk(runner: EnsembleMAP, state, x, y, batch_key, start, length, bsz, scale, shardings):
    n = y.shape[0]
    # Only arrays may ride in the scan carry; shared non-array leaves are closed over.
    params, params_static = eqx.partition(state.params, eqx.is_array)
    opt, opt_static = eqx.partition(state.opt_state, eqx.is_array)

    def body(carry, step):
        params, opt = carry
        if bsz < n:
            idx = batch_indices(batch_key, step, n, bsz)
            xb = jax.tree.map(lambda a: a[idx], x)
            yb = y[idx]
        else:
            xb, yb = x, y
        current = EnsembleState(eqx.combine(params, params_static), eqx.combine(opt, opt_static))
        new, losses, ok = step_members(
            current,
            xb,
            yb,
            loss_fn=_loss_fn(runner, scale),
            optimizer=runner.optimizer,
            on_nonfinite=runner.on_nonfinite,
        )
        carry = (eqx.filter(new.params, eqx.is_array), eqx.filter(new.opt_state, eqx.is_array))
        return constrain_members(carry, shardings), (losses, ok)

    carry = constrain_members((params, opt), shardings)
    (params, opt), (losses, ok) = jax.lax.scan(body, carry, start + jnp.arange(length))
    state = EnsembleState(eqx.combine(params, params_static), eqx.combine(opt, opt_static))
    return state, losses.T, ok.T
