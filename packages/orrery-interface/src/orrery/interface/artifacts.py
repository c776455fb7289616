"""The one on-disk format for every saved orrery object.

An artifact is a directory holding two files:

- `metadata.json`: schema version, kind, producer (distribution and
  version), a JSON-safe `config`, free-form user `metadata`, and a manifest
  of the arrays (dtype, shape and sha256 checksum of each);
- `arrays.npz`: named NumPy arrays in an ordinary, uncompressed npz file.

Writes are atomic: everything goes into a temporary sibling directory, files
and directory are fsynced, and only then is the directory renamed into place.
Replacing an existing artifact moves the old one aside first and deletes it
only after the new one is in place. One save at a time holds a lock per
target; a second, concurrent save to the same path fails with `ArtifactError`.
Temporary and backup directories left by a killed save are removed by the next
save to the same path; loading never reads them, so deleted data never comes
back.

Loading trusts nothing in the files: every array header is checked against the
zip member's real size and the total against a byte budget (`max_bytes`)
before memory is allocated, every array against its recorded checksum, and
object dtypes are refused, so nothing is ever unpickled or imported.
`metadata.json` is read through `read_json`: its size is checked before it is
read (`DEFAULT_MAX_JSON_BYTES`, 64 MiB) and its nesting depth after
(`DEFAULT_MAX_JSON_DEPTH`), so a huge or absurdly nested file is an
`ArtifactError` naming it, never a `MemoryError` or `RecursionError`.
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

from ._json import (
    DEFAULT_MAX_JSON_BYTES,
    DEFAULT_MAX_JSON_DEPTH,
    json_depth,
    publish_folder,
    read_json,
    read_json_inside,
    resolve_inside,
)
from ._npz import manifest_entry, read_npz, write_npz
from ._savelock import backup_prefix, debris, save_lock, temp_prefix
from .errors import ArtifactError, ConfigError

__all__ = [
    "ARRAYS_FILE",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_JSON_BYTES",
    "DEFAULT_MAX_JSON_DEPTH",
    "METADATA_FILE",
    "SCHEMA_VERSION",
    "Artifact",
    "check_json_safe",
    "load_artifact",
    "publish_folder",
    "read_json",
    "read_json_inside",
    "resolve_inside",
    "save_artifact",
]

SCHEMA_VERSION = 1
METADATA_FILE = "metadata.json"
ARRAYS_FILE = "arrays.npz"
DEFAULT_MAX_BYTES = 4 * 2**30
"""Default budget of `load_artifact`: 4 GiB of array data, decompressed."""

_REQUIRED = object()


def _type_names(types: tuple[type, ...]) -> str:
    return " or ".join("None" if t is type(None) else t.__name__ for t in types)


@dataclass(frozen=True)
class Artifact:
    """What `load_artifact` returns.

    Loaders should read arrays with `array` and config entries with
    `config_value`: both check what they return and raise `ArtifactError`
    naming the file and the entry when it is missing or of the wrong kind.

    Attributes:
        kind: what was saved, e.g. `"orrery.lux.Cannon"`.
        config: the JSON-safe configuration needed to rebuild the object.
        arrays: the named arrays.
        metadata: free-form JSON-safe user metadata.
        schema_version: the artifact schema version that wrote it.
        producer: `{"distribution": ..., "version": ...}` of the writer.
        path: the directory it was read from (`None` when built in memory).

    Example:
        >>> import numpy as np
        >>> a = Artifact(kind="demo", config={"opt": {"lr": 0.1}},
        ...              arrays={"w": np.zeros((2, 3))})
        >>> a.array("w", kind="f", shape=(None, 3)).shape
        (2, 3)
        >>> a.config_value("opt.lr", float)
        0.1
        >>> a.array("w", kind="iu")
        Traceback (most recent call last):
        ...
        orrery.interface.errors.ArtifactError: arrays.npz: array 'w' has dtype float64 ...
    """

    kind: str
    config: dict[str, Any]
    arrays: dict[str, np.ndarray]
    metadata: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    producer: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def _label(self, file: str) -> str:
        return str(self.path / file) if self.path is not None else file

    def array(
        self, name: str, *, kind: str = "f", shape: tuple[int | str | None, ...] | None = None
    ) -> np.ndarray:
        """Return the named array after checking its dtype kind and shape.

        Args:
            name: the array's name.
            kind: the allowed NumPy dtype kinds, one character each (`dtype.kind`
                letters: `"f"` float, `"c"` complex, `"i"`/`"u"` signed/unsigned
                integer, `"b"` bool, `"U"` str), e.g. `"fc"` or `"iu"`.
            shape: the expected shape, one entry per axis: an int, `None` for
                any size, or a str naming a size that must be equal on every
                axis carrying the same str. `None` (the default) accepts any
                shape.

        Returns:
            The array.

        Raises:
            ArtifactError: naming `arrays.npz` and the array when it is missing,
                its dtype kind is not allowed or its shape differs.
        """
        if not isinstance(kind, str) or not kind:
            raise ConfigError(
                f"kind: expected dtype kind letters such as 'f' or 'iu', got {kind!r}"
            )
        where = f"{self._label('arrays.npz')}: array {name!r}"
        if name not in self.arrays:
            have = ", ".join(repr(k) for k in sorted(self.arrays)) or "none"
            raise ArtifactError(f"{where} is missing (the artifact holds: {have})")
        arr = np.asarray(self.arrays[name])
        if arr.dtype.kind not in kind:
            raise ArtifactError(
                f"{where} has dtype {arr.dtype} (kind {arr.dtype.kind!r}), expected dtype "
                f"kind {kind!r}"
            )
        if shape is not None and not _shape_matches(arr.shape, tuple(shape)):
            want = tuple("*" if s is None else s for s in shape)
            raise ArtifactError(f"{where} has shape {arr.shape}, expected {want}")
        return arr

    def config_value(
        self,
        key: str,
        types: type | tuple[type | None, ...] | None,
        *,
        default: Any = _REQUIRED,
    ) -> Any:
        """Return a config entry after checking its type.

        Args:
            key: the entry; a dotted path such as `"optimizer.lr"` reads nested
                dicts.
            types: the allowed type or tuple of types (`None` stands for
                `type(None)`). `bool` is not accepted as `int` unless listed;
                an `int` is accepted where `float` is allowed and returned as a
                float.
            default: returned when the entry is missing; without it a missing
                entry is an error. A present entry of the wrong type is always
                an error.

        Returns:
            The value.

        Raises:
            ArtifactError: naming `metadata.json` and the key when the entry is
                missing (and no default is given) or has the wrong type.
        """
        allowed = tuple(
            type(None) if t is None else t
            for t in (types if isinstance(types, tuple) else (types,))
        )
        if not isinstance(key, str) or not key:
            raise ConfigError(f"key: expected a non-empty str, got {key!r}")
        where = f"{self._label(METADATA_FILE)}: config key {key!r}"
        node: Any = self.config
        for part in [key] if key in self.config else key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                if default is not _REQUIRED:
                    return default
                raise ArtifactError(f"{where} is missing")
            node = node[part]
        if isinstance(node, bool) and bool not in allowed:
            ok = False
        elif isinstance(node, int) and not isinstance(node, bool) and float in allowed:
            return node if int in allowed else float(node)
        else:
            ok = isinstance(node, allowed)
        if not ok:
            raise ArtifactError(
                f"{where} has type {type(node).__name__} ({node!r}), expected "
                f"{_type_names(allowed)}"
            )
        return node


def _shape_matches(shape: tuple[int, ...], want: tuple[int | str | None, ...]) -> bool:
    if len(shape) != len(want):
        return False
    bound: dict[str, int] = {}
    for size, w in zip(shape, want, strict=True):
        if w is None:
            continue
        if isinstance(w, str):
            if bound.setdefault(w, size) != size:
                return False
        elif size != w:
            return False
    return True


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


def _json_safe(value: Mapping[str, Any], name: str) -> dict[str, Any]:
    """`check_json_safe`, plus the nesting limit `load_artifact` applies when reading back."""
    limit = DEFAULT_MAX_JSON_DEPTH - 1  # the document wraps each section one level deeper
    try:
        clean = check_json_safe(dict(value), name)
    except RecursionError:
        clean = None
    if clean is None or json_depth(clean, limit) > limit:
        raise ArtifactError(
            f"{name} nests dicts or lists deeper than {limit} levels, which load_artifact "
            "would refuse to read back"
        )
    return clean


def _as_path(path: Any) -> Path:
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ArtifactError(f"path: expected a non-empty str or os.PathLike, got {path!r}")
    return Path(path)


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

    The dtype, shape and sha256 checksum of every array are recorded in
    `metadata.json` and verified by `load_artifact`. Temporary and backup
    directories left by an earlier, killed save to the same path are removed.

    Args:
        path: the artifact directory to create or replace.
        kind: what is saved (checked again by `load_artifact`).
        config: JSON-safe configuration.
        arrays: named arrays (no object dtype).
        metadata: optional JSON-safe user metadata.
        producer: optional `{"distribution": ..., "version": ...}`.

    Returns:
        The artifact path.

    Raises:
        ArtifactError: for a non JSON-safe config or metadata (or one nested
            deeper than `DEFAULT_MAX_JSON_DEPTH`, or larger than
            `DEFAULT_MAX_JSON_BYTES` as JSON), object arrays, a
            path that exists and is not a directory, or when another save to
            the same path is in progress (that one wins; this one writes
            nothing).

    Example:
        >>> import numpy as np, tempfile, os
        >>> d = tempfile.mkdtemp()
        >>> p = save_artifact(os.path.join(d, "m"), kind="demo", config={"k": 3},
        ...                   arrays={"w": np.arange(3.0)})
        >>> load_artifact(p, kind="demo").config
        {'k': 3}
    """
    target = _as_path(path)
    if not isinstance(kind, str) or not kind:
        raise ArtifactError(f"kind: expected a non-empty str, got {kind!r}")
    if target.exists() and not target.is_dir():
        raise ArtifactError(f"path: {str(target)!r} exists and is not an artifact directory")
    for name, value in (("config", config), ("arrays", arrays)):
        if not isinstance(value, Mapping):
            raise ArtifactError(f"{name}: expected a mapping, got {type(value).__name__}")
    for name, value in (("metadata", metadata), ("producer", producer)):
        if value is not None and not isinstance(value, Mapping):
            raise ArtifactError(f"{name}: expected a mapping or None, got {type(value).__name__}")
    clean = _clean_arrays(arrays)
    doc = {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "producer": _json_safe(producer or {}, "producer"),
        "config": _json_safe(config, "config"),
        "metadata": _json_safe(metadata or {}, "metadata"),
        "arrays": {key: manifest_entry(arr) for key, arr in clean.items()},
    }
    try:
        text = json.dumps(doc, indent=2, sort_keys=True, allow_nan=True).encode()
    except RecursionError:  # within the depth limit, but the caller's stack is deep already
        raise ArtifactError(
            "config and metadata nest too deeply to be written from here (Python's recursion "
            "limit); flatten them"
        ) from None
    if len(text) > DEFAULT_MAX_JSON_BYTES:
        raise ArtifactError(
            f"config and metadata take {len(text)} bytes of JSON, more than the "
            f"{DEFAULT_MAX_JSON_BYTES} load_artifact reads by default; put large data in `arrays`"
        )

    parent = target.parent if str(target.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    target = parent / target.name
    with save_lock(target):
        tmp = Path(tempfile.mkdtemp(dir=parent, prefix=temp_prefix(target)))
        try:
            _write_file(tmp / ARRAYS_FILE, lambda fh: write_npz(fh, clean))
            _write_file(tmp / METADATA_FILE, lambda fh: fh.write(text))
            _fsync_dir(tmp)
            _commit(tmp, target, parent)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return Path(path)


def _commit(tmp: Path, target: Path, parent: Path) -> None:
    """Move `tmp` into place, keeping any old artifact until the new one is there."""
    if not target.exists():
        os.rename(tmp, target)
        _fsync_dir(parent)
        return
    backup = parent / f"{backup_prefix(target)}{uuid.uuid4().hex}"
    os.rename(target, backup)
    os.rename(tmp, target)
    _fsync_dir(parent)
    shutil.rmtree(backup, ignore_errors=True)


def _missing(target: Path) -> ArtifactError:
    msg = f"path: no artifact at {str(target)!r}"
    backups = [p for p in debris(target) if p.name.startswith(backup_prefix(target))]
    if backups:
        msg += (
            f" (an interrupted save left the previous version in {str(backups[-1])!r}; it is "
            "not loaded automatically: rename it to restore it, or save again to discard it)"
        )
    return ArtifactError(msg)


def _read_metadata(meta_path: Path, max_bytes: int | None) -> dict[str, Any]:
    doc = read_json(meta_path, max_bytes=max_bytes, max_depth=DEFAULT_MAX_JSON_DEPTH)
    if not isinstance(doc, dict) or not {"schema_version", "kind", "config"} <= doc.keys():
        raise ArtifactError(f"{meta_path} lacks schema_version, kind or config")
    for key, typ in (("kind", str), ("config", dict), ("metadata", dict), ("producer", dict)):
        if key in doc and not isinstance(doc[key], typ):
            raise ArtifactError(
                f"{meta_path}: {key} has type {type(doc[key]).__name__}, expected {typ.__name__}"
            )
    manifest = doc.get("arrays")
    if not isinstance(manifest, dict) or not all(isinstance(v, dict) for v in manifest.values()):
        raise ArtifactError(
            f"{meta_path} has no valid array manifest ('arrays': dtype, shape and checksum of "
            "each array); it was not written by this version of save_artifact or was edited"
        )
    return doc


def load_artifact(
    path: str | os.PathLike[str],
    *,
    kind: str | None = None,
    schema_version: int | None = SCHEMA_VERSION,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
) -> Artifact:
    """Read and verify an artifact written by `save_artifact`.

    Nothing is imported, unpickled or allocated on the word of the files:
    array headers are checked against the real member sizes and the total
    against `max_bytes` before any array is read, and each array against the
    checksum recorded when it was saved.

    Args:
        path: the artifact directory.
        kind: when given, the kind the artifact must have.
        schema_version: the schema version the reader understands (`None`
            accepts any).
        max_bytes: the most bytes of array data to decompress (default
            `DEFAULT_MAX_BYTES`, 4 GiB); `None` lifts this limit and the size
            limit of `metadata.json` (`DEFAULT_MAX_JSON_BYTES`, 64 MiB), for
            trusted files only. The nesting limit of `metadata.json`
            (`DEFAULT_MAX_JSON_DEPTH`) always applies.

    Returns:
        The `Artifact`, with `path` set.

    Raises:
        ArtifactError: when the directory or a file is missing, corrupt,
            truncated, larger than its limit, nested too deeply (JSON), or does
            not match its
            checksums, or the kind or schema version differ; the message
            names the file and says what is wrong.
    """
    if max_bytes is not None and (
        isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)) or max_bytes < 0
    ):
        raise ConfigError(f"max_bytes: expected a non-negative int or None, got {max_bytes!r}")
    target = _as_path(path)
    if not target.exists():
        raise _missing(target)
    if not target.is_dir():
        raise ArtifactError(f"path: {str(target)!r} is not an artifact directory")
    meta_path, arrays_path = target / METADATA_FILE, target / ARRAYS_FILE
    for p in (meta_path, arrays_path):
        if not p.is_file():
            raise ArtifactError(f"artifact {str(target)!r} is incomplete: {p.name} is missing")
    doc = _read_metadata(meta_path, None if max_bytes is None else DEFAULT_MAX_JSON_BYTES)
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
    arrays = read_npz(arrays_path, str(arrays_path), doc["arrays"], max_bytes)
    return Artifact(
        kind=doc["kind"],
        config=doc["config"],
        arrays=arrays,
        metadata=doc.get("metadata", {}),
        schema_version=found,
        producer=doc.get("producer", {}),
        path=target,
    )
