"""A row-chunked on-disk store of NumPy arrays: plain ``.npy`` files and JSON, no pickle.

```
<store>/store.json              format, version, kind, n_rows, chunk_rows, the arrays'
                                dtypes and row shapes, attributes, extras, "complete"
<store>/.lock                   held (flock) by the process writing the store
<store>/extras/<name>.npy       whole-store arrays (e.g. the wavelength grid)
<store>/chunks/c00000012/       rows [12 * chunk_rows, ...): one <array>.npy each and
    chunk.json                  {"index", "start", "n", "digests", "digest"}: the sha256
                                of each array, and one over those (the chunk's digest)
<store>/.incomplete/            chunks being written (never read)
```

A chunk is written complete under ``.incomplete/`` and renamed into ``chunks/`` in
one ``os.rename``, so a reader or a resumed writer sees the whole chunk or nothing,
and workers writing different chunks never touch the same file. ``store.json`` is
replaced in one ``os.replace``. Reading trusts nothing: metadata is read with
`orrery.interface.read_json`'s limits, every data file must be a regular file in the
store whose ``.npy`` header (never an object dtype) and size match what the store
records, and each chunk's bytes are hashed against its digest before any row is
used. Every failure is an `ArtifactError` naming the file.

Large arrays are memory-mapped, not copied (`_mapped`): the rows handed out share
the system's page cache. So a store's files must not be modified or truncated in
place while a process holds rows of them (the store itself never does: it writes
new files and renames them into place); a file changed in place is hashed again,
and refused, at its next read, since its identity (size, inode, mtime) changed.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import math
import mmap
import os
import shutil
import stat
import sys
import threading
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from orrery.interface import (
    ArtifactError,
    ConfigError,
    publish_folder,
    read_json_inside,
    resolve_inside,
)

FORMAT = "orrery.lux.store"
VERSION = 1
LOCK = ".lock"
_OWN = {"store.json", "chunks", "extras", ".incomplete", LOCK}
_MAX_JSON = 16 * 2**20
# dtypes a store holds: bool, ints, floats, fixed-width text (never object)
_KINDS = "biufUS"
#: arrays of at least this many bytes are memory-mapped, not read (`_mapped`)
_MAP_MIN = 2**20
_MAP_FLAGS: int | None = (
    mmap.MAP_PRIVATE | getattr(mmap, "MAP_POPULATE", 0) if hasattr(mmap, "MAP_PRIVATE") else None
)
_MAP_FAILED = ctypes.c_void_p(-1).value


def _libc() -> ctypes.CDLL | None:
    """The C library's ``mmap`` and ``munmap`` (POSIX), or None."""
    if _MAP_FLAGS is None:
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int64,
        ]
        libc.munmap.restype = ctypes.c_int
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


def chunk_name(index: int) -> str:
    return f"c{index:08d}"


#: what this process has verified: (store, index, array, digest) -> the identity of its
#: file; (store, index, digest) -> the identities of a whole-chunk-digest chunk's files
_VERIFIED: dict[tuple[Any, ...], Any] = {}
_VERIFIED_LOCK = threading.Lock()


def _digest(arrays: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{arr.dtype.str}:{arr.shape}".encode())
        h.update(arr.reshape(-1).view(np.uint8).data)  # the bytes in place (tobytes copies them)
    return h.hexdigest()


def _combined(digests: Mapping[str, str]) -> str:
    """A chunk's digest from its arrays' digests."""
    return hashlib.sha256(
        "".join(f"{k}={digests[k]};" for k in sorted(digests)).encode()
    ).hexdigest()


def _write_json(file: Path, value: Any) -> None:
    tmp = file.with_name(f".{file.name}.{uuid.uuid4().hex}")
    _dump_json(tmp, value, sync=True)
    os.replace(tmp, file)


def _dump_json(file: Path, value: Any, sync: bool) -> None:
    with open(file, "w") as fh:
        json.dump(value, fh, indent=1)
        fh.flush()
        if sync:
            os.fsync(fh.fileno())


def _sync_files(files: list[Path]) -> None:
    """``fsync`` each of ``files``, all at once on threads: the file system commits
    concurrent syncs together (one after another, a chunk's seven small files cost
    seven journal commits, a good part of a worker's time per chunk)."""
    fds = []
    try:
        for file in files:
            fds.append(os.open(file, os.O_RDWR))  # Windows syncs only writable ones
        with ThreadPoolExecutor(len(fds), thread_name_prefix="orrery-fsync") as pool:
            list(pool.map(os.fsync, fds))
    finally:
        for fd in fds:
            os.close(fd)


def _inside(path: Path, root: Path, what: str) -> str:
    return resolve_inside(path, root, what)


def _json(file: Path, root: Path, what: str) -> Any:
    return read_json_inside(file, root, what, max_bytes=_MAX_JSON)


def read_npy(file: Path, root: Path, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """A ``.npy`` file of exactly ``dtype`` and ``shape`` (``ArtifactError`` otherwise)."""
    return _read_npy(file, root, dtype, shape)[0]


def aligned_bytes(nbytes: int) -> np.ndarray:
    """``nbytes`` uninitialised bytes starting 64-byte aligned (JAX on the CPU shares them)."""
    buf = np.empty(nbytes + 64, np.uint8)
    start = (-buf.ctypes.data) % 64
    return buf[start : start + nbytes]


class _Mapping:
    """``length`` bytes of a file mapped read-only (``mmap(2)`` through ctypes), unmapped
    when the last array made from it is gone. Unlike `mmap.mmap`, which keeps a copy of
    the file descriptor open for as long as the mapping lives, it holds no descriptor:
    a fit keeping thousands of mapped chunks must not run out of them."""

    def __init__(self, fd: int, length: int) -> None:
        assert _LIBC is not None and _MAP_FLAGS is not None
        addr = _LIBC.mmap(None, length, mmap.PROT_READ, _MAP_FLAGS, fd, 0)
        if addr is None or addr == _MAP_FAILED:
            raise OSError(ctypes.get_errno(), "mmap failed")
        self.addr, self.length = addr, length
        self.__array_interface__ = {
            "data": (addr, True),
            "shape": (length,),
            "typestr": "|u1",
            "version": 3,
        }

    def __del__(self) -> None:
        if _LIBC is not None:
            _LIBC.munmap(self.addr, self.length)


def _mapped(fd: int, offset: int, nbytes: int) -> np.ndarray | None:
    """The ``nbytes`` data bytes at ``offset`` of the file ``fd``, mapped read-only, or None.

    Large arrays are mapped rather than read (`_MAP_FLAGS`: private, read-only, and
    on Linux populated at once from the page cache): a ``read`` copies every byte
    out of the page cache into fresh memory that must first be faulted in (zeroed),
    where a mapping shares the cached pages. The bytes start 64-byte aligned when
    the ``.npy`` header is (as NumPy writes it), so JAX on the CPU shares them too.
    None (read instead) for small or unaligned arrays, or where the system cannot
    map the file.
    """
    if _LIBC is None or nbytes < _MAP_MIN or offset % 64:
        return None
    try:
        whole = np.asarray(_Mapping(fd, offset + nbytes))
    except OSError:
        return None
    return whole[offset:]


def _read_npy(
    file: Path, root: Path, dtype: str, shape: tuple[int, ...]
) -> tuple[np.ndarray, tuple[int, ...]]:
    """`read_npy`, and the identity ``(device, inode, size, mtime_ns)`` of the file read."""
    real = _inside(file, root, "a data file")
    try:
        with open(real, "rb", buffering=0) as fh:
            info = os.fstat(fh.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise ArtifactError(f"store: {str(file)!r} is not a regular file")
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                found, fortran, found_dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                found, fortran, found_dtype = np.lib.format.read_array_header_2_0(fh)
            offset = fh.tell()
            want = np.dtype(dtype)
            if found_dtype != want or tuple(found) != tuple(shape) or fortran:
                raise ArtifactError(
                    f"store: {str(file)!r} holds {found_dtype} {tuple(found)}, the store "
                    f"records {want} {tuple(shape)}"
                )
            nbytes = want.itemsize * math.prod(shape)
            if info.st_size != offset + nbytes:
                raise ArtifactError(
                    f"store: {str(file)!r} has {info.st_size - offset} data bytes, expected "
                    f"{nbytes} for {want} {tuple(shape)} (truncated or damaged)"
                )
            data = _mapped(fh.fileno(), offset, nbytes)
            if data is None:
                data = aligned_bytes(nbytes)
                view, done = data.data, 0
                while done < nbytes:
                    got = fh.readinto(view[done:])
                    if not got:
                        raise ArtifactError(f"store: {str(file)!r} was truncated while read")
                    done += got
    except ArtifactError:
        raise
    except (OSError, ValueError) as err:
        raise ArtifactError(f"store: cannot read {str(file)!r}: {err!r}") from err
    data.flags.writeable = False
    identity = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
    return data.view(want).reshape(shape), identity


def _save_npy(file: Path, arr: np.ndarray, sync: bool = True) -> None:
    with open(file, "wb") as fh:
        np.lib.format.write_array(fh, np.ascontiguousarray(arr), allow_pickle=False)
        fh.flush()
        if sync:
            os.fsync(fh.fileno())


def check_dtype(dtype: Any, what: str) -> str:
    dt = np.dtype(dtype)
    if dt.kind not in _KINDS or dt.hasobject:
        raise ConfigError(f"{what}: dtype {dt} cannot be stored (bool, int, float or text only)")
    return dt.newbyteorder("<").str if dt.kind in "iuf" else dt.str


class ChunkStore:
    """A store directory and its recorded layout (see the module docstring)."""

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path = path
        self.meta = meta

    # ------------------------------------------------------------ recognising, creating
    @staticmethod
    def kind_of(path: Path) -> str:
        """``"missing"``, ``"empty"``, ``"store"`` (an orrery.lux store) or ``"other"``."""
        if not os.path.lexists(path):
            return "missing"
        if path.is_symlink() or not path.is_dir():
            return "other"
        if not {p.name for p in path.iterdir()} - {LOCK, ".incomplete"}:
            return "empty"
        try:
            ChunkStore.open(path)
        except ArtifactError:
            return "other"
        return "store"

    @classmethod
    def open(cls, path: str | os.PathLike[str], kind: str | None = None) -> ChunkStore:
        root = Path(path).expanduser().absolute()
        if not (root / "store.json").exists():
            raise ArtifactError(f"store: {str(root)!r} is not an orrery.lux store (no store.json)")
        meta = _json(root / "store.json", root, "store.json")
        try:
            ok = (
                meta["format"] == FORMAT
                and meta["version"] == VERSION
                and isinstance(meta["n_rows"], int)
                and isinstance(meta["chunk_rows"], int)
                and meta["n_rows"] >= 0
                and meta["chunk_rows"] >= 1
                and isinstance(meta["arrays"], dict)
                and all(
                    np.dtype(a["dtype"]).kind in _KINDS and all(int(s) >= 0 for s in a["shape"])
                    for a in meta["arrays"].values()
                )
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ArtifactError(f"store: {str(root)!r}: malformed store.json ({err!r})") from err
        if not ok:
            raise ArtifactError(
                f"store: {str(root)!r}: store.json is not format {FORMAT!r} version {VERSION} "
                "or records an impossible layout"
            )
        if kind is not None and meta.get("kind") != kind:
            raise ArtifactError(
                f"store: {str(root)!r} holds {meta.get('kind')!r}, expected a {kind!r} store"
            )
        return cls(root, meta)

    @classmethod
    def create_or_resume(
        cls,
        path: Path,
        kind: str,
        n_rows: int,
        chunk_rows: int,
        arrays: dict[str, Any],
        attrs: dict[str, Any],
    ) -> ChunkStore:
        """Create the store, or resume one made with exactly this layout (``ConfigError``)."""
        found = cls.kind_of(path)
        if found == "other":
            raise ConfigError(
                f"store: {str(path)!r} exists and is not an empty folder or an orrery.lux store; "
                "nothing is deleted or overwritten that this package did not create: give a "
                "new path"
            )
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "kind": kind,
            "n_rows": int(n_rows),
            "chunk_rows": int(chunk_rows),
            "arrays": arrays,
            "attrs": attrs,
            "extras": {},
            "complete": False,
        }
        if found == "store":
            store = cls.open(path)
            for key in ("kind", "n_rows", "chunk_rows", "arrays", "attrs"):
                if store.meta.get(key) != json.loads(json.dumps(meta[key])):
                    raise ConfigError(
                        f"store: {str(path)!r} was made with another {key} "
                        f"({store.meta.get(key)!r}, now {meta[key]!r}): give a new path to "
                        "write a different store, or the same arguments to resume it"
                    )
            return store
        path.mkdir(parents=True, exist_ok=True)
        (path / "chunks").mkdir(exist_ok=True)
        _write_json(path / "store.json", meta)
        return cls(path, meta)

    # ------------------------------------------------------------ layout
    @property
    def n_rows(self) -> int:
        return int(self.meta["n_rows"])

    @property
    def chunk_rows(self) -> int:
        return int(self.meta["chunk_rows"])

    @property
    def n_chunks(self) -> int:
        return math.ceil(self.n_rows / self.chunk_rows)

    def rows_of(self, index: int) -> tuple[int, int]:
        start = index * self.chunk_rows
        return start, min(start + self.chunk_rows, self.n_rows)

    def finished(self) -> set[int]:
        folder = self.path / "chunks"
        if not folder.is_dir():
            return set()
        out = set()
        for p in folder.iterdir():
            if p.name.startswith("c") and p.name[1:].isdigit() and (p / "chunk.json").is_file():
                out.add(int(p.name[1:]))
        return out

    # ------------------------------------------------------------ writing
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """The exclusive write lock (``ConfigError`` at once when another process holds it)."""
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0))
        try:
            if sys.platform != "win32":
                import fcntl

                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as err:
                    if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                        raise
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                    raise ConfigError(
                        f"store: {str(self.path)!r} is being written by another process "
                        f"({holder}); wait for it or use another path"
                    ) from err
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            shutil.rmtree(self.path / ".incomplete", ignore_errors=True)  # ours, under the lock
            yield
        finally:
            os.close(fd)

    def write_chunk(self, index: int, arrays: Mapping[str, np.ndarray]) -> bool:
        """Write chunk ``index`` atomically; ``False`` when it already exists."""
        final = self.path / "chunks" / chunk_name(index)
        if (final / "chunk.json").is_file():
            return False
        start, stop = self.rows_of(index)
        clean = {}
        for name, spec in self.meta["arrays"].items():
            arr = np.ascontiguousarray(arrays[name], dtype=np.dtype(spec["dtype"]))
            if arr.shape != (stop - start, *spec["shape"]):
                raise ArtifactError(
                    f"store: chunk {index} array {name!r} has shape {arr.shape}, expected "
                    f"{(stop - start, *spec['shape'])}"
                )
            clean[name] = arr
        tmp = self.path / ".incomplete" / f"{chunk_name(index)}-{uuid.uuid4().hex}"
        tmp.mkdir(parents=True)
        try:
            for name, arr in clean.items():
                _save_npy(tmp / f"{name}.npy", arr, sync=False)
            digests = {name: _digest({name: arr}) for name, arr in clean.items()}
            info = {
                "index": index,
                "start": start,
                "n": stop - start,
                "digests": digests,
                "digest": _combined(digests),
            }
            _dump_json(tmp / "chunk.json", info, sync=False)
            # every file on disk before the rename makes the chunk visible
            _sync_files([tmp / f"{name}.npy" for name in clean] + [tmp / "chunk.json"])
            return publish_folder(tmp, final, "chunk.json")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def write_extra(self, name: str, arr: np.ndarray) -> None:
        arr = np.ascontiguousarray(arr)
        dtype = check_dtype(arr.dtype, name)
        folder = self.path / "extras"
        folder.mkdir(exist_ok=True)
        tmp = folder / f".{name}.{uuid.uuid4().hex}.npy"
        _save_npy(tmp, arr)
        os.replace(tmp, folder / f"{name}.npy")
        entry = {"dtype": dtype, "shape": list(arr.shape), "digest": _digest({name: arr})}
        self.update(extras={**self.meta["extras"], name: entry})

    def update(self, **values: Any) -> None:
        self.meta = {**self.meta, **values}
        _write_json(self.path / "store.json", self.meta)

    def finalize(self) -> None:
        """Record the store complete once every chunk is there (``ArtifactError`` otherwise)."""
        missing = sorted(set(range(self.n_chunks)) - self.finished())
        if missing:
            raise ArtifactError(f"store: {str(self.path)!r}: chunks {missing[:10]} are missing")
        digests = [self._chunk_info(i)["digest"] for i in range(self.n_chunks)]
        whole = hashlib.sha256("".join(digests).encode()).hexdigest()
        if self.meta.get("complete") and self.meta.get("fingerprint") != whole:
            raise ArtifactError(f"store: {str(self.path)!r}: its chunks changed since it finished")
        self.update(complete=True, fingerprint=whole)

    # ------------------------------------------------------------ reading
    def _chunk_info(self, index: int) -> dict[str, Any]:
        folder = self.path / "chunks" / chunk_name(index)
        what = f"chunk {index}"
        if not (folder / "chunk.json").exists():
            raise ArtifactError(f"store: {what} of {str(self.path)!r} is missing")
        info = _json(folder / "chunk.json", self.path, f"{what} chunk.json")
        start, stop = self.rows_of(index)
        try:
            found = (info["index"], info["start"], info["n"])
            ok = isinstance(info["digest"], str)
            per = info.get("digests")
            if per is not None:
                ok = ok and (
                    isinstance(per, dict)
                    and set(per) == set(self.meta["arrays"])
                    and all(isinstance(v, str) for v in per.values())
                    and _combined(per) == info["digest"]
                )
        except (KeyError, TypeError, AttributeError) as err:
            raise ArtifactError(f"store: {what} has a malformed chunk.json ({err!r})") from err
        if found != (index, start, stop - start) or not ok:
            raise ArtifactError(
                f"store: {what} records (index, start, n) = {found}, the store expects "
                f"{(index, start, stop - start)} (moved or edited?)"
            )
        return info

    def read_chunk(self, index: int, names: list[str] | None = None) -> dict[str, np.ndarray]:
        """Chunk ``index``'s arrays (``names``, default all), checked against their digests.

        Each file is hashed the first time this process reads it, and again only
        when its identity changed (see the module docstring).

        Raises:
            ArtifactError: a missing, truncated, edited or damaged chunk (naming it).
        """
        if not 0 <= index < self.n_chunks:
            raise ArtifactError(f"store: chunk {index} is outside 0..{self.n_chunks - 1}")
        info = self._chunk_info(index)
        wanted = list(self.meta["arrays"]) if names is None else list(names)
        per = info.get("digests")
        if per is None:
            return self._read_whole(index, info, wanted)
        arrays, identity = self._read_arrays(index, int(info["n"]), wanted)
        for name, arr in arrays.items():
            key = (str(self.path), index, name, per[name])
            with _VERIFIED_LOCK:
                known = _VERIFIED.get(key)
            if known != identity[name]:
                if _digest({name: arr}) != per[name]:
                    raise self._damaged(index, name)
                with _VERIFIED_LOCK:
                    _VERIFIED[key] = identity[name]
        return arrays

    def _damaged(self, index: int, name: str | None = None) -> ArtifactError:
        where = self.path / "chunks" / chunk_name(index)
        if name is not None:
            where = where / f"{name}.npy"
        return ArtifactError(
            f"store: chunk {index} ({str(where)!r}) does not match the digest recorded when "
            "it was written: it was edited or damaged"
        )

    def _read_whole(
        self, index: int, info: dict[str, Any], wanted: list[str]
    ) -> dict[str, np.ndarray]:
        """A chunk with one digest over all its arrays: verified whole, once per process."""
        key = (str(self.path), index, str(info["digest"]))
        with _VERIFIED_LOCK:
            known = _VERIFIED.get(key)
        if known is not None:
            arrays, identity = self._read_arrays(index, int(info["n"]), wanted)
            if all(known.get(name) == identity[name] for name in wanted):
                return arrays
        arrays, identity = self._read_arrays(index, int(info["n"]), list(self.meta["arrays"]))
        if _digest(arrays) != info["digest"]:
            raise self._damaged(index)
        with _VERIFIED_LOCK:
            _VERIFIED[key] = identity
        return {k: arrays[k] for k in wanted}

    def _read_arrays(
        self, index: int, n: int, names: list[str]
    ) -> tuple[dict[str, np.ndarray], dict[str, tuple[int, ...]]]:
        folder = self.path / "chunks" / chunk_name(index)
        arrays, identity = {}, {}
        for name in names:
            spec = self.meta["arrays"][name]
            shape = (n, *spec["shape"])
            arrays[name], identity[name] = _read_npy(
                folder / f"{name}.npy", self.path, spec["dtype"], shape
            )
        return arrays, identity

    def read_extra(self, name: str) -> np.ndarray | None:
        entry = self.meta["extras"].get(name)
        if entry is None:
            return None
        try:
            dtype, shape, digest = entry["dtype"], tuple(entry["shape"]), entry["digest"]
        except (KeyError, TypeError) as err:
            raise ArtifactError(f"store: extra {name!r} is malformed ({err!r})") from err
        arr = read_npy(self.path / "extras" / f"{name}.npy", self.path, dtype, shape)
        if _digest({name: arr}) != digest:
            raise ArtifactError(f"store: {name}.npy does not match its recorded digest (edited?)")
        return arr

    def read_rows(self, start: int, stop: int, names: list[str]) -> dict[str, np.ndarray]:
        """Rows ``start:stop`` of ``names`` across chunks (each chunk verified)."""
        if not 0 <= start <= stop <= self.n_rows:
            raise ArtifactError(
                f"start, stop: expected 0 <= start <= stop <= {self.n_rows}, got {start}, {stop}"
            )
        parts: dict[str, list[np.ndarray]] = {k: [] for k in names}
        index = start // self.chunk_rows
        while start < stop:
            lo, hi = self.rows_of(index)
            got = self.read_chunk(index, names)
            for k in names:
                parts[k].append(got[k][start - lo : min(stop, hi) - lo])
            start, index = min(stop, hi), index + 1
        out = {}
        for name in names:
            spec = self.meta["arrays"][name]
            if parts[name]:
                out[name] = np.concatenate(parts[name]) if len(parts[name]) > 1 else parts[name][0]
            else:
                out[name] = np.empty((0, *spec["shape"]), np.dtype(spec["dtype"]))
        return out


__all__ = ["ChunkStore", "aligned_bytes", "check_dtype", "chunk_name", "read_npy"]
