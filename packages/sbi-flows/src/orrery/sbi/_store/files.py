"""Checked file access both store modules use: the chunk digest and bounded reads.

`orrery.sbi._store.write` (writing a campaign) and `orrery.sbi._store.read` (verified
reading) both import from here, so the writer never imports the reader (the reader
builds on the writer's layout: `chunk_path`, `read_config`, `finished_chunks`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from orrery.interface import read_json_inside, resolve_inside

__all__ = ["MAX_METADATA_BYTES", "Digest", "inside", "read_json"]

#: Largest metadata file (zarr.json) a store read accepts, in bytes.
MAX_METADATA_BYTES = 64 * 2**20


class Digest:
    """The sha256 digest of a chunk's arrays (label, dtype and shape, then the bytes)."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()

    def add(self, label: str, dtype: np.dtype, shape: tuple[int, ...], data: bytes) -> None:
        self._h.update(f"{label}:{np.dtype(dtype).str}:{tuple(shape)}".encode())
        self._h.update(data)

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def inside(path: Path, store: Path, what: str) -> str:
    """``path`` with links resolved; ``ArtifactError`` when that leaves the store."""
    return resolve_inside(path, store, what)


def read_json(file: Path, store: Path, what: str, max_bytes: int = MAX_METADATA_BYTES) -> Any:
    """A metadata file, read only if it is a regular file in the store of at most ``max_bytes``.

    The size and nesting limits are `orrery.interface.read_json`'s; this adds the store's own
    checks (no link out of the store, a regular file) and names the file's role in the store.
    """
    return read_json_inside(file, store, what, max_bytes=max_bytes)
