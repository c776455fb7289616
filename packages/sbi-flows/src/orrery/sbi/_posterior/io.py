"""Saving and loading a `ConditionalFlowPosterior` (its persistence hooks).

The hooks of `PersistentPosteriorEstimator`
implemented for the flow posterior: what configuration and dataset-derived state
go into the artifact's metadata, and how the equinox weights are (de)serialised.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import numpy as np

from orrery.interface import NotFittedError

from .._precision import float32_scope
from ..persistence import deserialise_module, serialise_module
from ..spaces import ParameterSpace
from .checks import check_posterior_metadata
from .state import PosteriorState


class FlowPosteriorPersistence(PosteriorState):
    """Mixin of `ConditionalFlowPosterior` holding its persistence hooks."""

    def _build_estimator_config(self) -> dict[str, Any]:
        """Constructor arguments plus the resolved backend choices.

        The checkpoint directory of the training run is not recorded (an absolute
        path of the machine that trained it; a loaded posterior does not resume).
        """
        constructor = {k: v for k, v in self._config.items() if k != "task_metadata"}
        constructor.update(checkpoint_directory=None, resume_from_checkpoint=False)
        return {
            "constructor": constructor,
            "effective_flow_family": self.effective_flow_family,
            "resolved_encoder_hidden_dim": self.resolved_encoder_hidden_dim,
            "backend": "flowjax+equinox",
        }

    def _fitted_metadata(self) -> dict[str, Any]:
        self._require_fitted()
        return {
            "task_metadata": self.task_metadata,
            "parameter_names": self.parameter_names,
            "parameter_space": self._require_space().to_config(),
            "flow_shift": self._flow_shift.tolist(),
            "flow_scale": self._flow_scale.tolist(),
            "observation_schema": self.observation_schema,
            "preprocessing_metadata": self.preprocessing_metadata,
            "dataset_manifest": self.dataset_manifest,
            "dataset_fingerprint": self.dataset_fingerprint,
            "support_bounded": self.support_bounded,
            "training_history": self.training_history,
        }

    @staticmethod
    def _resolve_estimator_config(metadata: Mapping[str, Any]) -> dict[str, Any]:
        config = metadata.get("estimator_config", metadata)
        return dict(config.get("constructor", config))

    @classmethod
    def from_serialized_metadata(cls, metadata: Mapping[str, Any]) -> Any:
        """A new, unfitted estimator with the constructor configuration in ``metadata``."""
        config = cls._resolve_estimator_config(metadata)
        known = inspect.signature(cls.__init__).parameters
        kwargs = {k: v for k, v in config.items() if k in known}
        kwargs["task_metadata"] = metadata.get("task_metadata")
        return cls(**kwargs)

    @classmethod
    def checked_artifact_metadata(cls, artifact: Any) -> dict[str, Any]:
        """Every config entry a saved posterior needs, type- and size-checked.

        Raises:
            ArtifactError: naming ``metadata.json`` and the entry that is missing,
                of the wrong type, or inconsistent with the others.
        """
        return check_posterior_metadata(cls, artifact)

    def _expected_state_bytes(self) -> tuple[int, int]:
        """Bytes of the model's weights and its number of leaves, from shapes only.

        Encoder and flow are traced abstractly (nothing is allocated); the two
        coordinate arrays (shift, scale) add ``2 * parameter_dim`` float32 values.
        """
        import equinox as eqx
        import jax

        with float32_scope():  # the weights are float32 under jax_enable_x64 too
            shapes = eqx.filter_eval_shape(self._build_networks, jax.random.key(0))
        leaves = jax.tree.leaves(shapes)
        arrays = [x for x in leaves if hasattr(x, "shape") and hasattr(x, "dtype")]
        total = sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in arrays)
        return total + 8 * self.parameter_dim, len(leaves) + 2

    def hydrate_loaded_metadata(self, metadata: Mapping[str, Any]) -> None:
        """Restore dataset-derived state (names, space, schema, preprocessing, manifest)
        and build the model skeleton that `load_backend_state` fills."""
        self._restore_metadata(metadata)
        self._build_model_skeleton()

    def _build_model_skeleton(self) -> None:
        self.model = self._build_model()

    def _restore_metadata(self, metadata: Mapping[str, Any]) -> None:
        self.parameter_names = list(metadata["parameter_names"])
        self.space = ParameterSpace.from_config(metadata["parameter_space"])
        self._flow_shift = np.asarray(metadata["flow_shift"], np.float64)
        self._flow_scale = np.asarray(metadata["flow_scale"], np.float64)
        self.observation_schema = {k: dict(v) for k, v in metadata["observation_schema"].items()}
        self.preprocessing_metadata = metadata.get("preprocessing_metadata")
        self.dataset_manifest = metadata.get("dataset_manifest")
        self.dataset_fingerprint = metadata.get("dataset_fingerprint")
        self.support_bounded = bool(metadata.get("support_bounded", False))
        self.training_history = metadata.get("training_history")

    def _backend_state_bytes(self) -> bytes:
        return serialise_module(self._require_fitted())

    def _load_backend_state_bytes(self, data: bytes) -> None:
        like = self.model if self.model is not None else None
        if like is None:
            raise NotFittedError("hydrate_loaded_metadata must run before loading backend state")
        self.model = deserialise_module(data, like)
