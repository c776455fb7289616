"""The fitted state of `ConditionalFlowPosterior`, declared for its mixins.

`PosteriorState` adds to `orrery.sbi._config.PosteriorConfig` (the declared
configuration) the attributes `fit` or `load` set, with their real types
(``None`` before fit), and the ``_require_*`` helpers that narrow them or raise
`NotFittedError`. The inference and persistence mixins derive from it so that the
type checker sees what they read; the posterior's constructor sets every one.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from orrery.interface import NotFittedError

from .._config import PosteriorConfig
from ..spaces import ParameterSpace
from . import model as _model


class PosteriorState(PosteriorConfig):
    """Configuration plus fitted state of the posterior (set by its constructor)."""

    _config: dict[str, Any]
    effective_flow_family: str
    observation_transform: str
    parameter_transform: str
    model: _model.PosteriorModel | None
    parameter_names: list[str]
    space: ParameterSpace | None
    observation_schema: dict[str, dict[str, Any]] | None
    preprocessing_metadata: dict[str, dict[str, Any]] | None
    dataset_manifest: dict[str, Any] | None
    dataset_fingerprint: str | None
    support_bounded: bool
    training_history: dict[str, list[float]] | None
    _flow_shift: np.ndarray
    _flow_scale: np.ndarray

    def _not_fitted(self) -> NotFittedError:
        return NotFittedError(
            f"{type(self).__name__} is not fitted: call fit(dataset) or load(path) first"
        )

    def _require_fitted(self) -> _model.PosteriorModel:
        if self.model is None:
            raise self._not_fitted()
        return self.model

    def _require_space(self) -> ParameterSpace:
        if self.space is None:
            raise self._not_fitted()
        return self.space

    def _require_schema(self) -> dict[str, dict[str, Any]]:
        if self.observation_schema is None:
            raise self._not_fitted()
        return self.observation_schema

    # Defined by the posterior; declared here for the mixins.
    @property
    def resolved_encoder_hidden_dim(self) -> int:
        raise NotImplementedError

    def _build_model(self) -> _model.PosteriorModel:
        raise NotImplementedError

    def _build_networks(self, key: jax.Array) -> tuple[Any, Any]:
        raise NotImplementedError
