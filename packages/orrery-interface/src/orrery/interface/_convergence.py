"""Split-R-hat and effective sample size, vectorised over elements.

Both follow Gelman et al., *Bayesian Data Analysis* (3rd ed.), §11.4–11.5, on
split chains; the ESS uses Geyer's initial monotone sequence estimator with
FFT autocovariances, as Stan and ArviZ do.
"""

from __future__ import annotations

import numpy as np


def _split(x: np.ndarray) -> np.ndarray:
    """(chains, draws, k) -> (2·chains, draws // 2, k), dropping a middle odd draw."""
    half = x.shape[1] // 2
    return np.concatenate([x[:, :half], x[:, x.shape[1] - half :]], axis=0)


def split_rhat(x: np.ndarray) -> np.ndarray:
    """Split-R-hat for ``x`` of shape ``(chains, draws, k)``; NaN when undefined."""
    if x.shape[1] < 4:
        return np.full(x.shape[2], np.nan)
    s = _split(x.astype(np.float64))
    n = s.shape[1]
    within = s.var(axis=1, ddof=1).mean(axis=0)
    between = n * s.mean(axis=1).var(axis=0, ddof=1)
    var_hat = (n - 1) / n * within + between / n
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt(var_hat / within)


def _autocov(s: np.ndarray) -> np.ndarray:
    """Autocovariance along axis 1 of ``s`` (chains, n, k) via FFT (biased, as in Stan)."""
    n = s.shape[1]
    centred = s - s.mean(axis=1, keepdims=True)
    size = 1 << (2 * n - 1).bit_length()
    f = np.fft.rfft(centred, n=size, axis=1)
    acov = np.fft.irfft(f * np.conj(f), n=size, axis=1)[:, :n]
    return acov / n


def ess(x: np.ndarray) -> np.ndarray:
    """Effective sample size for ``x`` of shape ``(chains, draws, k)``; NaN when undefined."""
    if x.shape[1] < 4:
        return np.full(x.shape[2], np.nan)
    s = _split(x.astype(np.float64))
    m, n = s.shape[0], s.shape[1]
    acov = _autocov(s)
    chain_var = acov[:, 0] * n / (n - 1)
    mean_var = chain_var.mean(axis=0)
    var_plus = mean_var * (n - 1) / n + s.mean(axis=1).var(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = 1.0 - (mean_var - acov.mean(axis=0)) / var_plus  # (n, k)
    rho[0] = 1.0
    n_pairs = n // 2
    pairs = rho[: 2 * n_pairs : 2] + rho[1 : 2 * n_pairs : 2]  # (n_pairs, k)
    # Geyer: keep the initial positive run, then force it to be non-increasing.
    positive = np.cumprod(pairs > 0, axis=0).astype(bool)
    pairs = np.minimum.accumulate(np.where(positive, pairs, np.inf), axis=0)
    pairs = np.where(positive, pairs, 0.0)
    tau = -1.0 + 2.0 * pairs.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = m * n / tau
    constant = ~np.isfinite(var_plus) | (var_plus <= 0)
    return np.where(constant, np.nan, np.minimum(out, m * n * np.log10(m * n)))
