"""On-disk layout of a simulation campaign (a Zarr v3 hierarchy).

```
<store>/zarr.json                 root group; attribute "orrery_campaign" = campaign config
<store>/chunks/zarr.json          group of finished chunks
<store>/chunks/c00000012/         one finished chunk: a Zarr group with
    parameters   (n, d) float64   the chunk's parameters (every row, failed ones too)
    ok           (n,) bool        rows whose simulation succeeded with finite values
    obs/<block>  (n, k)           simulator output (NaN in failed rows)
    attributes "chunk": index, start, n, failures [{row, parameters, error}], digest
<store>/.incomplete/              chunks being written (never read)
```

A chunk is written as a complete Zarr group under ``.incomplete/`` and then renamed
into ``chunks/`` in one ``os.rename``: a reader (or a resumed campaign) sees either
the whole chunk or nothing, and workers writing different chunks never touch the
same file. The store needs a POSIX file system shared by the driver and the workers.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from orrery.interface import ArtifactError, ConfigError, require

STORE_FORMAT = "orrery.sbi.campaign"
STORE_VERSION = 1
ATTR = "orrery_campaign"
# Zarr v3 data types read without Zarr from a plain (uncompressed, one-chunk) array.
_PLAIN_DTYPES = {
    "bool": "|b1",
    "int8": "|i1",
    "uint8": "|u1",
    **{f"{k}{b}": f"<{k[0]}{b // 8}" for k in ("int", "uint", "float") for b in (16, 32, 64)},
}


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


def create_or_check(store: Path, config: dict[str, Any]) -> None:
    """Create the store with ``config``, or check an existing one was made with it."""
    zarr = zarr_module()
    if (store / "zarr.json").exists():
        found = read_config(store)
        for key, value in config.items():
            if found.get(key) != value:
                raise ConfigError(
                    f"store {str(store)!r} was created with {key}={found.get(key)!r}, this "
                    f"campaign has {key}={value!r}: use a new store path or the same arguments"
                )
        return
    store.mkdir(parents=True, exist_ok=True)
    root = zarr.open_group(str(store), mode="w", zarr_format=3)
    root.attrs[ATTR] = {"format": STORE_FORMAT, "version": STORE_VERSION, **config}
    zarr.open_group(str(store / "chunks"), mode="w", zarr_format=3)


def read_config(store: Path) -> dict[str, Any]:
    """The campaign attributes of a store (``ArtifactError`` when it is not one)."""
    meta = store / "zarr.json"
    if not meta.is_file():
        raise ArtifactError(f"store: {str(store)!r} is not a simulation store (no zarr.json)")
    try:
        attrs = json.loads(meta.read_text())["attributes"][ATTR]
    except (KeyError, ValueError, TypeError) as err:
        raise ArtifactError(
            f"store: {str(store)!r} is a Zarr group but not a simulation store ({err!r})"
        ) from err
    if attrs.get("format") != STORE_FORMAT or attrs.get("version") != STORE_VERSION:
        raise ArtifactError(
            f"store: {str(store)!r} has format {attrs.get('format')!r} version "
            f"{attrs.get('version')!r}, expected {STORE_FORMAT!r} version {STORE_VERSION}"
        )
    return attrs


def update_config(store: Path, values: dict[str, Any]) -> None:
    zarr = zarr_module()
    root = zarr.open_group(str(store), mode="r+", zarr_format=3)
    root.attrs[ATTR] = {**read_config(store), **values}


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
    shutil.rmtree(store / ".incomplete", ignore_errors=True)


def chunk_digest(parameters: np.ndarray, ok: np.ndarray, obs: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for label, arr in [("parameters", parameters), ("ok", ok), *sorted(obs.items())]:
        digest.update(f"{label}:{arr.dtype.str}:{arr.shape}".encode())
        digest.update(np.ascontiguousarray(arr).tobytes())
    return digest.hexdigest()


def write_chunk(
    store: Path,
    index: int,
    start: int,
    parameters: np.ndarray,
    ok: np.ndarray,
    obs: dict[str, np.ndarray],
    failures: list[dict[str, Any]],
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
        }
        try:
            os.rename(tmp, final)
        except OSError:
            if (final / "zarr.json").is_file():  # another writer finished it first
                return False
            raise
        return True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class ChunkReader:
    """Read the arrays and attributes of finished chunks."""

    def __init__(self, store: Path) -> None:
        self.store = store
        self._zarr = zarr_module()
        self._plain: dict[tuple[int, str], tuple[str, np.dtype, tuple[int, ...]] | None] = {}

    def attrs(self, index: int) -> dict[str, Any]:
        meta = json.loads((chunk_path(self.store, index) / "zarr.json").read_text())
        return meta["attributes"]["chunk"]

    def array(self, index: int, name: str) -> np.ndarray:
        group = self._zarr.open_group(str(chunk_path(self.store, index)), mode="r")
        return np.asarray(group[name][...])

    def plain(self, index: int, name: str) -> tuple[str, np.dtype, tuple[int, ...]] | None:
        """``(file, dtype, shape)`` of a plain chunk array, ``None`` for any other layout.

        Plain: one Zarr chunk holding the whole array, encoded by the ``bytes`` codec
        alone (little-endian or one-byte values), as ``write_chunk`` writes it; such a
        file is read directly, without Zarr. The file's size is checked against the
        shape, so a truncated chunk is an error. Remembered per chunk and array.
        """
        key = (index, name)
        if key not in self._plain:
            self._plain[key] = self._find_plain(index, name)
        return self._plain[key]

    def _find_plain(self, index: int, name: str) -> tuple[str, np.dtype, tuple[int, ...]] | None:
        folder = chunk_path(self.store, index) / name
        try:
            meta = json.loads((folder / "zarr.json").read_text())
        except (OSError, ValueError) as err:
            raise ArtifactError(f"store: cannot read array {str(folder)!r} ({err!r})") from err
        shape = tuple(meta.get("shape", ()))
        codecs = meta.get("codecs", [])
        grid = meta.get("chunk_grid", {})
        keys = meta.get("chunk_key_encoding", {})
        plain = (
            len(codecs) == 1
            and codecs[0].get("name") == "bytes"
            and codecs[0].get("configuration", {}).get("endian", "little") == "little"
            and grid.get("name") == "regular"
            and tuple(grid.get("configuration", {}).get("chunk_shape", ())) == shape
            and keys.get("name") == "default"
            and keys.get("configuration", {}).get("separator", "/") == "/"
            and not meta.get("storage_transformers")
            and meta.get("data_type") in _PLAIN_DTYPES
            and len(shape) >= 1
        )
        file = folder.joinpath("c", *["0"] * len(shape))
        if not plain or not file.is_file() or 0 in shape:
            return None
        dtype = np.dtype(_PLAIN_DTYPES[meta["data_type"]])
        if file.stat().st_size != dtype.itemsize * int(np.prod(shape)):
            raise ArtifactError(
                f"store: chunk file {str(file)!r} has {file.stat().st_size} bytes, expected "
                f"{dtype.itemsize * int(np.prod(shape))} for shape {shape} {dtype}"
            )
        return str(file), dtype, shape

    def row_range(
        self, index: int, name: str, start: int, stop: int, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Rows ``[start, stop)`` of one chunk array (one ``pread`` for a plain array).

        ``out``: a C-contiguous buffer of the array's dtype to read into (plain
        arrays only; see `plain`), else a new array is returned.
        """
        layout = self.plain(index, name)
        if layout is None:  # through Zarr, which reads the whole chunk
            group = self._zarr.open_group(str(chunk_path(self.store, index)), mode="r")
            return np.asarray(group[name][start:stop])
        file, dtype, shape = layout
        row = dtype.itemsize * int(np.prod(shape[1:]))
        if out is None:
            out = np.empty((stop - start, *shape[1:]), dtype)
        fd = os.open(file, os.O_RDONLY)
        try:
            got = os.preadv(fd, [memoryview(out).cast("B")], start * row)
        finally:
            os.close(fd)
        if got != out.nbytes:
            raise ArtifactError(f"store: short read of {file!r} (rows {start}:{stop})")
        return out

    def blocks(self, index: int) -> dict[str, tuple[int, str]]:
        group = self._zarr.open_group(str(chunk_path(self.store, index)), mode="r")
        if "obs" not in group:
            return {}
        obs = group["obs"]
        return {name: (int(arr.shape[1]), str(arr.dtype)) for name, arr in obs.arrays()}
