"""Deterministic surrogates `(x, params) -> y` evaluated for many parameter samples at once.

The submodules (`base`, `mixture`, `neural_network`, `polynomial_chaos`)
are those of pypolymix.
"""

from .base import SurrogateModel
from .mixture import GatingNetwork, MixtureOfExperts
from .neural_network import ACTIVATIONS, NeuralNetwork
from .polynomial_chaos import (
    PolynomialChaosExpansion,
    SobolIndices,
    legendre_polynomial_p,
    legendre_polynomials,
    total_order_indices,
)

__all__ = [
    "ACTIVATIONS",
    "GatingNetwork",
    "MixtureOfExperts",
    "NeuralNetwork",
    "PolynomialChaosExpansion",
    "SobolIndices",
    "SurrogateModel",
    "legendre_polynomial_p",
    "legendre_polynomials",
    "total_order_indices",
]
