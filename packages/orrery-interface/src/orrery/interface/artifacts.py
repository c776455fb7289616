"""The one on-disk format for every saved orrery object.

An artifact is a directory holding two files:

- ``metadata.json``: schema version, kind, producer (distribution and
  version), a JSON-safe ``config`` and free-form user ``metadata``;
- ``arrays.npz``: named NumPy arrays, read back with ``allow_pickle=False``.

Writes are atomic: everything goes into a temporary sibling directory, files
and directory are fsynced, and only then is the directory renamed into place.
Replacing an existing artifact moves the old one aside first and deletes it
only after the new one is in place, and :func:`load_artifact` recovers the old
one if a crash happened between those two renames. Nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ArtifactError

__all__ = [
    "ARRAYS_FILE",
    "METADATA_FILE",
    "SCHEMA_VERSION",
    "Artifact",
    "check_json_safe",
    "load_artifact",
    "save_artifact",
]

SCHEMA_VERSION = 1
METADATA_FILE = "metadata.json"
ARRAYS_FILE = "arrays.npz"
_BACKUP_TAG = ".orrery-old-"
_TEMP_TAG = ".orrery-tmp-"


@dataclass(frozen=True)
class Artifact:
    """What :func:`load_artifact` returns.

    Attributes:
        kind: what was saved, e.g. ``"orrery.lux.Cannon"``.
        config: the JSON-safe configuration needed to rebuild the object.
        arrays: the named arrays.
        metadata: free-form JSON-safe user metadata.
        schema_version: the artifact schema version that wrote it.
        producer: ``{"distribution": ..., "version": ...}`` of the writer.
    """

    kind: str
    config: dict[str, Any]
    arrays: dict[str, np.ndarray]
    metadata: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    producer: dict[str, Any] = field(default_factory=dict)


def check_json_safe(value: Any, name: str = "config") -> Any:
    """Return a plain-JSON copy of ``value`` or raise naming the offending key.

    Accepted: ``None``, ``bool``, ``int``, ``float`` (including inf and NaN,
    which Python's json round-trips), ``str``, lists and tuples (written as
    lists), dicts with string keys, and NumPy scalars (converted).

    Raises:
        ArtifactError: naming the path of the first value that is not JSON-safe.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.generic) and value.shape == ():
        value = value.item()
        if isinstance(value, complex):
            raise ArtifactError(f"{name} is a complex number, which is not JSON-safe")
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ArtifactError(
                    f"{name} has key {key!r} of type {type(key).__name__}; JSON keys must be str"
                )
            out[key] = check_json_safe(item, f"{name}[{key!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [check_json_safe(item, f"{name}[{i}]") for i, item in enumerate(value)]
    hint = "; put arrays in `arrays`" if hasattr(value, "shape") else ""
    raise ArtifactError(f"{name} has type {type(value).__name__}, which is not JSON-safe{hint}")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, write) -> None:
    with open(path, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())


def _clean_arrays(arrays: Mapping[str, Any]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for key, value in arrays.items():
        if not isinstance(key, str) or not key:
            raise ArtifactError(f"arrays: keys must be non-empty str, got {key!r}")
        arr = np.asarray(value)
        if arr.dtype.hasobject:
            raise ArtifactError(
                f"arrays[{key!r}] has dtype object, which cannot be stored without pickle"
            )
        out[key] = arr
    return out


def save_artifact(
    path: str | os.PathLike[str],
    *,
    kind: str,
    config: Mapping[str, Any],
    arrays: Mapping[str, Any],
    metadata: Mapping[str, Any] | None = None,
    producer: Mapping[str, Any] | None = None,
) -> Path:
    """Write an artifact directory atomically.

    Args:
        path: the artifact directory to create or replace.
        kind: what is saved (checked again by :func:`load_artifact`).
        config: JSON-safe configuration.
        arrays: named arrays (no object dtype).
        metadata: optional JSON-safe user metadata.
        producer: optional ``{"distribution": ..., "version": ...}``.

    Returns:
        The artifact path.

    Raises:
        ArtifactError: for a non JSON-safe config or metadata, object arrays, or
            a path that exists and is not a directory.

    Example:
        >>> import numpy as np, tempfile, os
        >>> d = tempfile.mkdtemp()
        >>> p = save_artifact(os.path.join(d, "m"), kind="demo", config={"k": 3},
        ...                   arrays={"w": np.arange(3.0)})
        >>> load_artifact(p, kind="demo").config
        {'k': 3}
    """
    target = Path(path)
    if not isinstance(kind, str) or not kind:
        raise ArtifactError(f"kind: expected a non-empty str, got {kind!r}")
    if target.exists() and not target.is_dir():
        raise ArtifactError(f"path: {str(target)!r} exists and is not an artifact directory")
    doc = {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "producer": check_json_safe(dict(producer or {}), "producer"),
        "config": check_json_safe(dict(config), "config"),
        "metadata": check_json_safe(dict(metadata or {}), "metadata"),
    }
    clean = _clean_arrays(arrays)
    text = json.dumps(doc, indent=2, sort_keys=True, allow_nan=True).encode()

    parent = target.parent if str(target.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{target.name}{_TEMP_TAG}"))
    try:
        _write_file(tmp / ARRAYS_FILE, lambda fh: np.savez(fh, **clean))
        _write_file(tmp / METADATA_FILE, lambda fh: fh.write(text))
        _fsync_dir(tmp)
        _commit(tmp, target, parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _commit(tmp: Path, target: Path, parent: Path) -> None:
    """Move ``tmp`` into place, keeping any old artifact until the new one is there."""
    if not target.exists():
        os.rename(tmp, target)
        _fsync_dir(parent)
        return
    backup = parent / f".{target.name}{_BACKUP_TAG}{uuid.uuid4().hex}"
    os.rename(target, backup)
    os.rename(tmp, target)
    _fsync_dir(parent)
    shutil.rmtree(backup, ignore_errors=True)


def _recover(target: Path) -> Path | None:
    """Return a complete backup left by a crash between the two renames, if any."""
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        return None
    candidates = sorted(
        (p for p in parent.glob(f".{target.name}{_BACKUP_TAG}*") if (p / METADATA_FILE).is_file()),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    return candidates[0] if candidates else None


def load_artifact(
    path: str | os.PathLike[str],
    *,
    kind: str | None = None,
    schema_version: int | None = SCHEMA_VERSION,
) -> Artifact:
    """Read an artifact written by :func:`save_artifact`.

    Args:
        path: the artifact directory.
        kind: when given, the kind the artifact must have.
        schema_version: the schema version the reader understands (``None``
            accepts any).

    Returns:
        The :class:`Artifact`.

    Raises:
        ArtifactError: when the directory or a file is missing or corrupt, or
            the kind or schema version differ; the message says which.
    """
    target = Path(path)
    if not target.exists():
        backup = _recover(target)
        if backup is None:
            raise ArtifactError(f"path: no artifact at {str(target)!r}")
        target = backup
    if not target.is_dir():
        raise ArtifactError(f"path: {str(target)!r} is not an artifact directory")
    meta_path, arrays_path = target / METADATA_FILE, target / ARRAYS_FILE
    for p in (meta_path, arrays_path):
        if not p.is_file():
            raise ArtifactError(f"artifact {str(target)!r} is incomplete: {p.name} is missing")
    try:
        doc = json.loads(meta_path.read_text())
    except (OSError, ValueError) as err:
        raise ArtifactError(
            f"artifact {str(target)!r}: {METADATA_FILE} is not valid JSON ({err})"
        ) from err
    if not isinstance(doc, dict) or not {"schema_version", "kind", "config"} <= doc.keys():
        raise ArtifactError(
            f"artifact {str(target)!r}: {METADATA_FILE} lacks schema_version, kind or config"
        )
    found = doc["schema_version"]
    if schema_version is not None and found != schema_version:
        raise ArtifactError(
            f"artifact {str(target)!r} has schema version {found}, this reader understands "
            f"schema version {schema_version}"
        )
    if kind is not None and doc["kind"] != kind:
        raise ArtifactError(
            f"artifact {str(target)!r} holds kind {doc['kind']!r}, expected {kind!r}"
        )
    try:
        with np.load(arrays_path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as err:
        raise ArtifactError(
            f"artifact {str(target)!r}: {ARRAYS_FILE} is unreadable ({err})"
        ) from err
    return Artifact(
        kind=doc["kind"],
        config=doc["config"],
        arrays=arrays,
        metadata=doc.get("metadata", {}),
        schema_version=found,
        producer=doc.get("producer", {}),
    )
