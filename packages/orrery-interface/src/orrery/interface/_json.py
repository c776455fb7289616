"""Private: read JSON from a file without trusting its size or its nesting.

A hostile or corrupt file can be enormous (a 512 MB `metadata.json`, or a link
to a device that never ends) or nested so deeply that a parser or any later
recursive walk runs out of stack. `read_json` checks the size with `stat`
before reading, reads at most one byte more than the limit (so a file that
grows, or lies about its size, is still caught), and checks the nesting depth
of what it parsed without recursion.
"""

from __future__ import annotations

import json
import os
import stat
from typing import Any

from .errors import ArtifactError

DEFAULT_MAX_JSON_BYTES = 64 * 2**20
"""Default size limit of a JSON file read from an artifact: 64 MiB."""

DEFAULT_MAX_JSON_DEPTH = 800
"""Default limit on the nesting depth (objects and arrays) of such a file.

Orrery's own artifacts nest about 25 levels; a parax operator graph adds about
two per chained operation, so a sum of 390 terms still fits. Python's parser
cannot go much deeper under the default recursion limit of 1000 anyway.
"""


def json_depth(doc: Any, limit: int) -> int:
    """Nesting depth of objects and arrays in `doc` (a scalar is 0), without recursion.

    Stops early and returns a value above `limit` as soon as the limit is passed.
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, (list, tuple)):
            children = node
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def read_json(
    path: str | os.PathLike[str],
    *,
    max_bytes: int | None = DEFAULT_MAX_JSON_BYTES,
    max_depth: int = DEFAULT_MAX_JSON_DEPTH,
) -> Any:
    """Parse the JSON file at `path`, refusing files too large or nested too deeply.

    Args:
        path: the file.
        max_bytes: the most bytes the file may hold; `None` lifts the limit
            (trusted files only).
        max_depth: the deepest nesting of objects and arrays allowed.

    Returns:
        The parsed document (`NaN` and `Infinity` are accepted, as Python's
        json writes them).

    Raises:
        ArtifactError: naming the file when it cannot be read, is larger than
            `max_bytes`, is not valid JSON (or not UTF-8/16/32), or nests
            deeper than `max_depth`.
    """
    label = os.fspath(path)
    try:
        size = os.stat(path).st_size
        if max_bytes is not None and size > max_bytes:
            raise ArtifactError(_too_large(label, f"{size} bytes", max_bytes))
        with open(path, "rb") as fh:
            raw = fh.read() if max_bytes is None else fh.read(max_bytes + 1)
    except OSError as err:
        raise ArtifactError(f"{label} cannot be read ({err})") from err
    if max_bytes is not None and len(raw) > max_bytes:
        raise ArtifactError(_too_large(label, "more bytes than its size says", max_bytes))
    try:
        doc = json.loads(raw)
    except RecursionError:
        raise ArtifactError(
            f"{label} nests objects or arrays too deeply to parse (the limit is {max_depth})"
        ) from None
    except ValueError as err:  # includes JSONDecodeError and UnicodeDecodeError
        raise ArtifactError(f"{label} is not valid JSON ({err})") from err
    if json_depth(doc, max_depth) > max_depth:
        raise ArtifactError(
            f"{label} nests objects or arrays deeper than {max_depth} levels; no orrery "
            "artifact writes that, so the file was edited or is not an orrery file"
        )
    return doc


def resolve_inside(path: str | os.PathLike[str], root: str | os.PathLike[str], what: str) -> str:
    """``path`` with links resolved, refused (`ArtifactError`) when that leaves ``root``.

    On-disk stores use it before reading a file so that a link planted in a store
    cannot make it read another campaign's data or a device.
    """
    real, base = os.path.realpath(path), os.path.realpath(root)
    if real != base and not real.startswith(base.rstrip(os.sep) + os.sep):
        raise ArtifactError(f"store: {what} ({str(path)!r}) is a link that leaves the store")
    return real


def publish_folder(tmp: str | os.PathLike[str], final: str | os.PathLike[str], marker: str) -> bool:
    """Rename the finished folder ``tmp`` to ``final`` in one ``os.rename``.

    The tail of an on-disk store's atomic chunk write: a chunk is written whole under
    a temporary name, then made visible at once. Where another writer finished the
    same chunk first (``final/marker`` is a file), nothing is replaced and the result
    is False; ``tmp`` stays for the caller to remove.

    Returns:
        True when ``tmp`` became ``final``, False when another writer's ``final`` was there.

    Raises:
        OSError: the rename failed for any other reason (no finished ``final``).
    """
    try:
        os.rename(tmp, final)
    except OSError:
        if os.path.isfile(os.path.join(final, marker)):  # another writer finished it first
            return False
        raise
    return True


def read_json_inside(
    path: str | os.PathLike[str],
    root: str | os.PathLike[str],
    what: str,
    *,
    max_bytes: int | None = DEFAULT_MAX_JSON_BYTES,
) -> Any:
    """`read_json` of a regular file that stays inside ``root``; errors name its role ``what``.

    Raises:
        ArtifactError: a link out of ``root``, not a regular file, unreadable, or any
            `read_json` refusal.
    """
    real = resolve_inside(path, root, what)
    try:
        if not stat.S_ISREG(os.stat(real).st_mode):
            raise ArtifactError(f"store: {what} ({str(path)!r}) is not a regular file")
    except OSError as err:
        raise ArtifactError(f"store: cannot read {what} ({str(path)!r}): {err!r}") from err
    try:
        return read_json(real, max_bytes=max_bytes)
    except ArtifactError as err:
        raise ArtifactError(f"store: {what}: {err}") from err


def _too_large(label: str, found: str, max_bytes: int) -> str:
    return (
        f"{label} holds {found}, more than the {max_bytes} bytes allowed for this JSON "
        "file; it is corrupt or not an orrery file (for a trusted file, lift the limit "
        "with max_bytes=None)"
    )
