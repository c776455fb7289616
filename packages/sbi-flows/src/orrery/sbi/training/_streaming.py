"""Training from a streaming dataset: epochs and validation read window by window.

`SplitStream` wraps one split of a streaming dataset (see ``orrery.sbi.streaming``)
with the posterior's batch transform. The trainer's streaming epoch uses the same
keys as the in-memory epoch: when one window holds the split, the batches are the
in-memory ones (same permutation of the same rows) and the updates are the same
``lax.scan`` steps; with several windows, windows and the rows inside each are
shuffled and read ahead in a background thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._prefetch import prefetch
from ._optim import make_sgd_step


class SplitStream:
    """One split of a streaming dataset, transformed, as the trainer reads it.

    Args:
        dataset: a reader with ``split_size(split)``, ``window_rows`` and
            ``read_rows(split, start, stop)``.
        split: ``"train"`` or ``"validation"``.
        transform: applied to every window after reading (e.g. to flow coordinates).
    """

    def __init__(self, dataset: Any, split: str, transform: Callable[[Any], Any]) -> None:
        self.dataset = dataset
        self.split = split
        self.transform = transform
        self.n_rows = int(dataset.split_size(split))
        self.window_rows = max(1, int(dataset.window_rows))
        self._resident: Any = None

    def load(self, start: int, stop: int) -> Any:
        return self.transform(self.dataset.read_rows(self.split, start, stop))

    def resident(self) -> Any | None:
        """The whole split on the device when it fits in one window, else ``None``."""
        if self.window_rows < self.n_rows:
            return None
        if self._resident is None:
            self._resident = jax.tree.map(jnp.asarray, self.load(0, self.n_rows))
        return self._resident

    def head(self, rows: int) -> Any:
        return self.load(0, min(rows, self.n_rows))

    def epoch_groups(self, perm_key: jax.Array, batch_size: int, n_batches: int) -> Iterator:
        """Stacked groups ``(g, batch_size, ...)`` of the epoch's batches, in order."""
        data = self.resident()
        if data is not None:
            order = jax.random.permutation(perm_key, self.n_rows)[: n_batches * batch_size]
            order = order.reshape(n_batches, batch_size)
            yield jax.tree.map(lambda a: a[order], data)
            return
        window = max(self.window_rows, batch_size)
        rng = np.random.default_rng(np.asarray(jax.random.key_data(perm_key)).ravel().tolist())
        starts = np.arange(0, self.n_rows, window)
        plan = []
        for w in rng.permutation(starts.shape[0]):
            a = int(starts[w])
            b = min(a + window, self.n_rows)
            plan.append((a, b, rng.permutation(b - a)))

        def load() -> Iterator[Any]:
            for a, b, perm in plan:
                yield jax.tree.map(lambda x, p=perm: x[p], self.load(a, b))

        # Groups of a fixed number of batches (the last one shorter), so the jitted
        # steps compile for at most two group shapes, whatever the window order.
        per_group = max(1, window // batch_size)
        carry, emitted = None, 0
        for data in prefetch(load):
            if carry is not None:
                data = jax.tree.map(lambda a, b: np.concatenate([a, b]), carry, data)
            while emitted < n_batches:
                m = jax.tree.leaves(data)[0].shape[0]
                g = min(per_group, n_batches - emitted)
                if m < g * batch_size:
                    break
                used = g * batch_size
                yield jax.tree.map(
                    lambda a, u=used, g=g: a[:u].reshape(g, batch_size, *a.shape[1:]), data
                )
                emitted += g
                data = jax.tree.map(lambda a, u=used: a[u:], data)
            carry = jax.tree.map(np.array, data)  # a copy: do not keep the whole buffer
            if emitted == n_batches:
                return

    def sequential(self, multiple: int) -> Iterator[Any]:
        """The split in order, in pieces of one window (a multiple of ``multiple`` if larger)."""
        data = self.resident()
        if data is not None:
            yield data
            return
        piece = self.window_rows
        if piece >= multiple:
            piece -= piece % multiple

        def load() -> Iterator[Any]:
            for a in range(0, self.n_rows, piece):
                yield self.load(a, min(a + piece, self.n_rows))

        yield from prefetch(load)


def make_stream_epoch(static, optimizer, loss_fn, batch_transform, batch_size):
    """``epoch(params, opt_state, stream, key)`` with the keys of the in-memory epoch."""

    sgd_step = make_sgd_step(static, optimizer, loss_fn, batch_transform)

    @jax.jit
    def steps(params, opt_state, batches, keys):
        def step(carry, xs):
            params, opt_state, loss = sgd_step(*carry, *xs)
            return (params, opt_state), loss

        keys = jax.random.wrap_key_data(keys)
        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), (batches, keys))
        return params, opt_state, losses

    def epoch(params, opt_state, stream: SplitStream, key):
        n_batches = stream.n_rows // batch_size
        perm_key, step_key = jax.random.split(key)
        # raw key data on the host: slicing it per group compiles nothing
        step_keys = np.asarray(jax.random.key_data(jax.random.split(step_key, n_batches)))
        losses, done = [], 0
        for group in stream.epoch_groups(perm_key, batch_size, n_batches):
            g = jax.tree.leaves(group)[0].shape[0]
            params, opt_state, part = steps(params, opt_state, group, step_keys[done : done + g])
            losses.append(part)
            done += g
        return params, opt_state, jnp.mean(jnp.concatenate(losses))

    return epoch


def make_stream_evaluate(evaluate, chunk: int):
    """Wrap the in-memory ``evaluate(params, data, key, n)`` to read a stream in pieces."""

    def stream_evaluate(params, stream: SplitStream, key, n):
        total = 0.0
        for data in stream.sequential(chunk):
            m = jax.tree.leaves(data)[0].shape[0]
            if m == n:  # one piece: exactly the in-memory computation
                return evaluate(params, data, key, n)
            total = total + evaluate(params, data, key, m) * m
        return total / n

    return stream_evaluate
