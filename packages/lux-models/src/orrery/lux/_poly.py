"""Polynomial feature expansion shared by The Cannon and ``PolyFeatureTransform``."""

from __future__ import annotations

import math
from functools import lru_cache
from itertools import combinations_with_replacement

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float


def n_poly_features(label_size: int, degree: int, include_bias: bool = True) -> int:
    """Number of monomials of total degree ``<= degree`` in ``label_size`` variables."""
    n = math.comb(label_size + degree, degree)
    return n if include_bias else n - 1


@lru_cache(maxsize=64)
def _term_indices(label_size: int, degree: int) -> tuple[np.ndarray, ...]:
    """Index arrays, one per degree ``1..degree``, of shape ``(n_terms, d)``."""
    return tuple(
        np.array(list(combinations_with_replacement(range(label_size), d)), dtype=np.int32)
        for d in range(1, degree + 1)
    )


def poly_features(
    labels: Float[Array, "n labels"], degree: int, include_bias: bool = True
) -> Float[Array, "n features"]:
    """Expand labels into monomials: bias, then degree 1, degree 2 … terms.

    Within a degree the products follow ``itertools.combinations_with_replacement``
    order, so labels ``[a, b]`` at degree 2 give ``[1, a, b, a², ab, b²]``.
    """
    labels = jnp.asarray(labels)
    cols = []
    if include_bias:
        cols.append(jnp.ones((*labels.shape[:-1], 1), dtype=labels.dtype))
    for idx in _term_indices(labels.shape[-1], degree):
        cols.append(jnp.prod(labels[..., idx], axis=-1))
    return jnp.concatenate(cols, axis=-1)


def poly_features_host(labels: np.ndarray, degree: int, include_bias: bool = True) -> np.ndarray:
    """`poly_features` in NumPy, in the labels' dtype: no program to compile.

    The same products in the same order, so the same numbers as on the device.
    """
    cols = [np.ones((*labels.shape[:-1], 1), labels.dtype)] if include_bias else []
    cols += [np.prod(labels[..., idx], axis=-1) for idx in _term_indices(labels.shape[-1], degree)]
    return np.concatenate(cols, axis=-1).astype(labels.dtype, copy=False)


@lru_cache(maxsize=64)
def feature_exponents(
    label_size: int, degree: int, include_bias: bool = True
) -> tuple[tuple[int, ...], ...]:
    """Each feature's exponent vector over the labels, in `poly_features` order.

    Labels ``[a, b]`` at degree 2 give ``((0, 0), (1, 0), (0, 1), (2, 0), (1, 1), (0, 2))``.
    """
    out = [(0,) * label_size] if include_bias else []
    for idx in _term_indices(label_size, degree):
        out.extend(tuple(int(np.sum(row == j)) for j in range(label_size)) for row in idx)
    return tuple(out)


def term_names(label_names: tuple[str, ...], degree: int, include_bias: bool = True) -> list[str]:
    """Human-readable names of the features, e.g. ``["1", "teff", "teff*logg", ...]``."""
    names = ["1"] if include_bias else []
    for idx in _term_indices(len(label_names), degree):
        names.extend("*".join(label_names[i] for i in row) for row in idx)
    return names


def linear_term_slice(label_size: int, include_bias: bool) -> slice:
    """Where the degree-1 terms sit in the feature vector."""
    start = 1 if include_bias else 0
    return slice(start, start + label_size)
