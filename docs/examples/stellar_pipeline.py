"""Spectra to stellar labels with calibrated uncertainties, three ways.

The pipeline crosses three orrery packages:

1. `orrery.lux`: draw a synthetic survey, train The Cannon on the labelled
   stars, and run its test step (`Cannon.infer_labels`) on held-out stars.
2. `orrery.sbi`: use the fitted Cannon as a simulator (labels -> spectrum plus
   noise), train an amortized `ConditionalFlowPosterior` over the labels, and
   sample the posterior of every held-out star in one vmapped call.
3. `orrery.ensemble`: an ensemble of randomised MAP fits per star
   (randomise-then-optimise: every member fits the spectrum plus its own noise
   draw), whose members approximate posterior draws.

What the fitted Cannon does not know is modelled, not ignored: its
coefficients come from a finite training set, so at labels ``x`` each pixel's
prediction has variance ``φ(x)ᵀ C_p φ(x)`` (``C_p`` the weighted-least-squares
covariance of pixel ``p``'s coefficients), on top of the fitted intrinsic
scatter ``s_p²`` and the measurement noise. The simulator that trains the SBI
posterior and the likelihood of the ensemble use this total variance, so both
answer "what are the labels, given this spectrum and this training set?".

Intervals: the Cannon's are Gaussian (mean ± z·σ from its Laplace
covariance); SBI's are central quantiles of its posterior draws; the
ensemble's are rank intervals of its members (with E members exchangeable
with the truth, the k-th lowest to k-th highest member covers the truth with
probability exactly (E + 1 − 2k)/(E + 1): 39 members and k = 2 give 90%).

It prints a report (sizes, timings, label accuracy against the truth,
agreement, per-label 90% coverage with its binomial interval, and a plain
warning for any method that under-covers), writes it to
``<output-dir>/report.md`` and ``<output-dir>/summary.json``, and draws
plots with units, titles and legends. `make demo` runs it with the defaults;
`--help` lists the flags. The integration tests run `run_pipeline` at a
smaller size.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from statistics import NormalDist
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from orrery.ensemble import ensemble_map
from orrery.lux import Cannon
from orrery.lux.datasets import synthetic_survey
from orrery.sbi import ConditionalFlowPosterior, ObservationBlock, SimulationDataset

LEVELS = np.linspace(0.05, 0.95, 19)
METHODS = ("cannon", "sbi", "ensemble")
UNITS = {"teff": "K", "logg": "dex", "feh": "dex", "alpha": "dex", "vmic": "km/s"}
PRETTY = {"teff": "T_eff", "logg": "log g", "feh": "[Fe/H]", "alpha": "[α/Fe]", "vmic": "v_mic"}


def stage(message: str) -> None:
    """One plain line per stage (no carriage returns: readable when redirected to a file)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclasses.dataclass
class PipelineConfig:
    """Sizes and settings of the pipeline (the defaults are the demo's)."""

    n_train: int = 2000
    n_test: int = 300
    n_pixels: int = 200
    snr: float = 50.0
    intrinsic_scatter: float = 0.005
    n_simulations: int = 200_000
    num_epochs: int = 15
    n_posterior_samples: int = 1000
    ensemble_size: int = 39
    ensemble_steps: int = 800
    seed: int = 0

    def __post_init__(self) -> None:
        if self.ensemble_size < 19 or (self.ensemble_size + 1) % 10:
            raise ValueError(
                f"ensemble_size: expected 19, 39, 59, ... (a rank interval of E members has "
                f"level (E + 1 - 2k) / (E + 1), exactly 90% only when E + 1 is a multiple of "
                f"10), got {self.ensemble_size}"
            )


@dataclasses.dataclass
class StarLabels:
    """Per-star label estimates: means, standard deviations and 90% intervals, ``(n, d)``."""

    mean: np.ndarray
    std: np.ndarray
    lo90: np.ndarray
    hi90: np.ndarray


@dataclasses.dataclass
class CannonUncertainty:
    """What the fitted Cannon does not know: coefficient covariance and fitted scatter.

    ``coeff_cov[p]`` is the covariance of pixel ``p``'s coefficients from the
    weighted least-squares fit, ``(Φᵀ W_p Φ)⁻¹`` with ``W_p = 1 / (σ² + s_p²)``
    over the training stars. At labels ``x`` it adds ``φ(x)ᵀ C_p φ(x)`` to the
    variance of pixel ``p``.
    """

    cannon: Cannon
    coeff_cov: np.ndarray  # (pixels, features, features)
    snr: float

    @classmethod
    def from_training(cls, cannon: Cannon, labels, flux, ivar, snr: float) -> CannonUncertainty:
        phi = np.asarray(cannon.get_features(labels), dtype=float)  # (n, K)
        s2 = np.asarray(cannon.scatter, dtype=float) ** 2
        with np.errstate(divide="ignore"):
            var = np.where(ivar > 0, 1.0 / ivar, np.inf)
        weight = 1.0 / (var + s2)  # (n, pixels); 0 where a pixel is missing
        precision = np.einsum("np,nk,nl->pkl", weight, phi, phi)
        return cls(cannon, np.linalg.inv(precision), snr)

    def coefficient_variance(self, labels) -> np.ndarray:
        """``φ(x)ᵀ C_p φ(x)`` for every row of ``labels`` and pixel, ``(n, pixels)``."""
        phi = np.asarray(self.cannon.get_features(labels), dtype=float)
        k = phi.shape[1]
        outer = (phi[:, :, None] * phi[:, None, :]).reshape(len(phi), k * k)
        return outer @ self.coeff_cov.reshape(len(self.coeff_cov), k * k).T

    def noise_sd(self, labels, *, with_coefficients: bool = True) -> np.ndarray:
        """Per-pixel sd of a spectrum at ``labels``: noise, fitted scatter, coefficient error."""
        clean = np.asarray(self.cannon.predict(labels), dtype=float)
        var = (np.abs(clean) / self.snr) ** 2 + np.asarray(self.cannon.scatter, float) ** 2
        if with_coefficients:
            var = var + self.coefficient_variance(labels)
        return np.sqrt(var)


def _coverage_of_draws(draws: np.ndarray, truth: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Per label: fraction of stars whose truth is in the central interval, ``(levels, d)``."""
    lo = np.quantile(draws, 0.5 - levels / 2, axis=1)  # (levels, n, d)
    hi = np.quantile(draws, 0.5 + levels / 2, axis=1)
    return ((truth[None] >= lo) & (truth[None] <= hi)).mean(axis=1)


def _coverage_of_gaussian(est: StarLabels, truth: np.ndarray, levels: np.ndarray) -> np.ndarray:
    z = np.array([NormalDist().inv_cdf(0.5 + q / 2) for q in levels])
    return (np.abs(truth - est.mean)[None] <= z[:, None, None] * est.std[None]).mean(axis=1)


def _rank_levels(n_members: int) -> tuple[np.ndarray, np.ndarray]:
    """Rank intervals of n exchangeable members: ranks k and their exact levels."""
    ks = np.arange(1, (n_members + 1) // 2)
    return ks, (n_members + 1 - 2 * ks) / (n_members + 1)


def _coverage_of_members(members: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coverage of the k-th lowest to k-th highest member intervals, per label."""
    ordered = np.sort(members, axis=0)  # (E, n, d)
    ks, levels = _rank_levels(len(members))
    cov = np.stack([((truth >= ordered[k - 1]) & (truth <= ordered[-k])).mean(axis=0) for k in ks])
    order = np.argsort(levels)
    return levels[order], cov[order]


def binomial_band(n: int, p: float = 0.9, mass: float = 0.95) -> tuple[float, float]:
    """Central ``mass`` range of the observed coverage k/n when the true coverage is ``p``."""
    pmf = np.array([math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)])
    cdf = np.cumsum(pmf)
    lo = int(np.searchsorted(cdf, (1 - mass) / 2))
    hi = int(np.searchsorted(cdf, 1 - (1 - mass) / 2))
    return lo / n, hi / n


def wilson_interval(k: int, n: int, mass: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k/n."""
    z = NormalDist().inv_cdf(0.5 + mass / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def simulate(unc: CannonUncertainty, theta: np.ndarray, rng: np.random.Generator):
    """The Cannon as a simulator: spectra and their sd for labels ``theta``.

    The sd includes the Cannon's coefficient uncertainty, so a simulated
    spectrum scatters around the fitted model as a real one does.
    """
    clean = np.asarray(unc.cannon.predict(theta))
    sd = np.concatenate([unc.noise_sd(theta[i : i + 5000]) for i in range(0, len(theta), 5000)])
    return clean + sd * rng.standard_normal(clean.shape), sd


def train_posterior(unc: CannonUncertainty, bounds: np.ndarray, cfg: PipelineConfig, names):
    """Simulate from the Cannon over a uniform prior and train the flow posterior.

    The flow sees the spectrum only, not its per-pixel sd: the sd is computed
    from the noise-free model at the true labels, so as an input channel it
    would hand the labels to the flow without noise (and at test time it can
    only be evaluated at estimated labels), which makes the posterior too
    narrow. The noise model is in the simulations; the flow learns it there.
    """
    rng = np.random.default_rng(cfg.seed + 1)
    theta = rng.uniform(bounds[:, 0], bounds[:, 1], size=(cfg.n_simulations, len(bounds)))
    flux, _ = simulate(unc, theta, rng)
    dataset = SimulationDataset.from_arrays(
        theta,
        {"spectrum": flux},
        bounds=bounds,
        parameter_names=list(names),
        seed=cfg.seed,
    )
    posterior = ConditionalFlowPosterior(
        parameter_dim=len(bounds),
        parameter_space="unconstrained",
        spectrum_encoder_type="mlp",
        n_wavelengths=cfg.n_pixels,
        spectrum_embedding_dim=32,
        embedding_dim=32,
        hidden_dim=64,
        num_coupling_layers=4,
        batch_size=256,
        learning_rate=2e-3,
        weight_decay=1e-4,
        num_epochs=cfg.num_epochs,
        use_cosine_schedule=True,
        seed=cfg.seed,
    )
    stage(f"sbi: training the flow on {cfg.n_simulations:,} simulations, {cfg.num_epochs} epochs")
    posterior.fit(dataset)
    return posterior


def sbi_labels(posterior, flux, cfg: PipelineConfig) -> tuple[StarLabels, np.ndarray]:
    """Encode every held-out star in one pass and sample all posteriors in one call."""
    blocks = [[ObservationBlock("spectrum", f)] for f in flux]
    encoded = posterior.batch_encode_observation(blocks)
    draws = posterior.batch_sample_posterior(encoded, cfg.n_posterior_samples, base_seed=cfg.seed)
    physical = np.asarray(posterior.space.to_physical(jnp.asarray(draws)))
    lo, hi = np.quantile(physical, [0.05, 0.95], axis=1)
    return StarLabels(physical.mean(axis=1), physical.std(axis=1, ddof=1), lo, hi), physical


def ensemble_labels(
    cannon: Cannon, flux, sd, bounds, cfg: PipelineConfig, progress: bool = False
) -> tuple[StarLabels, np.ndarray]:
    """Randomise-then-optimise MAP ensemble over all held-out stars at once.

    Each member holds labels for every star (in a bounded tanh parametrisation)
    and its own fixed noise draw ``eps``; it maximises the Gaussian likelihood of
    ``flux + eps``. For a linear-Gaussian model the members are exact posterior
    draws; here they approximate them. ``sd`` is the total per-pixel sd
    (noise, scatter and the Cannon's coefficient uncertainty). The 90% interval
    is the rank interval of the members (see the module docstring).
    """
    n, d = flux.shape[0], len(bounds)
    centre = jnp.asarray(bounds.mean(axis=1))
    half = jnp.asarray(0.5 * (bounds[:, 1] - bounds[:, 0]))
    sd_j = jnp.asarray(sd)

    def to_labels(z):
        return centre + half * jnp.tanh(z)

    def init_fn(key):
        k1, k2 = jax.random.split(key)
        return {
            "z": 0.3 * jax.random.normal(k1, (n, d)),
            "eps": sd_j * jax.random.normal(k2, sd_j.shape),
        }

    def log_joint(params, _x, y):
        model = cannon.predict(to_labels(params["z"]))
        target = y + jax.lax.stop_gradient(params["eps"])  # the member's fixed perturbation
        return -0.5 * jnp.sum(((target - model) / sd_j) ** 2), 0.0

    params, _ = ensemble_map(
        log_joint,
        init_fn,
        ensemble_size=cfg.ensemble_size,
        num_epochs=cfg.ensemble_steps,
        data=(jnp.zeros((n, 1)), jnp.asarray(flux)),
        seed=jax.random.key(cfg.seed),
        prior_weight=0.0,
        optimizer=optax.adam(0.05),
        progress=progress,
    )
    members = np.asarray(eqx.filter_vmap(to_labels)(params["z"]))  # (E, n, d)
    ks, levels = _rank_levels(len(members))
    k90 = int(ks[np.argmin(np.abs(levels - 0.9))])
    ordered = np.sort(members, axis=0)
    est = StarLabels(
        members.mean(axis=0), members.std(axis=0, ddof=1), ordered[k90 - 1], ordered[-k90]
    )
    return est, members


def _z_agreement(a: StarLabels, b: StarLabels) -> np.ndarray:
    return np.abs(a.mean - b.mean) / np.sqrt(a.std**2 + b.std**2)


def _coverage_table(
    estimates: dict[str, StarLabels], truth: np.ndarray, names: list[str]
) -> dict[str, dict[str, dict[str, Any]]]:
    """Per method and label: 90% coverage, n, its Wilson interval and the binomial band."""
    n = len(truth)
    band = binomial_band(n)
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for method, est in estimates.items():
        inside = (truth >= est.lo90) & (truth <= est.hi90)
        table[method] = {}
        for j, name in enumerate(names):
            k = int(inside[:, j].sum())
            table[method][name] = {
                "coverage_90": k / n,
                "n": n,
                "interval_95": wilson_interval(k, n),
                "band_95": band,
                "verdict": "under-covers"
                if k / n < band[0]
                else ("over-covers" if k / n > band[1] else "calibrated"),
            }
    return table


def run_pipeline(
    cfg: PipelineConfig, output_dir: Path | None = None, *, progress: bool = False
) -> dict[str, Any]:
    """Run the whole pipeline; return the report as a dict (and write plots when asked)."""
    timings: dict[str, float] = {}
    clock = time.perf_counter

    stage(f"survey: drawing {cfg.n_train + cfg.n_test:,} stars x {cfg.n_pixels} pixels")
    t = clock()
    survey = synthetic_survey(
        cfg.n_train + cfg.n_test,
        cfg.n_pixels,
        snr=cfg.snr,
        intrinsic_scatter=cfg.intrinsic_scatter,
        seed=cfg.seed,
    )
    names = list(survey.label_names)
    train, test = slice(0, cfg.n_train), slice(cfg.n_train, None)
    truth = survey.labels[test]
    bounds = np.stack([survey.labels.min(axis=0), survey.labels.max(axis=0)], axis=1)
    timings["survey"] = clock() - t

    stage(f"cannon: fitting on {cfg.n_train:,} training stars")
    t = clock()
    cannon = Cannon(label_size=len(names), output_size=cfg.n_pixels).fit(
        survey.labels[train], survey.spectra[train], survey.ivar[train]
    )
    unc = CannonUncertainty.from_training(
        cannon, survey.labels[train], survey.spectra[train], survey.ivar[train], cfg.snr
    )
    timings["cannon_fit"] = clock() - t
    stage(f"cannon: test step on {cfg.n_test} held-out stars")
    t = clock()
    inferred = cannon.infer_labels(survey.spectra[test], survey.ivar[test])
    c_mean = np.asarray(inferred.labels)
    c_std = np.sqrt(np.diagonal(np.asarray(inferred.covariance), 0, 1, 2))
    z90 = NormalDist().inv_cdf(0.95)
    cannon_est = StarLabels(c_mean, c_std, c_mean - z90 * c_std, c_mean + z90 * c_std)
    timings["cannon_test_step"] = clock() - t

    # The observed spectra with the noise model the simulator assumes (at the Cannon's labels).
    obs_flux = survey.spectra[test]
    obs_sd = unc.noise_sd(cannon_est.mean)
    share = np.median(unc.coefficient_variance(cannon_est.mean) / obs_sd**2)

    t = clock()
    posterior = train_posterior(unc, bounds, cfg, names)
    timings["sbi_train"] = clock() - t
    stage(f"sbi: sampling {cfg.n_posterior_samples} draws for each of {cfg.n_test} stars")
    t = clock()
    sbi_est, sbi_draws = sbi_labels(posterior, obs_flux, cfg)
    timings["sbi_sample"] = clock() - t

    stage(
        f"ensemble: {cfg.ensemble_size} randomised MAP fits of all {cfg.n_test} stars, "
        f"{cfg.ensemble_steps} steps"
    )
    t = clock()
    ens_est, members = ensemble_labels(cannon, obs_flux, obs_sd, bounds, cfg, progress)
    timings["ensemble"] = clock() - t
    stage("report: coverage, agreement, plots")

    estimates = {"cannon": cannon_est, "sbi": sbi_est, "ensemble": ens_est}
    curves = {
        "cannon": (LEVELS, _coverage_of_gaussian(cannon_est, truth, LEVELS)),
        "sbi": (LEVELS, _coverage_of_draws(sbi_draws, truth, LEVELS)),
        "ensemble": _coverage_of_members(members, truth),
    }
    table = _coverage_table(estimates, truth, names)
    sbi_curve = curves["sbi"][1].mean(axis=1)
    report = {
        "sizes": {
            "n_train": cfg.n_train,
            "n_test": cfg.n_test,
            "n_pixels": cfg.n_pixels,
            "n_simulations": cfg.n_simulations,
            "ensemble_size": cfg.ensemble_size,
            "seed": cfg.seed,
        },
        "label_names": names,
        "timings_s": timings,
        "rmse": {m: np.sqrt(np.mean((e.mean - truth) ** 2, axis=0)) for m, e in estimates.items()},
        "label_range": bounds[:, 1] - bounds[:, 0],
        "coefficient_variance_share": float(share),
        "coverage_table": table,
        "coverage_curves": curves,
        "coverage_levels": LEVELS,
        "coverage": sbi_curve,
        "coverage_90": float(sbi_curve[np.argmin(np.abs(LEVELS - 0.9))]),
        "z_sbi_vs_cannon": _z_agreement(sbi_est, cannon_est),
        "z_sbi_vs_ensemble": _z_agreement(sbi_est, ens_est),
        "estimates": estimates,
        "truth": truth,
    }
    if output_dir is not None:
        report["plots"] = write_plots(report, sbi_draws, output_dir)
        report["files"] = write_report_files(report, output_dir)
    return report


def _axis_label(name: str) -> str:
    unit = UNITS.get(name)
    return f"{PRETTY.get(name, name)} [{unit}]" if unit else PRETTY.get(name, name)


COLORS = {"cannon": "tab:blue", "sbi": "tab:orange", "ensemble": "tab:green"}
TITLES = {"cannon": "Cannon test step", "sbi": "SBI posterior", "ensemble": "MAP ensemble"}


def write_plots(report: dict[str, Any], sbi_draws: np.ndarray, output_dir: Path) -> list[Path]:
    """One-to-one with residuals, coverage per label with its binomial band, a corner plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from orrery.sbi.diagnostics import corner

    output_dir.mkdir(parents=True, exist_ok=True)
    names, truth = report["label_names"], report["truth"]
    n, d = truth.shape
    paths = []

    # One-to-one: every method with its 1σ error bars, residuals below.
    fig, axes = plt.subplots(
        2, d, figsize=(4.6 * d, 6.4), gridspec_kw={"height_ratios": [3, 1.3]}, squeeze=False
    )
    for j, name in enumerate(names):
        top, bottom = axes[0, j], axes[1, j]
        lims = [truth[:, j].min(), truth[:, j].max()]
        for method, est in report["estimates"].items():
            rms = report["rmse"][method][j]
            kw = dict(fmt="o", ms=2.5, lw=0.6, alpha=0.55, color=COLORS[method])
            top.errorbar(
                truth[:, j],
                est.mean[:, j],
                yerr=est.std[:, j],
                **kw,
                label=f"{TITLES[method]} (RMS {rms:.3g})",
            )
            bottom.errorbar(truth[:, j], est.mean[:, j] - truth[:, j], yerr=est.std[:, j], **kw)
        top.plot(lims, lims, "k--", lw=1, label="one-to-one")
        bottom.axhline(0.0, color="k", ls="--", lw=1)
        top.set_title(f"{PRETTY.get(name, name)}: inferred vs true ({n} held-out stars)")
        top.set_ylabel(f"inferred {_axis_label(name)}")
        bottom.set_xlabel(f"true {_axis_label(name)}")
        bottom.set_ylabel(f"inferred − true [{UNITS.get(name, '')}]")
        top.legend(fontsize=7, loc="upper left")
    fig.suptitle("Held-out stars: labels from the Cannon, SBI and the MAP ensemble (±1σ)")
    fig.tight_layout()
    paths.append(output_dir / "one_to_one.png")
    fig.savefig(paths[-1], dpi=110, bbox_inches="tight")
    plt.close(fig)

    # Coverage per label: each method's curve and the binomial band of a calibrated method.
    fig, axes = plt.subplots(1, d, figsize=(4.4 * d, 4.2), squeeze=False)
    grid = np.linspace(0.02, 0.98, 49)
    band = np.array([binomial_band(n, p) for p in grid])
    for j, name in enumerate(names):
        ax = axes[0, j]
        ax.fill_between(
            grid, band[:, 0], band[:, 1], color="0.85", label=f"95% binomial band (n={n})"
        )
        ax.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
        for method, (levels, cov) in report["coverage_curves"].items():
            c90 = report["coverage_table"][method][name]["coverage_90"]
            ax.plot(
                levels,
                cov[:, j],
                "-o",
                ms=2.5,
                color=COLORS[method],
                label=f"{TITLES[method]} (90%: {c90:.1%})",
            )
        ax.axvline(0.9, color="0.5", lw=0.6)
        ax.set_xlabel("nominal interval level")
        ax.set_ylabel("fraction of true labels inside")
        ax.set_title(f"Coverage of {PRETTY.get(name, name)} intervals")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    paths.append(output_dir / "coverage.png")
    fig.savefig(paths[-1], dpi=110, bbox_inches="tight")
    plt.close(fig)

    fig = corner(sbi_draws[0], labels=[_axis_label(nm) for nm in names], truths=truth[0])
    fig.suptitle("SBI posterior of held-out star 0 (lines: true labels)")
    paths.append(output_dir / "posterior_corner_star0.png")
    fig.savefig(paths[-1], dpi=110, bbox_inches="tight")
    plt.close(fig)
    return paths


def _summary_json(report: dict[str, Any]) -> dict[str, Any]:
    return {
        method: {
            name: {"coverage_90": row["coverage_90"], "n": row["n"]} for name, row in labels.items()
        }
        for method, labels in report["coverage_table"].items()
    }


def write_report_files(report: dict[str, Any], output_dir: Path) -> list[Path]:
    """``report.md`` (the text report) and ``summary.json`` (per-label 90% coverage)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    md, js = output_dir / "report.md", output_dir / "summary.json"
    md.write_text(format_report(report, markdown=True) + "\n", encoding="utf-8")
    js.write_text(json.dumps(_summary_json(report), indent=2) + "\n", encoding="utf-8")
    return [md, js]


def format_report(report: dict[str, Any], *, markdown: bool = False) -> str:
    """A readable text version of the report (Markdown tables when ``markdown``)."""
    names = report["label_names"]
    lines = [
        "# orrery stellar pipeline" if markdown else "orrery stellar pipeline",
        "" if markdown else "=" * 23,
        "sizes: " + ", ".join(f"{k}={v}" for k, v in report["sizes"].items()),
        "",
        "timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in report["timings_s"].items()),
        "",
        "The simulator and the ensemble's likelihood include the fitted Cannon's coefficient",
        "uncertainty and fitted scatter (median share of the per-pixel variance from the",
        f"coefficients: {report['coefficient_variance_share']:.1%}).",
        "",
        "## Label RMSE against the truth (held-out stars)" if markdown else "label RMSE:",
        "",
    ]
    head = ["method", *(_axis_label(n) for n in names)]
    rows = [[m, *(f"{v:.4g}" for v in report["rmse"][m])] for m in report["rmse"]]
    rows.append(["label range", *(f"{v:.4g}" for v in report["label_range"])])
    lines += _table(head, rows, markdown)
    lines.append("")
    for key, title in (
        ("z_sbi_vs_cannon", "SBI vs Cannon"),
        ("z_sbi_vs_ensemble", "SBI vs ensemble"),
    ):
        z = report[key]
        lines.append(f"{title}: median |Δ|/σ = {np.median(z):.2f}, within 2σ: {np.mean(z < 2):.1%}")
    lines.append("")
    table = report["coverage_table"]
    any_row = next(iter(next(iter(table.values())).values()))
    n, band = any_row["n"], any_row["band_95"]
    lines.append(
        "## 90% interval coverage of the true labels" if markdown else "90% interval coverage:"
    )
    lines.append("")
    lines.append(
        f"n = {n} stars per label; a calibrated method lands in [{band[0]:.1%}, {band[1]:.1%}] "
        "95% of the time (binomial band); brackets: 95% Wilson interval of the coverage."
    )
    lines.append("")
    rows = []
    for method, labels in table.items():
        cells = [
            f"{r['coverage_90']:.1%} [{r['interval_95'][0]:.1%}, {r['interval_95'][1]:.1%}]"
            f" {'ok' if r['verdict'] == 'calibrated' else r['verdict'].upper()}"
            for r in labels.values()
        ]
        rows.append([method, *cells])
    lines += _table(head, rows, markdown)
    lines.append("")

    def flagged(verdict: str) -> list[str]:
        return [
            f"{method} {name} ({row['coverage_90']:.1%})"
            for method, labels in table.items()
            for name, row in labels.items()
            if row["verdict"] == verdict
        ]

    bad = flagged("under-covers")
    if bad:
        lines.append(
            "WARNING: under-coverage (outside the binomial band): " + ", ".join(bad) + ". "
            "These intervals are too narrow; do not read them as calibrated."
        )
    wide = flagged("over-covers")
    if wide:
        lines.append(
            "Over-coverage (above the binomial band): " + ", ".join(wide) + ". "
            "These intervals are wider than they need to be (conservative)."
        )
    if not bad and not wide:
        lines.append("Every 90% coverage is inside the binomial band.")
    elif not bad:
        lines.append("No method under-covers.")
    for path in [*report.get("plots", []), *report.get("files", [])]:
        lines.append(f"wrote {path}")
    return "\n".join(lines)


def _table(head: list[str], rows: list[list[str]], markdown: bool) -> list[str]:
    if markdown:
        return [
            "| " + " | ".join(head) + " |",
            "|" + "---|" * len(head),
            *("| " + " | ".join(r) + " |" for r in rows),
        ]
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return ["  " + fmt.format(*head), *("  " + fmt.format(*r) for r in rows)]


def main(argv: list[str] | None = None) -> None:
    defaults = PipelineConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for field in dataclasses.fields(PipelineConfig):
        flag = "--" + field.name.replace("_", "-")
        parser.add_argument(
            flag,
            type=type(getattr(defaults, field.name)),
            default=getattr(defaults, field.name),
            help="default: %(default)s",
        )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=Path("demo-output"),
        help="where the plots and report go (default: %(default)s)",
    )
    args = vars(parser.parse_args(argv))
    output_dir = args.pop("output_dir")
    report = run_pipeline(
        PipelineConfig(**args), output_dir=output_dir, progress=sys.stderr.isatty()
    )
    print(format_report(report))


if __name__ == "__main__":
    main()
