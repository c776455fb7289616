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

from orrery.interface import ConfigError

from .._store.prefetch import prefetch
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

    def check_source(self) -> None:
        """Let the dataset check its files before a pass (a store, .npy files)."""
        check = getattr(self.dataset, "check_source", None)
        if check is not None:
            check()

    def head(self, rows: int) -> Any:
        return self.load(0, min(rows, self.n_rows))

    def epoch_groups(
        self,
        perm_key: jax.Array,
        batch_size: int,
        n_batches: int,
        *,
        part: tuple[int, int] = (0, 1),
        place: Callable[[Any], Any] | None = None,
    ) -> Iterator:
        """Stacked groups ``(g, batch_size // c, ...)`` of the epoch's batches, in order.

        The epoch plan: when the split fits one window, the in-memory epoch's
        permutation (its first ``n_batches`` batches). Otherwise windows of a whole
        number of batches, visited in a random order, each with its rows in a random
        order; every window is one group of its whole batches (the split's last,
        shorter window drops its leftover rows, as the in-memory epoch drops the
        last ``n % batch_size``). Windows hold a divisor of ``n_batches`` batches
        when one is at least half of what fits, so all groups have one shape (the
        jitted steps compile once); otherwise there are two shapes.

        Args:
            perm_key: key of the epoch's permutation.
            batch_size: rows per batch.
            n_batches: batches in the epoch (``n_rows // batch_size``).
            part: ``(i, c)``: yield only columns ``[i * batch_size // c,
                (i + 1) * batch_size // c)`` of every batch, reading only those rows
                (one process's share of a data-parallel step). ``(0, 1)``: all.
            place: applied to every group in the background thread, e.g.
                ``jax.device_put`` to overlap the host-to-device copy with the
                steps. ``None``: groups are host (NumPy) arrays.

        Raises:
            ConfigError: a bad ``part``, or ``batch_size`` not divisible by ``c``.
        """
        cols = _part_columns(part, batch_size)
        data = self.resident()
        if data is not None:
            order = jax.random.permutation(perm_key, self.n_rows)[: n_batches * batch_size]
            order = order.reshape(n_batches, batch_size)[:, cols]
            yield jax.tree.map(lambda a: a[order], data)
            return
        self.check_source()
        width = cols.stop - cols.start
        window = _group_batches(self.window_rows // batch_size, n_batches) * batch_size
        rng = np.random.default_rng(np.asarray(jax.random.key_data(perm_key)).ravel().tolist())
        starts = np.arange(0, self.n_rows, window)[rng.permutation(-(-self.n_rows // window))]

        def load() -> Iterator[Any]:
            # drawn here, window by window: the plan of a huge split is never held whole
            planned = 0
            for a in starts.tolist():
                b = min(a + window, self.n_rows)
                perm = rng.permutation(b - a)
                g = min((b - a) // batch_size, n_batches - planned)
                if g <= 0:
                    continue
                planned += g
                positions = a + perm[: g * batch_size].reshape(g, batch_size)[:, cols].ravel()
                group = self.transform(self.dataset.read_positions(self.split, positions))
                group = jax.tree.map(lambda x, g=g: x.reshape(g, width, *x.shape[1:]), group)
                yield group if place is None else place(group)

        yield from prefetch(load)

    def sequential(self, multiple: int) -> Iterator[Any]:
        """The split in order, in pieces of one window (a multiple of ``multiple`` if larger).

        Pieces are placed on the default device in the background thread.
        """
        data = self.resident()
        if data is not None:
            yield data
            return
        self.check_source()
        piece = self.window_rows
        if piece >= multiple:
            piece -= piece % multiple

        def load() -> Iterator[Any]:
            for a in range(0, self.n_rows, piece):
                yield jax.device_put(self.load(a, min(a + piece, self.n_rows)))

        yield from prefetch(load)


def _group_batches(most: int, n_batches: int) -> int:
    """Batches per window: a divisor of ``n_batches`` (one step-group shape) if one is
    at least half of ``most``, else ``most`` (a shorter last group: a second shape)."""
    most = max(1, most)
    for g in range(min(most, n_batches), (most + 1) // 2 - 1, -1):
        if g > 0 and n_batches % g == 0:
            return g
    return most


def _part_columns(part: Any, batch_size: int) -> slice:
    """The columns of a batch that part ``(i, c)`` reads."""
    try:
        i, c = (int(v) for v in part)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"part: expected a pair (i, c) of ints, got {part!r}") from err
    if c < 1 or not 0 <= i < c:
        raise ConfigError(f"part: expected (i, c) with c >= 1 and 0 <= i < c, got {part!r}")
    if batch_size % c:
        raise ConfigError(
            f"batch_size: {batch_size} must be divisible by the number of parts c={c}"
        )
    width = batch_size // c
    return slice(i * width, (i + 1) * width)


def make_stream_epoch(static, optimizer, loss_fn, batch_transform, batch_size):
    """``epoch(params, opt_state, stream, key, consts=None)`` with the in-memory epoch's keys.

    ``consts`` are the model's non-trained arrays when ``static`` was stripped of
    them (`split_static`): inputs of the compiled steps, so that one program
    serves every fit of the architecture.
    """

    sgd_step = make_sgd_step(static, optimizer, loss_fn, batch_transform)

    @jax.jit
    def steps(params, opt_state, batches, keys, consts):
        def step(carry, xs):
            (params, opt_state), (batch, key) = carry, xs
            params, opt_state, loss = sgd_step(params, opt_state, batch, key, consts)
            return (params, opt_state), loss

        keys = jax.random.wrap_key_data(keys)
        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), (batches, keys))
        return params, opt_state, losses

    def epoch(params, opt_state, stream: SplitStream, key, consts=None):
        n_batches = stream.n_rows // batch_size
        perm_key, step_key = jax.random.split(key)
        # raw key data on the host: slicing it per group compiles nothing
        step_keys = np.asarray(jax.random.key_data(jax.random.split(step_key, n_batches)))
        losses, done = [], 0
        groups = stream.epoch_groups(perm_key, batch_size, n_batches, place=jax.device_put)
        for group in groups:
            g = jax.tree.leaves(group)[0].shape[0]
            if len(losses) >= 2:
                # at most two groups in flight: dispatch runs ahead of the steps by one
                # group, never by the whole epoch (each holds a window of device memory)
                losses[-2].block_until_ready()
            keys = step_keys[done : done + g]
            params, opt_state, part = steps(params, opt_state, group, keys, consts)
            del group
            losses.append(part)
            done += g
        if len(losses) == 1:  # one window: the in-memory epoch's mean
            return params, opt_state, jnp.mean(losses[0])
        # concatenated on the host: group shapes come in an order that changes with
        # every epoch, and a jitted concatenate would compile again for each order
        return params, opt_state, np.mean(np.concatenate([np.asarray(x) for x in losses]))

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
