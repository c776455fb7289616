"""Pipelines 1 and 2: spectra -> labels with The Cannon, an SBI posterior and an MAP ensemble.

Runs ``docs/examples/stellar_pipeline.py`` (the demo) once at a small size.
"""

import numpy as np
import pytest


@pytest.fixture(scope="module")
def report(example):
    sp = example("stellar_pipeline")
    cfg = sp.PipelineConfig(
        n_train=400,
        n_test=60,
        n_pixels=50,
        n_simulations=5000,
        num_epochs=15,
        n_posterior_samples=500,
        ensemble_size=8,
        ensemble_steps=400,
    )
    return sp.run_pipeline(cfg)


def test_cannon_recovers_labels_of_held_out_stars(report):
    # Within 5% of each label's range (Teff ~1500 K, logg 2.5 dex, [Fe/H] 1.4 dex).
    assert np.all(report["rmse"]["cannon"] < 0.05 * report["label_range"])


def test_sbi_posterior_means_agree_with_the_cannon_test_step(report):
    z = report["z_sbi_vs_cannon"]
    assert np.median(z) < 1.0
    assert np.mean(z < 2.0) > 0.9
    assert np.all(report["rmse"]["sbi"] < 0.06 * report["label_range"])


def test_sbi_90_percent_intervals_cover_the_true_labels(report):
    # 60 stars x 3 labels; the binomial sd at 90% is ~2.2%, stars make it lumpier.
    assert 0.80 <= report["coverage_90"] <= 0.97
    # The whole curve stays near the diagonal.
    assert np.max(np.abs(report["coverage"] - report["coverage_levels"])) < 0.12


def test_map_ensemble_agrees_with_the_sbi_posterior(report):
    z = report["z_sbi_vs_ensemble"]
    assert np.median(z) < 1.0
    assert np.mean(z < 2.0) > 0.9
    assert np.all(report["rmse"]["ensemble"] < 0.05 * report["label_range"])


@pytest.mark.gpu
@pytest.mark.slow
def test_stellar_pipeline_at_survey_scale(example):
    """Realistic sizes: 8,575 pixels (an APOGEE-like spectrum) and 10^5 simulations."""
    sp = example("stellar_pipeline")
    cfg = sp.PipelineConfig(
        n_train=2000, n_test=300, n_pixels=8575, n_simulations=100_000, num_epochs=30
    )
    r = sp.run_pipeline(cfg)
    print(sp.format_report(r))
    assert np.all(r["rmse"]["cannon"] < 0.03 * r["label_range"])
    assert np.mean(r["z_sbi_vs_cannon"] < 2.0) > 0.9
    assert 0.85 <= r["coverage_90"] <= 0.95
    assert np.mean(r["z_sbi_vs_ensemble"] < 2.0) > 0.9
