"""Verified reading of a campaign store (see `orrery.sbi._store.write` for the layout).

Nothing in a store is trusted before it is checked: metadata files are read with a
size limit (and no unbounded recursion), every path must stay inside the store after
links are resolved, data files must be regular files of exactly the size their
shape needs, and each chunk's bytes are hashed against the digest recorded when it
was written, before any of its rows are used. Counts, shapes, data types, failure
records and the campaign fingerprint are cross-checked against what the campaign
recorded. Every failure is an `ArtifactError` naming the chunk.

A chunk is hashed once per process: the result is remembered with the identity
(inode, size, modification time) of every file of the chunk, and checked again
only when one of them changes.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from orrery.interface import ArtifactError

from . import files as _store_files
from . import write as _store
from .files import MAX_METADATA_BYTES, Digest, inside

# Zarr v3 data types of the plain layout simulate writes
_PLAIN_DTYPES = {
    "bool": "|b1",
    "int8": "|i1",
    "uint8": "|u1",
    **{f"{k}{b}": f"<{k[0]}{b // 8}" for k in ("int", "uint", "float") for b in (16, 32, 64)},
}
_FLOAT_FILLS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def read_json(file: Path, store: Path, what: str) -> Any:
    """A metadata file checked by `_store_files.read_json`, of at most `MAX_METADATA_BYTES`."""
    return _store_files.read_json(file, store, what, MAX_METADATA_BYTES)


@dataclass(frozen=True)
class Layout:
    """A chunk array: its data file (``None``: every value is ``fill``), dtype and shape."""

    file: str | None
    dtype: np.dtype
    shape: tuple[int, ...]
    fill: Any = 0
    identity: tuple[int, int, int] | None = None  # the file's (inode, size, mtime) when checked

    def unchanged(self) -> bool:
        """The data file is the one that was verified (one ``stat``)."""
        if self.file is None:
            return True
        try:
            info = os.stat(self.file)
        except OSError:
            return False
        return (info.st_ino, info.st_size, info.st_mtime_ns) == self.identity


@dataclass(frozen=True)
class ChunkInfo:
    """What verifying one chunk established."""

    ok: np.ndarray
    arrays: dict[str, Layout]
    blocks: dict[str, tuple[int, str]]
    n_failed: int
    timeouts: int
    digest: str


def _layout(store: Path, folder: Path, what: str, shape: tuple[int, ...] | None) -> Layout:
    meta = read_json(folder / "zarr.json", store, f"{what} metadata")
    try:
        found = tuple(int(s) for s in meta["shape"])
        dtype_name = meta["data_type"]
        codecs = meta["codecs"]
        grid = meta["chunk_grid"]
        keys = meta.get("chunk_key_encoding", {"name": "default"})
        plain = (
            meta.get("node_type") == "array"
            and isinstance(dtype_name, str)
            and dtype_name in _PLAIN_DTYPES
            and len(codecs) == 1
            and codecs[0].get("name") == "bytes"
            and codecs[0].get("configuration", {}).get("endian", "little") == "little"
            and grid.get("name") == "regular"
            and tuple(grid.get("configuration", {}).get("chunk_shape", ())) == found
            and keys.get("name") == "default"
            and keys.get("configuration", {}).get("separator", "/") == "/"
            and not meta.get("storage_transformers")
            and len(found) >= 1
        )
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
        raise ArtifactError(f"store: {what} has malformed metadata ({err!r})") from err
    if not plain:
        raise ArtifactError(
            f"store: {what} is not in the layout simulate writes (one uncompressed "
            "little-endian chunk of a plain data type)"
        )
    if shape is not None and found != shape:
        raise ArtifactError(f"store: {what} has shape {found}, the campaign recorded {shape}")
    dtype = np.dtype(_PLAIN_DTYPES[dtype_name])
    file = folder.joinpath("c", *["0"] * len(found))
    if not os.path.lexists(file):  # Zarr writes no file for an array of fill values only
        return Layout(None, dtype, found, _fill(meta.get("fill_value"), dtype, what))
    real = inside(file, store, f"{what} data")
    info = os.stat(real)
    if not stat.S_ISREG(info.st_mode):
        raise ArtifactError(f"store: {what} data ({str(file)!r}) is not a regular file")
    expected = dtype.itemsize * math.prod(found)
    if info.st_size != expected:
        raise ArtifactError(
            f"store: {what} data ({str(file)!r}) has {info.st_size} bytes, expected "
            f"{expected} for shape {found} {dtype}"
        )
    return Layout(real, dtype, found, identity=(info.st_ino, info.st_size, info.st_mtime_ns))


def _fill(value: Any, dtype: np.dtype, what: str) -> Any:
    if isinstance(value, str) and dtype.kind == "f" and value in _FLOAT_FILLS:
        return _FLOAT_FILLS[value]
    if isinstance(value, bool) or (isinstance(value, (int, float)) and dtype.kind != "b"):
        return value
    raise ArtifactError(f"store: {what} has an unusable fill value {value!r}")


def read_bytes(layout: Layout) -> bytes:
    size = layout.dtype.itemsize * math.prod(layout.shape)
    if layout.file is None:
        return np.full(layout.shape, layout.fill, layout.dtype).tobytes()
    with open(layout.file, "rb") as fh:
        data = fh.read(size + 1)
    if len(data) != size:
        raise ArtifactError(f"store: {layout.file!r} changed size while it was read")
    return data


def _chunk_attrs(store: Path, index: int, config: dict[str, Any]) -> dict[str, Any]:
    what = f"chunk {index}"
    folder = _store.chunk_path(store, index)
    if not os.path.lexists(folder):
        raise ArtifactError(f"store: {what} is missing ({str(folder)!r})")
    inside(folder, store, what)
    meta = read_json(folder / "zarr.json", store, f"{what} metadata")
    start = index * config["chunk_size"]
    n = min(config["chunk_size"], config["num_simulations"] - start)
    try:
        attrs = meta["attributes"]["chunk"]
        found = (attrs["index"], attrs["start"], attrs["n"])
        digest = attrs["digest"]
        rows = [f["row"] for f in attrs["failures"]]
        timeouts = attrs.get("timeouts", 0)
    except (KeyError, TypeError, IndexError, AttributeError) as err:
        raise ArtifactError(f"store: {what} has malformed attributes ({err!r})") from err
    if found != (index, start, n):
        raise ArtifactError(
            f"store: {what} records (index, start, n) = {found}, the campaign expects "
            f"{(index, start, n)} (a chunk moved or copied from elsewhere?)"
        )
    if not isinstance(digest, str) or not isinstance(timeouts, int):
        raise ArtifactError(f"store: {what} has malformed attributes (digest, timeouts)")
    return {"start": start, "n": n, "digest": digest, "rows": rows, "timeouts": timeouts}


def verify_chunk(
    store: Path, index: int, config: dict[str, Any], blocks: dict[str, Any] | None = None
) -> ChunkInfo:
    """Check one chunk against its digest and the campaign (``ArtifactError`` naming it).

    ``blocks``: ``{name: {"size", "dtype"}}`` the campaign recorded (``None`` while
    finishing a campaign: the blocks are then read from the chunk).
    """
    what = f"chunk {index}"
    attrs = _chunk_attrs(store, index, config)
    n, d = attrs["n"], len(config["parameter_names"])
    folder = _store.chunk_path(store, index)
    arrays = {
        "parameters": _layout(store, folder / "parameters", f"{what} parameters", (n, d)),
        "ok": _layout(store, folder / "ok", f"{what} ok", (n,)),
    }
    if arrays["parameters"].dtype != np.float64 or arrays["ok"].dtype != np.bool_:
        raise ArtifactError(f"store: {what}: parameters must be float64 and ok bool")
    obs_dir = folder / "obs"
    names = sorted(p.name for p in obs_dir.iterdir()) if obs_dir.is_dir() else []
    names = [k for k in names if k != "zarr.json"]
    for name in names:
        shape = None if blocks is None or name not in blocks else (n, blocks[name]["size"])
        arrays[f"obs/{name}"] = _layout(store, obs_dir / name, f"{what} block {name!r}", shape)
    digest = Digest()
    ok = None
    for label in ["parameters", "ok", *[f"obs/{k}" for k in names]]:
        layout = arrays[label]
        data = read_bytes(layout)
        digest.add(label.removeprefix("obs/"), layout.dtype, layout.shape, data)
        if label == "ok":
            ok = np.frombuffer(data, np.uint8).copy()
    if digest.hexdigest() != attrs["digest"]:
        raise ArtifactError(
            f"store: {what} ({str(folder)!r}) does not match the digest recorded when it was "
            "written: it was edited or damaged; run the campaign again into a new store"
        )
    assert ok is not None
    if ok.max(initial=0) > 1:
        raise ArtifactError(f"store: {what}: its ok flags are not booleans")
    ok = ok.astype(bool)
    failed = {attrs["start"] + j for j in np.flatnonzero(~ok).tolist()}
    if set(attrs["rows"]) != failed or len(attrs["rows"]) != len(failed):
        raise ArtifactError(f"store: {what}: its ok flags disagree with its failure records")
    found = {k: (int(arrays[f"obs/{k}"].shape[1]), str(arrays[f"obs/{k}"].dtype)) for k in names}
    if any(len(arrays[f"obs/{k}"].shape) != 2 for k in names):
        raise ArtifactError(f"store: {what}: every block must be 2-D")
    if blocks is not None and ok.any():
        wanted = {k: (int(v["size"]), str(v["dtype"])) for k, v in blocks.items()}
        if found != wanted:
            raise ArtifactError(f"store: {what} has blocks {found}, the campaign recorded {wanted}")
    return ChunkInfo(ok, arrays, found, len(failed), attrs["timeouts"], attrs["digest"])


# ---------------------------------------------------------------------- once per process
_VERIFIED: dict[tuple[str, int, str], tuple[tuple[Any, ...], ChunkInfo]] = {}
_VERIFIED_LOCK = threading.Lock()


def _identity(folder: Path) -> tuple[Any, ...]:
    """Inode, size and modification time of every entry of a chunk (links not followed)."""
    out = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(dirs + files):
            info = os.lstat(os.path.join(root, name))
            out.append((root, name, info.st_ino, info.st_size, info.st_mtime_ns, info.st_mode))
    return tuple(out)


def verified_chunk(
    store: Path, index: int, config: dict[str, Any], blocks: dict[str, Any] | None
) -> ChunkInfo:
    """`verify_chunk`, remembered while none of the chunk's files changes."""
    folder = _store.chunk_path(store, index)
    real = inside(folder, store, f"chunk {index}") if os.path.lexists(folder) else str(folder)
    expect = json.dumps(
        [config.get(k) for k in _store.CAMPAIGN_KEYS] + [blocks], sort_keys=True, default=str
    )
    key = (real, index, expect)
    identity = _identity(Path(real)) + _identity_of(folder)
    with _VERIFIED_LOCK:
        hit = _VERIFIED.get(key)
    if hit is not None and hit[0] == identity:
        return hit[1]
    info = verify_chunk(store, index, config, blocks)
    with _VERIFIED_LOCK:
        _VERIFIED[key] = (identity, info)
    return info


def _identity_of(path: Path) -> tuple[Any, ...]:
    try:
        info = os.lstat(path)
    except OSError:
        return ()
    return ((str(path), info.st_ino, info.st_mode),)


def fingerprint(config: dict[str, Any], digests: list[str]) -> str:
    """The campaign fingerprint: its arguments, then every chunk's digest in order."""
    campaign = {k: config[k] for k in _store.CAMPAIGN_KEYS}
    digest = hashlib.sha256(json.dumps(campaign, sort_keys=True).encode())
    for value in digests:
        digest.update(value.encode())
    return digest.hexdigest()


def check_campaign(store: Path, config: dict[str, Any]) -> None:
    """The recorded campaign arguments are consistent (``ArtifactError`` otherwise)."""
    absent = [k for k in _store.CAMPAIGN_KEYS if k not in config]
    if absent:
        raise ArtifactError(f"store: {str(store)!r} does not record the campaign's {absent}")
    try:
        num, size, n_chunks = (config[k] for k in ("num_simulations", "chunk_size", "n_chunks"))
        names = config["parameter_names"]
        ok = (
            all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (num, size))
            and n_chunks == math.ceil(num / size)
            and isinstance(names, list)
            and len(names) > 0
        )
    except (KeyError, TypeError) as err:
        raise ArtifactError(
            f"store: {str(store)!r} has malformed campaign metadata ({err!r})"
        ) from err
    if not ok:
        raise ArtifactError(
            f"store: {str(store)!r} records num_simulations={num}, chunk_size={size}, "
            f"n_chunks={n_chunks}: inconsistent (edited?)"
        )
    extra = sorted(i for i in _store.finished_chunks(store) if i >= n_chunks)
    if extra:
        raise ArtifactError(
            f"store: {str(store)!r} holds chunk {extra[0]} beyond the n_chunks={n_chunks} "
            "it records (edited?)"
        )


def verify_store(store: Path, config: dict[str, Any]) -> list[ChunkInfo]:
    """Verify every chunk of a finished store and its fingerprint; one `ChunkInfo` each."""
    check_campaign(store, config)
    blocks = config.get("blocks") or {}
    try:
        wanted = {str(k): (int(v["size"]), str(v["dtype"])) for k, v in blocks.items()}
        counted = int(config["n_failed"])
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ArtifactError(
            f"store: {str(store)!r} has malformed block metadata ({err!r})"
        ) from err
    if not wanted or any(size < 1 or dtype not in _PLAIN_DTYPES for size, dtype in wanted.values()):
        raise ArtifactError(f"store: {str(store)!r} records unusable blocks {blocks!r}")
    # hashlib releases the GIL on large buffers: chunks are hashed on several threads
    workers = max(1, min(8, os.cpu_count() or 1, config["n_chunks"]))
    with ThreadPoolExecutor(workers) as pool:
        infos = list(
            pool.map(lambda i: verified_chunk(store, i, config, blocks), range(config["n_chunks"]))
        )
    if fingerprint(config, [info.digest for info in infos]) != config.get("fingerprint"):
        raise ArtifactError(
            f"store: {str(store)!r}: its chunks or campaign arguments do not match the "
            "campaign fingerprint recorded when it finished (edited?)"
        )
    if sum(info.n_failed for info in infos) != counted:
        raise ArtifactError(
            f"store: {str(store)!r} records n_failed={counted}, its chunks hold "
            f"{sum(info.n_failed for info in infos)} failures"
        )
    return infos


class ChunkReader:
    """Whole verified chunk arrays and chunk attributes (for inspection and tests)."""

    def __init__(self, store: str | os.PathLike[str]) -> None:
        self.store = Path(store)
        self.config = _store.read_config(self.store)

    def attrs(self, index: int) -> dict[str, Any]:
        folder = _store.chunk_path(self.store, index)
        meta = read_json(folder / "zarr.json", self.store, f"chunk {index} metadata")
        return meta["attributes"]["chunk"]

    def array(self, index: int, name: str) -> np.ndarray:
        info = verified_chunk(self.store, index, self.config, self.config.get("blocks"))
        if name not in info.arrays:
            raise ArtifactError(f"store: chunk {index} has no array {name!r}")
        layout = info.arrays[name]
        return np.frombuffer(read_bytes(layout), layout.dtype).reshape(layout.shape)
