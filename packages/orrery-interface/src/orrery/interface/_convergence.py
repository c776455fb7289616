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
    """Effective sample size for ``x`` of shape ``(chains, draws, k)``; NaN when undefined.

    Stan's estimator on split chains (ArviZ's ``ess(method="mean")``): autocorrelations
    summed in pairs of lags while the pairs stay positive (lags up to ``n - 2``), the
    pairs made non-increasing, the even lag of the first pair that is not positive
    counted once when it is positive, and ``tau`` floored at ``1 / log10(m n)``.
    """
    if x.shape[1] < 4:
        return np.full(x.shape[2], np.nan)
    s = _split(x.astype(np.float64))
    m, n = s.shape[0], s.shape[1]
    acov = _autocov(s)
    mean_var = acov[:, 0].mean(axis=0) * n / (n - 1)
    var_plus = mean_var * (n - 1) / n + s.mean(axis=1).var(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = 1.0 - (mean_var - acov.mean(axis=0)) / var_plus  # (n, k)
    rho[0] = 1.0
    n_pairs = max(1, 1 + (n - 3) // 2)  # Stan evaluates lag pairs up to lag n - 2
    pairs = rho[: 2 * n_pairs : 2] + rho[1 : 2 * n_pairs : 2]  # (n_pairs, k)
    # pair j > 0 is evaluated while every pair before it is positive; the pairs before
    # the last one evaluated form the initial positive sequence, made non-increasing
    positive = np.cumprod(pairs > 0, axis=0).astype(bool)
    n_summed = positive[:-1].sum(axis=0)  # the last pair evaluated is pair n_summed
    monotone = np.minimum.accumulate(pairs, axis=0)
    summed = np.where(np.arange(n_pairs)[:, None] < n_summed, monotone, 0.0).sum(axis=0)
    cols = np.arange(pairs.shape[1])
    # its even lag counts once: when positive, or when the pair itself was kept (sum >= 0)
    even = np.where(n_summed > 0, rho[2 * n_summed, cols], 1.0)
    kept = (n_summed > 0) & (pairs[n_summed, cols] >= 0)
    extra = np.where((even > 0) | kept, even, 0.0)
    tau = np.maximum(-1.0 + 2.0 * summed + extra, 1.0 / np.log10(m * n))
    constant = ~np.isfinite(var_plus) | (var_plus <= 0)
    with np.errstate(invalid="ignore"):
        return np.where(constant, np.nan, m * n / tau)
