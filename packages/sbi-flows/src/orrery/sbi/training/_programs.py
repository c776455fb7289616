"""The compiled programs of a fit and the cache that lets later fits reuse them.

`cached` keeps jitted epoch/validation/schedule functions across ``fit`` calls
with identical statics (least recently used first out); `compiled` compiles an
epoch ahead of time for its arguments' shapes. The programs take the model's
non-trained arrays (``consts``) as inputs, so a repeat fit of the same
architecture with another seed compiles nothing.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .._posterior import _host_eval
from .._xla import compiler_options
from ._optim import combine_model, make_sgd_step

__all__ = [
    "EVAL_CHUNK",
    "JIT_CACHE",
    "JIT_CACHE_SIZE",
    "cached",
    "compiled",
    "evaluate_mean",
    "host_unravel",
    "make_evaluate",
    "make_setup",
    "make_train_epoch",
    "returns_vector",
    "run_setup",
    "strong",
    "with_consts",
]


def _take(data: Any, idx: jax.Array) -> Any:
    return jax.tree.map(lambda a: a[idx], data)


EVAL_CHUNK = 1024
JIT_CACHE: dict = {}
JIT_CACHE_SIZE = 16


def cached(key: tuple, build: Callable[[], Any]) -> Any:
    """Reuse jitted epoch functions across ``fit`` calls with identical statics.

    Least recently used entries go first: a hit moves its entry to the back, so the
    functions a fit has just used survive the entries that same fit adds. Models
    whose static part is unhashable are simply not cached.
    """
    try:
        hash(key)
    except TypeError:
        return build()
    if key in JIT_CACHE:
        JIT_CACHE[key] = JIT_CACHE.pop(key)
    else:
        if len(JIT_CACHE) >= JIT_CACHE_SIZE:
            JIT_CACHE.pop(next(iter(JIT_CACHE)))
        JIT_CACHE[key] = build()
    return JIT_CACHE[key]


def compiled(key: tuple, fn: Any, args: tuple) -> tuple[Any, bool]:
    """``fn`` compiled ahead of time for ``args``' shapes; cached; ``(compiled, reused)``."""
    leaves, treedef = jax.tree.flatten(args)
    full = ("aot", key, treedef, tuple((tuple(x.shape), str(x.dtype)) for x in leaves))

    def compile_():
        return fn.lower(*args).compile(compiler_options=compiler_options())

    try:
        hash(full)
    except TypeError:
        return compile_(), False
    reused = full in JIT_CACHE
    return cached(full, compile_), reused


def with_consts(compiled: Any, consts: Any, like: Any = None) -> Callable:
    """``epoch(params, opt_state, data, draws)`` of a compiled epoch taking ``consts`` last.

    Where the epoch returns its trained vector (`returns_vector` of ``like``, the
    parameters' pytree), it is split into that pytree here, on the host.
    """
    split = host_unravel(like) if like is not None and returns_vector(like) else None

    def epoch(params, opt_state, data, draws):
        out, opt_state, loss = compiled(params, opt_state, data, draws, consts)
        return (out if split is None else split(out)), opt_state, loss

    return epoch


def returns_vector(params: Any) -> bool:
    """Whether the in-memory epoch returns the trained arrays as their one vector.

    Split in the program, that vector is one slice kernel per parameter array at
    the epoch's end (31 of the recipe's); on a CPU the host splits it into views
    without a program, the same arrays bit for bit (issue 37). Not off the CPU (the
    vector would go to the host and back every epoch), nor for leaves of several
    dtypes (``ravel_pytree`` converts them).
    """
    leaves = jax.tree.leaves(params)
    dtypes = {jnp.result_type(x) for x in leaves}
    return jax.default_backend() == "cpu" and len(dtypes) == 1


def host_unravel(like: Any) -> Callable[[jax.Array], Any]:
    """Split ``ravel_pytree(like)``'s vector into ``like``'s pytree with NumPy.

    Each part goes to the device by ``jax.device_put``, which compiles nothing
    (``jnp.asarray`` would compile a staging program per shape).
    """
    leaves, treedef = jax.tree.flatten(like)
    shapes = [tuple(np.shape(x)) for x in leaves]
    ends = np.cumsum([math.prod(s) for s in shapes]).tolist()
    starts = [0, *ends[:-1]]

    def unravel(flat: jax.Array) -> Any:
        host = np.asarray(flat)
        pieces = zip(starts, ends, shapes, strict=True)
        parts = [jax.device_put(host[a:b].reshape(s)) for a, b, s in pieces]
        return jax.tree.unflatten(treedef, parts)

    return unravel


def strong(tree: Any) -> Any:
    return jax.tree.map(lambda x: jax.lax.convert_element_type(x, jnp.result_type(x)), tree)


def make_train_epoch(static, optimizer, loss_fn, batch_transform, batch_size):
    """One jitted epoch: ``lax.scan`` over the full minibatches of a given shuffle.

    ``epoch_fn(params, opt_state, data, draws, consts)`` takes ``draws = (order,
    step_keys)`` from `orrery.sbi._host_keys.epoch_draws`: the rows of each step
    ``(steps, batch_size)`` and the raw data of the steps' keys, drawn on the host
    (in the program, the shuffle's sorts and Threefry loops were an eighth of its
    kernels; issue 37). The scan carries the trained arrays as one vector
    (``ravel_pytree``: the leaves in ``jax.tree.flatten`` order, the layout
    ``optax.flatten`` gives the optimiser's state), ravelled on entry and, off the
    CPU, split again on exit (on a CPU it is returned whole: `returns_vector`).
    """

    @jax.jit
    def epoch_fn(params, opt_state, data, draws, consts=None):
        flat, unravel = ravel_pytree(params)
        sgd_step = make_sgd_step(static, optimizer, loss_fn, batch_transform, unravel)

        def step(carry, xs):
            idx, k = xs
            flat, opt_state = carry
            flat, opt_state, loss = sgd_step(flat, opt_state, _take(data, idx), k, consts)
            return (flat, opt_state), loss

        order, key_data = draws
        xs = (order, jax.random.wrap_key_data(key_data))
        (flat, opt_state), losses = jax.lax.scan(step, (flat, opt_state), xs)
        out = flat if returns_vector(params) else unravel(cast(jax.Array, flat))
        return out, opt_state, jnp.mean(losses)

    return epoch_fn


#: ``fold_in`` data of the validation key (the epochs' keys fold in the epoch number)
VAL_KEY_DATA = 0x7FFFFFFF


def make_setup(optimizer, schedule):
    """What a fit needs before its first epoch, as one jitted program.

    ``setup(params, base_key, end_steps) -> (opt_state, learning rates, epoch keys'
    data, validation key's data)``: the optimiser's initial state, the schedule at each
    epoch's last step, ``fold_in(base_key, epoch)`` for every epoch (as raw key data,
    read on the host, so that an epoch's key costs no program) and the validation
    key. Computed apart, they were four small programs a first fit compiled
    (issue 37); the values are the same.
    """

    @jax.jit
    def setup(params, base_key, end_steps):
        epochs = jnp.arange(end_steps.shape[0])
        keys = jax.vmap(lambda epoch: jax.random.fold_in(base_key, epoch))(epochs)
        val_key = jax.random.fold_in(base_key, VAL_KEY_DATA)
        opt_state = strong(optimizer.init(params))
        keys, val_key = jax.random.key_data(keys), jax.random.key_data(val_key)
        return opt_state, schedule(end_steps), keys, val_key

    return setup


def run_setup(setup: Any, params: Any, base_key: jax.Array, end_steps: np.ndarray) -> Any:
    """``setup(params, base_key, end_steps)``, evaluated on the host from its jaxpr.

    The setup's arithmetic (key folds, the schedule, zeros) is small; compiled, it
    was a program of its own in every first fit (issue 37). `_host_eval` gives the
    same keys and optimiser state bit for bit and the (reported) learning rates to
    rounding (NumPy's ``cos``; XLA also fuses the schedule's arithmetic differently);
    where it cannot evaluate the jaxpr, the compiled program runs.
    """
    end_steps = np.asarray(end_steps, jnp.result_type(int))  # as the program sees them
    closed, shapes = jax.make_jaxpr(setup, return_shape=True)(params, base_key, end_steps)
    args = [np.asarray(a) for a in jax.tree.leaves(params)]
    args += [np.asarray(jax.random.key_data(base_key)), end_steps]
    try:
        # NumPy's transcendentals: only the reported rates use them
        outs = _host_eval.evaluate(closed, args, None)
    except _host_eval.Unsupported:
        return setup(params, base_key, jax.device_put(end_steps))
    leaves = [
        jax.device_put(np.asarray(out, shape.dtype))
        for out, shape in zip(outs, jax.tree.leaves(shapes), strict=True)
    ]
    return jax.tree.unflatten(jax.tree.structure(shapes), leaves)


def make_evaluate(static, loss_fn, batch_size):
    """The jitted halves of `evaluate_mean`: a scan over full chunks, and one chunk.

    Both take the model's non-trained arrays (``consts``) as an input, so they can
    be cached per architecture and reused by every fit of it.
    """

    def chunk_loss(params, batch, key, consts):
        return loss_fn(combine_model(params, consts, static), batch, key)

    @functools.partial(jax.jit, compiler_options=compiler_options())
    def full_chunks(params, data, key, consts):
        n_chunks = jax.tree.leaves(data)[0].shape[0] // batch_size

        def body(total, i):
            idx = i * batch_size + jnp.arange(batch_size)
            return total + chunk_loss(params, _take(data, idx), key, consts), None

        total, _ = jax.lax.scan(body, jnp.zeros(()), jnp.arange(n_chunks))
        return total

    return full_chunks, jax.jit(chunk_loss, compiler_options=compiler_options())


def evaluate_mean(fns, batch_size, params, data, key, n, *, consts):
    """Exact mean loss over all ``n`` rows: full chunks in one scan, plus the remainder."""
    full_chunks, chunk_jit = fns
    n_chunks = n // batch_size
    total = 0.0
    # Host floats: arithmetic on device scalars would compile small programs of its own.
    if n_chunks:
        head = jax.tree.map(lambda a: a[: n_chunks * batch_size], data)
        total = float(full_chunks(params, head, key, consts)) * batch_size
    rem = n - n_chunks * batch_size
    if rem:
        tail = jax.tree.map(lambda a: a[n_chunks * batch_size :], data)
        total = total + float(chunk_jit(params, tail, key, consts)) * rem
    return total / n
