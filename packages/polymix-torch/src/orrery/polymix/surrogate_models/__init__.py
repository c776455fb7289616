"""Deterministic surrogates ``(x, params) -> y`` evaluated for many parameter samples at once."""

from .base import SurrogateModel
from .mixture import GatingNetwork, MixtureOfExperts
from .neural_network import NeuralNetwork
from .polynomial_chaos import (
    PolynomialChaosExpansion,
    SobolIndices,
    legendre_polynomials,
    total_order_indices,
)

__all__ = [
    "GatingNetwork",
    "MixtureOfExperts",
    "NeuralNetwork",
    "PolynomialChaosExpansion",
    "SobolIndices",
    "SurrogateModel",
    "legendre_polynomials",
    "total_order_indices",
]
