"""Large host buffers whose memory goes back to the system as soon as they are freed.

The streaming reader allocates a window-sized buffer per group in a background
thread and frees it in another. glibc's malloc raises its mmap threshold after the
first such free, so later buffers come from (per-thread) heaps that keep freed
pages resident: the process would grow by several windows that it does not use.
Buffers made here are anonymous memory maps instead, unmapped when the last
array referring to them goes away, without changing any process-wide setting.
"""

from __future__ import annotations

import mmap
from typing import Any

import numpy as np

#: Below this many bytes a buffer is an ordinary NumPy allocation.
MIN_MAPPED_BYTES = 256 * 1024


def empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An uninitialised C-ordered array; large ones in their own anonymous map."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if nbytes < MIN_MAPPED_BYTES:
        return np.empty(shape, dtype=dtype)
    return np.frombuffer(mmap.mmap(-1, nbytes), dtype=dtype).reshape(shape)


class Scratch:
    """Reusable work buffers, one per named slot, grown on demand and kept.

    Reads go through the same few temporaries every time instead of a fresh
    allocation per read. Not thread-safe: the owner serialises its reads.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def get(self, slot: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """An uninitialised ``shape`` array of ``dtype`` in slot ``slot``'s buffer."""
        dtype = np.dtype(dtype)
        need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        buffer = self._buffers.get(slot)
        if buffer is None or buffer.nbytes < need:
            self._buffers.pop(slot, None)
            buffer = self._buffers[slot] = empty((max(need, 1),), np.uint8)
        return buffer[:need].view(dtype).reshape(shape)
