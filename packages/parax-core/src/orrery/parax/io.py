"""`save` / `load` for pytrees of parax modules, parameters, arrays, lists and dicts.

The format is an `orrery.interface` artifact (``kind="parax.tree"``): a JSON description
of the tree (class references, static fields, distreqx objects by their fields) plus
an ``.npz`` of arrays. Nothing is pickled and nothing is imported while loading: class and
function references are looked up, as strings, in an allow-list fixed in code (the
classes of `orrery.parax` and distreqx, public numeric functions of ``jax.numpy``,
``numpy``, ``math``, ``operator``, ``jax.nn``, ``jax.scipy.special``, ``jax.lax``) plus
what the user registers with `orrery.parax.register_loadable`. Anything else raises
`ArtifactError` naming it, before it is resolved.
"""

from __future__ import annotations

import io as _io
import os
import tempfile
import zipfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, BinaryIO

import jax
import numpy as np
from jaxtyping import PyTree

from orrery.interface import ArtifactError, ValueDomainError, load_artifact, save_artifact

from ._codec import Decoder, Encoder
from .parameter import check_in_bounds
from .tree import is_parameter

__all__ = ["load", "save"]

KIND = "parax.tree"


def _producer() -> dict[str, str]:
    try:
        v = version("parax-core")
    except PackageNotFoundError:  # pragma: no cover - source tree that is not installed
        v = "0.0.0"
    return {"distribution": "parax-core", "version": v}


def save(target: str | os.PathLike | BinaryIO, tree: PyTree) -> None:
    """Save a pytree of parax modules, parameters, arrays, lists and dicts.

    Args:
        target: a directory path (written atomically) or a writable binary file object
            (receives a zip of the artifact directory).
        tree: the pytree to save.

    Raises:
        ArtifactError: naming the first object that cannot be stored without pickling.
    """
    enc = Encoder(inline=False)
    config = {"tree": enc.enc(tree, "tree")}
    if isinstance(target, (str, os.PathLike)):
        save_artifact(target, kind=KIND, config=config, arrays=enc.arrays, producer=_producer())
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tree"
        save_artifact(path, kind=KIND, config=config, arrays=enc.arrays, producer=_producer())
        buf = _io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for p in sorted(path.iterdir()):
                zf.write(p, p.name)
        target.write(buf.getvalue())


def load(source: str | os.PathLike | BinaryIO) -> PyTree:
    """Load a pytree written by `save` (exact round trip).

    Nothing is imported while loading: every class and function reference must be on the
    allow-list (see `orrery.parax.register_loadable`), and every entry and array is
    checked before anything is built.

    Args:
        source: the artifact directory, or a readable binary file object holding the zip
            written by `save`.

    Returns:
        The pytree.

    Raises:
        ArtifactError: the artifact is not a parax tree, is incomplete or tampered with,
            names a class or function that is not on the allow-list, or holds a parameter
            outside its bounds.

    Example:
        >>> import tempfile, pathlib
        >>> from orrery.parax import Parameter, save
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "p"
        >>> save(path, {"k": Parameter(2.0, name="k")})
        >>> float(load(path)["k"].value)
        2.0
    """
    if isinstance(source, (str, os.PathLike)):
        art = load_artifact(source, kind=KIND)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                with zipfile.ZipFile(_io.BytesIO(source.read())) as zf:
                    names = zf.namelist()
                    if any("/" in n or n.startswith(".") for n in names):
                        raise ArtifactError("source: unexpected entries in the archive")
                    zf.extractall(tmp)
            except zipfile.BadZipFile as e:
                raise ArtifactError(f"source: not a parax archive ({e})") from None
            return _decode(load_artifact(tmp, kind=KIND))
    return _decode(art)


def _decode(art: Any) -> Any:
    where = str(getattr(art, "path", None) or "artifact")
    if hasattr(art, "config_value"):
        root = art.config_value("tree", (dict, list, str, int, float, bool, None))
    elif not isinstance(art.config, dict) or "tree" not in art.config:  # pragma: no cover
        raise ArtifactError(f"{where}: metadata.json config lacks 'tree'")
    else:  # pragma: no cover - older orrery-interface
        root = art.config["tree"]

    def get_array(key: str, kind: str, shape: tuple[int, ...]) -> np.ndarray:
        if hasattr(art, "array"):
            return art.array(key, kind=kind, shape=shape)
        if key not in art.arrays:  # pragma: no cover - older orrery-interface
            raise ArtifactError(f"{where}: array {key!r} missing from arrays.npz")
        arr = art.arrays[key]
        if arr.dtype.kind not in kind or arr.shape != shape:  # pragma: no cover
            raise ArtifactError(
                f"{where}: array {key!r} has dtype {arr.dtype} and shape {arr.shape}, "
                f"expected kind {kind!r} and shape {shape}"
            )
        return arr

    tree = Decoder(get_array).dec(root, "tree")
    _check_parameters(tree, where)
    return tree


def _check_parameters(tree: Any, where: str) -> None:
    """Every loaded parameter must hold a finite value inside its bounds."""
    params = [x for x in jax.tree_util.tree_leaves(tree, is_leaf=is_parameter) if is_parameter(x)]
    for p in params:
        if p.latent_value is None:
            continue
        try:
            check_in_bounds(p.value, p.metadata)
        except ValueDomainError as err:
            raise ArtifactError(f"{where}: a saved parameter is invalid: {err}") from None
