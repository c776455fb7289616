"""Spectra to stellar labels with calibrated uncertainties, three ways.

The pipeline crosses three orrery packages:

1. `orrery.lux`: draw a synthetic survey, train The Cannon on the labelled
   stars, and run its test step (`Cannon.infer_labels`) on held-out stars.
2. `orrery.sbi`: use the fitted Cannon as a simulator (labels -> spectrum plus
   noise), train an amortized `ConditionalFlowPosterior` over the labels, and
   sample the posterior of every held-out star in one vmapped call.
3. `orrery.ensemble`: an ensemble of randomised MAP fits per star
   (randomise-then-optimise: every member fits the spectrum plus its own noise
   draw), whose spread approximates the posterior width.

It prints a report (sizes, timings, label accuracy against the truth,
agreement between the three and the coverage of the SBI intervals) and writes
plots as PNGs. `make demo` runs it with the defaults; `--help` lists the flags.
The integration tests run `run_pipeline` at a smaller size.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
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


@dataclasses.dataclass
class PipelineConfig:
    """Sizes and settings of the pipeline (the defaults are the demo's)."""

    n_train: int = 2000
    n_test: int = 100
    n_pixels: int = 200
    snr: float = 50.0
    intrinsic_scatter: float = 0.005
    n_simulations: int = 50_000
    num_epochs: int = 60
    n_posterior_samples: int = 1000
    ensemble_size: int = 16
    ensemble_steps: int = 800
    seed: int = 0


@dataclasses.dataclass
class StarLabels:
    """Per-star label estimates: means and standard deviations, ``(n_test, n_labels)``."""

    mean: np.ndarray
    std: np.ndarray


def _noise_sd(flux: np.ndarray, snr: float, scatter: np.ndarray) -> np.ndarray:
    """The survey's noise model: per-pixel sd flux / snr, plus the Cannon's scatter."""
    return np.sqrt((np.abs(flux) / snr) ** 2 + scatter**2)


def _central_coverage(samples: np.ndarray, truth: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Fraction of (star, label) pairs whose truth lies in the central interval at each level."""
    lo = np.quantile(samples, 0.5 - levels / 2, axis=1)  # (levels, n, d)
    hi = np.quantile(samples, 0.5 + levels / 2, axis=1)
    inside = (truth[None] >= lo) & (truth[None] <= hi)
    return inside.mean(axis=(1, 2))


def simulate(cannon: Cannon, theta: np.ndarray, snr: float, rng: np.random.Generator):
    """The Cannon as a simulator: spectra and their noise sd for labels ``theta``."""
    clean = np.asarray(cannon.predict(theta))
    sd = _noise_sd(clean, snr, np.asarray(cannon.scatter))
    return clean + sd * rng.standard_normal(clean.shape), sd


def train_posterior(cannon: Cannon, bounds: np.ndarray, cfg: PipelineConfig, names):
    """Simulate from the Cannon over a uniform prior and train the flow posterior."""
    rng = np.random.default_rng(cfg.seed + 1)
    theta = rng.uniform(bounds[:, 0], bounds[:, 1], size=(cfg.n_simulations, len(bounds)))
    flux, sd = simulate(cannon, theta, cfg.snr, rng)
    dataset = SimulationDataset.from_arrays(
        theta,
        {"spectrum": flux},
        uncertainties={"spectrum": sd},
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
        num_epochs=cfg.num_epochs,
        use_cosine_schedule=True,
        seed=cfg.seed,
    )
    posterior.fit(dataset)
    return posterior


def sbi_labels(posterior, flux, sd, cfg: PipelineConfig) -> tuple[StarLabels, np.ndarray]:
    """Encode every held-out star in one pass and sample all posteriors in one call."""
    blocks = [
        [ObservationBlock("spectrum", f, uncertainties=s)] for f, s in zip(flux, sd, strict=True)
    ]
    encoded = posterior.batch_encode_observation(blocks)
    draws = posterior.batch_sample_posterior(encoded, cfg.n_posterior_samples, base_seed=cfg.seed)
    physical = np.asarray(posterior.space.to_physical(jnp.asarray(draws)))
    return StarLabels(physical.mean(axis=1), physical.std(axis=1, ddof=1)), physical


def ensemble_labels(
    cannon: Cannon, flux, sd, bounds, cfg: PipelineConfig, progress: bool = False
) -> StarLabels:
    """Randomise-then-optimise MAP ensemble over all held-out stars at once.

    Each member holds labels for every star (in a bounded tanh parametrisation)
    and its own fixed noise draw ``eps``; it maximises the Gaussian likelihood of
    ``flux + eps``. For a linear-Gaussian model the members are exact posterior
    draws; here they approximate the posterior spread.
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
    return StarLabels(members.mean(axis=0), members.std(axis=0, ddof=1))


def _z_agreement(a: StarLabels, b: StarLabels) -> np.ndarray:
    return np.abs(a.mean - b.mean) / np.sqrt(a.std**2 + b.std**2)


def run_pipeline(
    cfg: PipelineConfig, output_dir: Path | None = None, *, progress: bool = False
) -> dict[str, Any]:
    """Run the whole pipeline; return the report as a dict (and write plots when asked)."""
    timings: dict[str, float] = {}
    clock = time.perf_counter

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

    t = clock()
    cannon = Cannon(label_size=len(names), output_size=cfg.n_pixels).fit(
        survey.labels[train], survey.spectra[train], survey.ivar[train]
    )
    timings["cannon_fit"] = clock() - t
    t = clock()
    inferred = cannon.infer_labels(survey.spectra[test], survey.ivar[test])
    cannon_est = StarLabels(
        np.asarray(inferred.labels), np.sqrt(np.diagonal(np.asarray(inferred.covariance), 0, 1, 2))
    )
    timings["cannon_test_step"] = clock() - t

    # Observed held-out spectra with the survey's noise model (what the simulator assumes).
    obs_flux = survey.spectra[test]
    obs_sd = _noise_sd(
        np.asarray(cannon.predict(cannon_est.mean)), cfg.snr, np.asarray(cannon.scatter)
    )

    t = clock()
    posterior = train_posterior(cannon, bounds, cfg, names)
    timings["sbi_train"] = clock() - t
    t = clock()
    sbi_est, sbi_draws = sbi_labels(posterior, obs_flux, obs_sd, cfg)
    timings["sbi_sample"] = clock() - t

    t = clock()
    ens_est = ensemble_labels(cannon, obs_flux, obs_sd, bounds, cfg, progress)
    timings["ensemble"] = clock() - t

    coverage = _central_coverage(sbi_draws, truth, LEVELS)
    rmse = {
        method: np.sqrt(np.mean((est.mean - truth) ** 2, axis=0))
        for method, est in (("cannon", cannon_est), ("sbi", sbi_est), ("ensemble", ens_est))
    }
    report = {
        "sizes": {
            "n_train": cfg.n_train,
            "n_test": cfg.n_test,
            "n_pixels": cfg.n_pixels,
            "n_simulations": cfg.n_simulations,
            "ensemble_size": cfg.ensemble_size,
        },
        "label_names": names,
        "timings_s": timings,
        "rmse": rmse,
        "label_range": bounds[:, 1] - bounds[:, 0],
        "coverage_levels": LEVELS,
        "coverage": coverage,
        "coverage_90": float(coverage[np.argmin(np.abs(LEVELS - 0.9))]),
        "z_sbi_vs_cannon": _z_agreement(sbi_est, cannon_est),
        "z_sbi_vs_ensemble": _z_agreement(sbi_est, ens_est),
        "estimates": {"cannon": cannon_est, "sbi": sbi_est, "ensemble": ens_est},
        "truth": truth,
    }
    if output_dir is not None:
        report["plots"] = write_plots(report, sbi_draws, output_dir)
    return report


def write_plots(report: dict[str, Any], sbi_draws: np.ndarray, output_dir: Path) -> list[Path]:
    """One-to-one of the Cannon test step, a posterior corner plot and the coverage curve."""
    import matplotlib

    matplotlib.use("Agg")
    from orrery.lux.plot import one_to_one
    from orrery.sbi.diagnostics import corner, plot_coverage

    output_dir.mkdir(parents=True, exist_ok=True)
    names, truth = report["label_names"], report["truth"]
    paths = []
    fig = one_to_one(truth, report["estimates"]["cannon"].mean, names)
    fig = getattr(fig, "figure", fig)
    paths.append(output_dir / "cannon_one_to_one.png")
    fig.savefig(paths[-1], dpi=110, bbox_inches="tight")

    fig = corner(sbi_draws[0], labels=names, truths=truth[0])
    paths.append(output_dir / "posterior_corner_star0.png")
    fig.savefig(paths[-1], dpi=110, bbox_inches="tight")

    ax = plot_coverage(
        (report["coverage_levels"], report["coverage"]), label="SBI central intervals"
    )
    paths.append(output_dir / "coverage.png")
    ax.figure.savefig(paths[-1], dpi=110, bbox_inches="tight")
    return paths


def format_report(report: dict[str, Any]) -> str:
    """A readable text version of the report."""
    names = report["label_names"]
    lines = [
        "orrery stellar pipeline",
        "=" * 23,
        "sizes: " + ", ".join(f"{k}={v}" for k, v in report["sizes"].items()),
    ]
    lines.append("timings: " + ", ".join(f"{k} {v:.2f} s" for k, v in report["timings_s"].items()))
    lines.append("")
    lines.append("label RMSE against the truth (held-out stars):")
    lines.append(f"  {'':<10}" + "".join(f"{n:>12}" for n in names))
    for method, values in report["rmse"].items():
        lines.append(f"  {method:<10}" + "".join(f"{v:>12.4g}" for v in values))
    lines.append(f"  {'range':<10}" + "".join(f"{v:>12.4g}" for v in report["label_range"]))
    lines.append("")
    for key, title in (
        ("z_sbi_vs_cannon", "SBI vs Cannon"),
        ("z_sbi_vs_ensemble", "SBI vs ensemble"),
    ):
        z = report[key]
        lines.append(f"{title}: median |Δ|/σ = {np.median(z):.2f}, within 2σ: {np.mean(z < 2):.1%}")
    lines.append(f"SBI 90% interval coverage of the true labels: {report['coverage_90']:.1%}")
    for path in report.get("plots", []):
        lines.append(f"wrote {path}")
    return "\n".join(lines)


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
        help="where the plots go (default: %(default)s)",
    )
    args = vars(parser.parse_args(argv))
    output_dir = args.pop("output_dir")
    report = run_pipeline(PipelineConfig(**args), output_dir=output_dir, progress=True)
    print(format_report(report))


if __name__ == "__main__":
    main()
