"""Saving and loading posterior estimators as ``orrery.interface`` artifacts.

An estimator is written as one artifact directory: its JSON-safe metadata
(constructor configuration, dataset manifest and fingerprint, preprocessing,
``task_metadata``, schema and package versions) in ``metadata.json`` and its
model weights, serialised with `equinox.tree_serialise_leaves`, as a
byte array in ``arrays.npz``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from orrery.interface import (
    ArtifactError,
    NotFittedError,
    OrreryError,
    load_artifact,
    save_artifact,
)

from ._precision import float32_scope
from ._version import __version__

__all__ = ["POSTERIOR_SCHEMA_VERSION", "PersistentPosteriorEstimator"]

#: Version of the layout of a saved posterior's metadata and weights.
POSTERIOR_SCHEMA_VERSION = 1
ARTIFACT_KIND = "orrery.sbi.PosteriorEstimator"
BACKEND_STATE_FILE = "backend_state.eqx"
_REGISTRY: dict[str, type[PersistentPosteriorEstimator]] = {}
#: Upper bound of the ``.npy`` header that ``equinox.tree_serialise_leaves`` writes per array.
_NPY_HEADER_BYTES = 256


def _package_version() -> str:
    return __version__


class PersistentPosteriorEstimator:
    """Base class of posterior estimators that can be saved and loaded.

    Subclasses implement `_build_estimator_config`,
    `from_serialized_metadata`, `hydrate_loaded_metadata` and the
    byte-level model state (`_backend_state_bytes`,
    `_load_backend_state_bytes`); this class turns them into
    `save` / `load` and the directory-level
    `save_backend_state` / `load_backend_state`.
    """

    estimator_family: ClassVar[str] = "posterior"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls

    # -- to implement -----------------------------------------------------------------
    @classmethod
    def checked_artifact_metadata(cls, artifact: Any) -> dict[str, Any]:
        """The artifact's config after checking every entry the estimator needs."""
        raise NotImplementedError

    def _restore_metadata(self, metadata: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def _expected_state_bytes(self) -> tuple[int, int]:
        raise NotImplementedError

    def _build_estimator_config(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_serialized_metadata(cls, metadata: Mapping[str, Any]) -> PersistentPosteriorEstimator:
        raise NotImplementedError

    def hydrate_loaded_metadata(self, metadata: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def _backend_state_bytes(self) -> bytes:
        raise NotImplementedError

    def _load_backend_state_bytes(self, data: bytes) -> None:
        raise NotImplementedError

    def _build_model_skeleton(self) -> None:
        """Build the model (initial weights) that `_load_backend_state_bytes` fills."""
        raise NotImplementedError

    def _fitted_metadata(self) -> dict[str, Any]:
        """The fitted state saved beside the configuration (none by default)."""
        return {}

    # -- provided ---------------------------------------------------------------------
    def _build_serialized_metadata(
        self, artifact_metadata: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Everything needed to rebuild the estimator, without its weights."""
        fitted = self._fitted_metadata()
        return {
            "posterior_schema_version": POSTERIOR_SCHEMA_VERSION,
            "package_version": _package_version(),
            "estimator_class": type(self).__name__,
            "estimator_family": self.estimator_family,
            "estimator_config": self._build_estimator_config(),
            **fitted,
            **dict(artifact_metadata or {}),
        }

    def save_backend_state(self, output_path: str | os.PathLike[str]) -> None:
        """Write the model weights into the directory ``output_path`` (``backend_state.eqx``)."""
        out = Path(output_path)
        out.mkdir(parents=True, exist_ok=True)
        (out / BACKEND_STATE_FILE).write_bytes(self._backend_state_bytes())

    def load_backend_state(self, input_path: str | os.PathLike[str]) -> None:
        """Read the model weights written by `save_backend_state`."""
        path = Path(input_path) / BACKEND_STATE_FILE
        if not path.is_file():
            raise ArtifactError(f"input_path: no backend state file {str(path)!r}")
        if getattr(self, "model", None) is None:
            raise NotFittedError("hydrate_loaded_metadata must run before load_backend_state")
        with float32_scope():
            expected, n_arrays = self._expected_state_bytes()
            size = path.stat().st_size  # checked before the file is read
            if not expected <= size <= expected + _NPY_HEADER_BYTES * n_arrays:
                raise ArtifactError(
                    f"{path}: the backend state holds {size} bytes; the configured model "
                    f"needs {expected} bytes of weights in {n_arrays} arrays"
                )
            self._load_backend_state_bytes(path.read_bytes())

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save the estimator as an artifact directory (atomic write).

        Returns:
            The artifact path.
        """
        metadata = self._build_serialized_metadata()
        state = np.frombuffer(self._backend_state_bytes(), dtype=np.uint8)
        return save_artifact(
            path,
            kind=ARTIFACT_KIND,
            config=metadata,
            arrays={"backend_state": state},
            metadata={"task_metadata": metadata.get("task_metadata") or {}},
            producer={"distribution": "sbi-flows", "version": _package_version()},
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PersistentPosteriorEstimator:
        """Load an estimator saved by `save`.

        The model is rebuilt in float32 whatever ``jax_enable_x64`` says (as it was
        trained and saved), so a posterior saved with or without x64 loads with or
        without it and gives the same draws.

        Raises:
            ArtifactError: missing or corrupt artifact, another kind, or a schema
                version this package cannot read (the message names both versions).
        """
        with float32_scope():
            return cls._load(path)

    @classmethod
    def _load(cls, path: str | os.PathLike[str]) -> PersistentPosteriorEstimator:
        artifact = load_artifact(path, kind=ARTIFACT_KIND)
        root = Path(path) if artifact.path is None else artifact.path
        found = artifact.config_value("posterior_schema_version", int, default=None)
        if found != POSTERIOR_SCHEMA_VERSION:
            raise ArtifactError(
                f"artifact {str(path)!r} was saved with posterior schema version {found} "
                f"(sbi-flows {artifact.config.get('package_version', '?')}); this sbi-flows "
                f"{_package_version()} reads posterior schema version {POSTERIOR_SCHEMA_VERSION}"
            )
        name = artifact.config_value("estimator_class", str)
        klass = _REGISTRY.get(name)
        if klass is None or not issubclass(klass, cls):
            raise ArtifactError(
                f"artifact {str(path)!r} holds a {name!r}, which is not a {cls.__name__}"
            )
        # Everything is checked before anything is built or allocated.
        config = klass.checked_artifact_metadata(artifact)
        state = artifact.array("backend_state", kind="u", shape=(None,))
        if state.dtype != np.uint8:
            raise ArtifactError(
                f"{root / 'arrays.npz'}: array 'backend_state' has dtype {state.dtype}, "
                "expected uint8"
            )
        try:
            estimator = klass.from_serialized_metadata(config)
        except OrreryError as err:
            raise ArtifactError(
                f"{root / 'metadata.json'}: the saved constructor arguments are invalid ({err})"
            ) from err
        estimator._restore_metadata(config)
        expected, n_arrays = estimator._expected_state_bytes()
        if not expected <= state.size <= expected + _NPY_HEADER_BYTES * n_arrays:
            raise ArtifactError(
                f"{root / 'arrays.npz'}: array 'backend_state' holds {state.size} "
                f"bytes; the configured model needs {expected} bytes of weights in "
                f"{n_arrays} arrays"
            )
        estimator._build_model_skeleton()
        estimator._load_backend_state_bytes(state.tobytes())
        return estimator


def serialise_module(module: Any) -> bytes:
    """Serialise an equinox module's array leaves to bytes."""
    import equinox as eqx

    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, module)
    return buffer.getvalue()


def deserialise_module(data: bytes, like: Any) -> Any:
    """Inverse of `serialise_module`, given a module of the same structure."""
    import equinox as eqx

    try:
        return eqx.tree_deserialise_leaves(io.BytesIO(data), like)
    except Exception as err:  # equinox raises several types for a mismatched file
        raise ArtifactError(f"backend state does not match the model structure ({err})") from err
