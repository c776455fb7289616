"""Posterior-predictive summaries and hand-over of parameter samples as `Draws`."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from orrery.interface import ConfigError, Draws, ShapeError, ValueDomainError, as_int_seed

from ._checks import as_float_tensor, check_inputs, check_samples
from .stochastic_model import StochasticModel

__all__ = ["PredictiveSummary", "predictive_summary", "to_draws"]


class PredictiveSummary(NamedTuple):
    """Summary of ``S`` predictive draws at ``N`` points.

    Attributes:
        mean: ``(N, num_outputs)``.
        std: ``(N, num_outputs)`` (with ``ddof=1``).
        quantiles: ``(len(levels), N, num_outputs)``.
        levels: ``(len(levels),)`` the quantile levels.
        samples: ``(S, N, num_outputs)`` the draws themselves.
    """

    mean: torch.Tensor
    std: torch.Tensor
    quantiles: torch.Tensor
    levels: torch.Tensor
    samples: torch.Tensor


@contextlib.contextmanager
def _seeded(seed: Any, device: torch.device):
    """Fork the global torch RNG and seed it; without a seed, do nothing."""
    if seed is None:
        yield
        return
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(as_int_seed(seed))
        yield


def _broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    """Whether `shape` broadcasts to exactly `target` (without torch's lazy fx import)."""
    if len(shape) > len(target):
        return False
    return all(a in (1, b) for a, b in zip(reversed(shape), reversed(target), strict=False))


def _levels(quantiles: Sequence[float], ref: torch.Tensor) -> torch.Tensor:
    try:
        q = torch.as_tensor(list(quantiles), dtype=ref.dtype, device=ref.device).reshape(-1)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ConfigError(f"quantiles: expected a sequence of floats, got {quantiles!r}") from err
    if q.numel() == 0 or not bool(((q >= 0) & (q <= 1)).all()):
        raise ConfigError(f"quantiles: expected levels in [0, 1], got {list(quantiles)!r}")
    return q


def predictive_summary(
    model: StochasticModel,
    x: Any,
    num_samples: int = 200,
    quantiles: Sequence[float] = (0.05, 0.5, 0.95),
    noise_std: float | torch.Tensor | None = None,
    seed: Any = None,
) -> PredictiveSummary:
    """Mean, standard deviation and quantiles of the model's predictions.

    Runs without gradients. With ``noise_std`` each draw gets independent
    Gaussian observation noise, giving the posterior predictive of noisy
    observations rather than of the latent function.

    Args:
        model: the stochastic model.
        x: ``(N, num_inputs)`` inputs.
        num_samples: number of parameter draws ``S`` (>= 2).
        quantiles: levels in ``[0, 1]``.
        noise_std: optional observation-noise standard deviation, a float or a
            tensor broadcastable to ``(N, num_outputs)``.
        seed: int or ``numpy.random.Generator`` for reproducible draws (the
            global torch RNG is left untouched); ``None`` uses the global RNG.

    Returns:
        `PredictiveSummary`.

    Example:
        >>> import torch
        >>> from orrery.polymix import IIDGaussianGroup, NeuralNetwork, StochasticModel
        >>> net = NeuralNetwork(num_inputs=1, width=4)
        >>> model = StochasticModel(net, IIDGaussianGroup("w", net.num_params()))
        >>> x = torch.linspace(-1, 1, 5)[:, None]
        >>> s = predictive_summary(model, x, num_samples=100, quantiles=(0.05, 0.95), seed=0)
        >>> lower, upper = s.quantiles
        >>> lower.shape, bool((lower <= upper).all())
        (torch.Size([5, 1]), True)
    """
    if not isinstance(model, StochasticModel):
        raise ConfigError(f"model: expected a StochasticModel, got {type(model).__name__}")
    s = check_samples(num_samples)
    if s < 2:
        raise ConfigError(f"num_samples: expected an integer >= 2 for a spread, got {s}")
    ref = next(model.parameters())
    x = check_inputs(as_float_tensor(x, "x", like=ref), model.num_inputs)
    levels = _levels(quantiles, x)
    with torch.no_grad(), _seeded(seed, x.device):
        y = model(x, num_samples=s)
        if noise_std is not None:
            try:
                sigma = torch.as_tensor(noise_std, dtype=y.dtype, device=y.device)
            except (TypeError, ValueError, RuntimeError) as err:
                raise ConfigError(
                    f"noise_std: expected a float or a tensor, got {noise_std!r}"
                ) from err
            if not bool(((sigma >= 0) & torch.isfinite(sigma)).all()):
                raise ValueDomainError(
                    f"noise_std: expected finite non-negative values, got {noise_std!r}"
                )
            if not _broadcasts_to(tuple(sigma.shape), tuple(y.shape[1:])):
                raise ShapeError(
                    f"noise_std: expected a float or a shape broadcastable to "
                    f"{tuple(y.shape[1:])}, got {tuple(sigma.shape)}"
                )
            y = y + sigma * torch.randn_like(y)
    return PredictiveSummary(
        mean=y.mean(0),
        std=y.std(0),
        quantiles=torch.quantile(y, levels, dim=0),
        levels=levels,
        samples=y,
    )


def to_draws(model: StochasticModel, num_samples: int = 1000, seed: Any = None) -> Draws:
    """Sample the parameter groups and return them as `orrery.interface.Draws`.

    Each group becomes one variable named after the group, with shape
    ``(1, num_samples, group.num_params)`` (one chain), as float64 NumPy
    arrays, so JAX code can consume torch posteriors.

    Args:
        model: the stochastic model.
        num_samples: number of draws (>= 1).
        seed: int or ``numpy.random.Generator`` (``None``: global torch RNG).

    Returns:
        `Draws` with one variable per group.
    """
    if not isinstance(model, StochasticModel):
        raise ConfigError(f"model: expected a StochasticModel, got {type(model).__name__}")
    s = check_samples(num_samples)
    ref = next(model.parameters())
    with torch.no_grad(), _seeded(seed, ref.device):
        theta = model.sample_parameters(s)
    arr = theta.detach().to("cpu", torch.float64).numpy()
    samples = {name: arr[None, :, sl] for name, sl in model.group_slices().items()}
    return Draws({k: np.ascontiguousarray(v) for k, v in samples.items()})
