"""Private: write and read ``arrays.npz`` without trusting a byte of the file.

The file is an ordinary NumPy ``.npz`` (a zip of ``.npy`` members, readable by
`numpy.load`), but it is read here member by member: every header is parsed
and checked against the size the zip directory declares for that member, and
the total against a byte budget, before any array memory is allocated. Object
dtypes are refused, so nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import math
import zipfile
from collections.abc import Mapping
from typing import IO, Any

import numpy as np

from .errors import ArtifactError

_SUFFIX = ".npy"
_MAX_HEADER = 10_000


def array_digest(arr: np.ndarray) -> str:
    """Return the sha256 of the array's bytes in C order (hex)."""
    return hashlib.sha256(np.ascontiguousarray(arr).data).hexdigest()


def manifest_entry(arr: np.ndarray) -> dict[str, Any]:
    """What metadata.json records about one array: dtype, shape and checksum."""
    return {"dtype": arr.dtype.str, "shape": list(arr.shape), "sha256": array_digest(arr)}


def write_npz(fh: IO[bytes], arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` as an uncompressed npz to the open binary file ``fh``."""
    with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arr in arrays.items():
            with zf.open(name + _SUFFIX, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, arr, allow_pickle=False)


def _read_header(fp: IO[bytes], where: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """Parse one npy header; return shape, Fortran order, dtype and header length."""
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(
                fp, max_header_size=_MAX_HEADER
            )
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(
                fp, max_header_size=_MAX_HEADER
            )
        else:
            raise ArtifactError(f"{where}: unsupported npy format version {version}")
    except ArtifactError:
        raise
    except (ValueError, TypeError, SyntaxError, EOFError, OSError, zipfile.BadZipFile) as err:
        raise ArtifactError(f"{where}: the array header is corrupt ({err})") from err
    if dtype.hasobject:
        raise ArtifactError(
            f"{where}: dtype {dtype} holds Python objects, which are never unpickled"
        )
    if any(s < 0 for s in shape):
        raise ArtifactError(f"{where}: the header declares a negative shape {shape}")
    return tuple(int(s) for s in shape), bool(fortran), dtype, fp.tell()


def read_npz(
    path: Any, file_label: str, manifest: Mapping[str, Mapping[str, Any]], max_bytes: int | None
) -> dict[str, np.ndarray]:
    """Read and verify every array of an npz file.

    Args:
        path: the npz file.
        file_label: how messages name the file.
        manifest: ``{name: {"dtype", "shape", "sha256"}}`` from metadata.json.
        max_bytes: the budget of decompressed bytes (``None``: no limit).

    Returns:
        The arrays, by name.

    Raises:
        ArtifactError: for anything that is not exactly what the manifest lists.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            return _read_members(zf, file_label, manifest, max_bytes)
    except ArtifactError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError) as err:
        raise ArtifactError(f"{file_label} is unreadable: not a valid npz file ({err})") from err


def _read_members(
    zf: zipfile.ZipFile,
    file_label: str,
    manifest: Mapping[str, Mapping[str, Any]],
    max_bytes: int | None,
) -> dict[str, np.ndarray]:
    infos = zf.infolist()
    names = [i.filename for i in infos]
    if len(set(names)) != len(names):
        raise ArtifactError(f"{file_label} is corrupt: it holds duplicate members")
    bad = [n for n in names if not n.endswith(_SUFFIX)]
    if bad:
        raise ArtifactError(f"{file_label} holds a member {bad[0]!r} that is not an .npy array")
    keys = {n[: -len(_SUFFIX)]: i for n, i in zip(names, infos, strict=True)}
    missing = sorted(set(manifest) - set(keys))
    if missing:
        raise ArtifactError(
            f"{file_label} is incomplete: array(s) {', '.join(map(repr, missing))} listed in "
            "metadata.json are missing"
        )
    extra = sorted(set(keys) - set(manifest))
    if extra:
        raise ArtifactError(
            f"{file_label} holds array(s) {', '.join(map(repr, extra))} that metadata.json "
            "does not list"
        )
    total = sum(i.file_size for i in infos)
    if max_bytes is not None and total > max_bytes:
        raise ArtifactError(
            f"{file_label} would decompress to {total} bytes, more than max_bytes={max_bytes}; "
            "pass a larger max_bytes to load_artifact if the artifact is trusted"
        )
    headers = {}
    for key, info in keys.items():
        where = f"{file_label}: array {key!r}"
        with zf.open(info) as fp:
            shape, fortran, dtype, offset = _read_header(fp, where)
        nbytes = math.prod(shape) * dtype.itemsize
        if offset + nbytes != info.file_size:
            raise ArtifactError(
                f"{where}: the header declares shape {shape} of {dtype} ({nbytes} bytes) but "
                f"the member holds {info.file_size - offset} bytes of data"
            )
        entry = manifest[key]
        if dtype.str != entry.get("dtype") or list(shape) != list(entry.get("shape", ())):
            raise ArtifactError(
                f"{where}: has dtype {dtype.str} and shape {list(shape)} but metadata.json "
                f"records dtype {entry.get('dtype')} and shape {entry.get('shape')}"
            )
        headers[key] = (info, shape, fortran, dtype, offset, nbytes)
    out = {}
    for key, (info, shape, fortran, dtype, offset, nbytes) in headers.items():
        where = f"{file_label}: array {key!r}"
        with zf.open(info) as fp:
            fp.read(offset)
            data = bytearray(fp.read(nbytes))
            if len(data) != nbytes or fp.read(1):  # the last read also checks the zip CRC
                raise ArtifactError(f"{where}: the data is truncated")
        flat = np.frombuffer(data, dtype=dtype)
        arr = flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)
        if array_digest(arr) != manifest[key].get("sha256"):
            raise ArtifactError(f"{where}: checksum mismatch, the data differs from what was saved")
        out[key] = arr
    return out
