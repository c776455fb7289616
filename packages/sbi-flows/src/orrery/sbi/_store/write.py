"""On-disk layout of a simulation campaign (a Zarr v3 hierarchy).

```
<store>/zarr.json                 root group; attribute "orrery_campaign" = campaign config
<store>/.lock                     held (flock) by the campaign writing the store
<store>/chunks/zarr.json          group of finished chunks
<store>/chunks/c00000012/         one finished chunk: a Zarr group with
    parameters   (n, d) float64   the chunk's parameters (every row, failed ones too)
    ok           (n,) bool        rows whose simulation succeeded with finite values
    obs/<block>  (n, k)           simulator output (NaN in failed rows)
    attributes "chunk": index, start, n, failures [{row, parameters, error}], digest,
                        timeouts (attempts that ran past the campaign's timeout)
<store>/.incomplete/              chunks being written (never read)
```

A chunk is written as a complete Zarr group under ``.incomplete/`` and then renamed
into ``chunks/`` in one ``os.rename``: a reader (or a resumed campaign) sees either
the whole chunk or nothing, and workers writing different chunks never touch the
same file. The root metadata is replaced in one ``os.replace``. One campaign at a
time writes a store: the driver holds an exclusive lock on ``.lock`` while it runs
(released by the system when the process dies, so a killed campaign can be resumed).
The store needs a POSIX file system shared by the driver and the workers.

Reading (`ChunkReader`) never goes through Zarr: every chunk is checked by
`orrery.sbi._store.read` (digest, layout, counts) before its rows are used.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from orrery.interface import ArtifactError, ConfigError, publish_folder, require

from .files import Digest, read_json

STORE_FORMAT = "orrery.sbi.campaign"
STORE_VERSION = 1
ATTR = "orrery_campaign"
LOCK_NAME = ".lock"
#: the campaign arguments a store records and its fingerprint covers
CAMPAIGN_KEYS = (
    "prior",
    "parameter_bounds",
    "parameter_names",
    "num_simulations",
    "chunk_size",
    "n_chunks",
    "seed",
    "modalities",
)
# what an orrery store holds at its top level (nothing else is ever removed)
_OWN_ENTRIES = {"zarr.json", "chunks", ".incomplete", LOCK_NAME}


def zarr_module() -> Any:
    """Import zarr or say which extra installs it."""
    return require("zarr", extra="sbi-flows[store]", feature="the simulation store")


def chunk_name(index: int) -> str:
    return f"c{index:08d}"


def chunk_path(store: Path, index: int) -> Path:
    return store / "chunks" / chunk_name(index)


def check_block_name(name: Any) -> str:
    if not isinstance(name, str) or not name or name.startswith(".") or "/" in name:
        raise ConfigError(
            f"simulator output: block names must be non-empty str without '/' or a leading "
            f"'.', got {name!r}"
        )
    return name


# ---------------------------------------------------------------------- recognising a store
def kind_of(store: Path) -> str:
    """``"missing"``, ``"empty"``, ``"orrery"`` (a campaign store) or ``"other"``."""
    if not os.path.lexists(store):
        return "missing"
    if store.is_symlink() or not store.is_dir():
        return "other"
    entries = {p.name for p in store.iterdir()}
    if not entries - {LOCK_NAME}:
        return "empty"
    try:
        read_config(store)
    except ArtifactError:
        return "other"
    return "orrery"


def refuse_foreign(store: Path) -> None:
    """Refuse a target that exists, is not empty and is not an orrery campaign store."""
    if kind_of(store) == "other":
        raise ConfigError(
            f"store: {str(store)!r} exists and is not an empty folder or an orrery campaign "
            "store; simulate never deletes or overwrites what it did not create: give a new "
            "path (or an empty folder)"
        )


def remove_store(store: Path) -> None:
    """Remove an orrery campaign store's own entries (kept: the lock file, held by us)."""
    unknown = sorted({p.name for p in store.iterdir()} - _OWN_ENTRIES)
    if unknown:
        raise ConfigError(
            f"store: {str(store)!r} holds files an orrery campaign store never has "
            f"({unknown[:5]}); overwrite=True removes only an orrery store: move them away "
            "or give a new path"
        )
    # the marker last: a removal killed half-way leaves a store that is still recognised
    for name in (".incomplete", "chunks", "zarr.json"):
        entry = store / name
        if entry.is_symlink() or entry.is_file():
            entry.unlink()
        elif entry.is_dir():
            shutil.rmtree(entry)


# ---------------------------------------------------------------------- the campaign's lock
@contextlib.contextmanager
def locked(store: Path, wait: bool) -> Iterator[None]:
    """Hold the store's exclusive write lock (``ConfigError`` at once when another holds it)."""
    fd = os.open(store / LOCK_NAME, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        _acquire(fd, store, wait)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _acquire(fd: int, store: Path, wait: bool) -> None:
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_LOCK if wait else msvcrt.LK_NBLCK, 1)
        except OSError as err:
            raise _busy(fd, store) from err
        return
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except OSError as err:
        if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        raise _busy(fd, store) from err


def _busy(fd: int, store: Path) -> ConfigError:
    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
    return ConfigError(
        f"store: {str(store)!r} is being written by another campaign (process {holder}); "
        "wait for it to finish, pass wait=True to wait for it, or use another path"
    )


# ---------------------------------------------------------------------- metadata
def write_json_atomic(file: Path, value: Any) -> None:
    tmp = file.with_name(f".{file.name}.{uuid.uuid4().hex}")
    tmp.write_text(json.dumps(value, indent=2))
    os.replace(tmp, file)


def _group_meta(attributes: dict[str, Any]) -> dict[str, Any]:
    return {"attributes": attributes, "zarr_format": 3, "node_type": "group"}


def create_or_check(store: Path, config: dict[str, Any]) -> None:
    """Create the store with ``config``, or check an existing one was made with it."""
    if (store / "zarr.json").exists():
        found = read_config(store)
        for key, value in config.items():
            if found.get(key) != value:
                raise ConfigError(
                    f"store {str(store)!r} was created with {key}={found.get(key)!r}, this "
                    f"campaign has {key}={value!r}: use a new store path, the same arguments, "
                    "or overwrite=True to replace it"
                )
    else:
        attrs = {ATTR: {"format": STORE_FORMAT, "version": STORE_VERSION, **config}}
        write_json_atomic(store / "zarr.json", _group_meta(attrs))
    (store / "chunks").mkdir(exist_ok=True)
    if not (store / "chunks" / "zarr.json").is_file():
        write_json_atomic(store / "chunks" / "zarr.json", _group_meta({}))


def read_config(store: Path) -> dict[str, Any]:
    """The campaign attributes of a store (``ArtifactError`` when it is not one)."""
    meta = store / "zarr.json"
    if not os.path.lexists(meta):
        raise ArtifactError(f"store: {str(store)!r} is not a simulation store (no zarr.json)")
    found = read_json(meta, store, "the store's zarr.json")
    try:
        attrs = found["attributes"][ATTR]
        fmt, version = attrs.get("format"), attrs.get("version")
    except (KeyError, TypeError, AttributeError) as err:
        raise ArtifactError(
            f"store: {str(store)!r} is a Zarr group but not a simulation store ({err!r})"
        ) from err
    if fmt != STORE_FORMAT or version != STORE_VERSION:
        raise ArtifactError(
            f"store: {str(store)!r} has format {fmt!r} version {version!r}, expected "
            f"{STORE_FORMAT!r} version {STORE_VERSION}"
        )
    return attrs


def update_config(store: Path, values: dict[str, Any]) -> None:
    attrs = {**read_config(store), **values}
    write_json_atomic(store / "zarr.json", _group_meta({ATTR: attrs}))


def finished_chunks(store: Path) -> set[int]:
    folder = store / "chunks"
    if not folder.is_dir():
        return set()
    return {
        int(p.name[1:])
        for p in folder.iterdir()
        if p.name.startswith("c") and p.name[1:].isdigit() and (p / "zarr.json").is_file()
    }


def clear_incomplete(store: Path) -> None:
    """Remove chunks left half-written (call only while holding the store's lock)."""
    shutil.rmtree(store / ".incomplete", ignore_errors=True)


def chunk_digest(parameters: np.ndarray, ok: np.ndarray, obs: dict[str, np.ndarray]) -> str:
    digest = Digest()
    for label, arr in [("parameters", parameters), ("ok", ok), *sorted(obs.items())]:
        digest.add(label, arr.dtype, arr.shape, np.ascontiguousarray(arr).tobytes())
    return digest.hexdigest()


def write_chunk(
    store: Path,
    index: int,
    start: int,
    parameters: np.ndarray,
    ok: np.ndarray,
    obs: dict[str, np.ndarray],
    failures: list[dict[str, Any]],
    timeouts: int = 0,
) -> bool:
    """Write one chunk atomically; ``False`` when it already existed (nothing written)."""
    zarr = zarr_module()
    final = chunk_path(store, index)
    if (final / "zarr.json").is_file():
        return False
    tmp = store / ".incomplete" / f"{chunk_name(index)}-{uuid.uuid4().hex}"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        n = parameters.shape[0]
        arrays = {"parameters": parameters, "ok": ok, **{f"obs/{k}": v for k, v in obs.items()}}
        for name, arr in arrays.items():
            out = group.create_array(
                name, shape=arr.shape, dtype=arr.dtype, chunks=arr.shape, compressors=None
            )
            out[...] = arr
        group.attrs["chunk"] = {
            "index": index,
            "start": start,
            "n": n,
            "failures": failures,
            "digest": chunk_digest(parameters, ok, obs),
            "timeouts": int(timeouts),
        }
        return publish_folder(tmp, final, "zarr.json")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
