"""Pipelines 1 and 2: spectra -> labels with The Cannon, an SBI posterior and an MAP ensemble.

Runs ``docs/examples/stellar_pipeline.py`` (the demo) once at a small size.
"""

import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def run(example, tmp_path_factory):
    sp = example("stellar_pipeline")
    cfg = sp.PipelineConfig(
        n_train=400,
        n_test=60,
        n_pixels=50,
        n_simulations=5000,
        num_epochs=15,
        n_posterior_samples=500,
        ensemble_size=19,
        ensemble_steps=400,
    )
    out = tmp_path_factory.mktemp("demo-output")
    return sp, sp.run_pipeline(cfg, output_dir=out), out


@pytest.fixture(scope="module")
def report(run):
    return run[1]


def test_cannon_recovers_labels_of_held_out_stars(report):
    # Within 5% of each label's range (Teff ~1500 K, logg 2.5 dex, [Fe/H] 1.4 dex).
    assert np.all(report["rmse"]["cannon"] < 0.05 * report["label_range"])


def test_sbi_posterior_means_agree_with_the_cannon_test_step(report):
    z = report["z_sbi_vs_cannon"]
    assert np.median(z) < 1.0
    assert np.mean(z < 2.0) > 0.9
    assert np.all(report["rmse"]["sbi"] < 0.06 * report["label_range"])


def test_sbi_and_ensemble_90_percent_intervals_are_calibrated_per_label(report):
    # 60 stars per label: a calibrated method lands in the binomial band [81.7%, 96.7%].
    table = report["coverage_table"]
    for method in ("sbi", "ensemble"):
        for name, row in table[method].items():
            lo, hi = row["band_95"]
            assert lo <= row["coverage_90"] <= hi, (method, name, row)
            assert row["verdict"] == "calibrated"
    # The SBI curve stays near the diagonal at every level.
    assert np.max(np.abs(report["coverage"] - report["coverage_levels"])) < 0.12


def test_map_ensemble_agrees_with_the_sbi_posterior(report):
    z = report["z_sbi_vs_ensemble"]
    assert np.median(z) < 1.0
    assert np.mean(z < 2.0) > 0.9
    assert np.all(report["rmse"]["ensemble"] < 0.05 * report["label_range"])


def test_report_files_and_plots_are_written(run):
    _, report, out = run
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"cannon", "sbi", "ensemble"}
    for labels in summary.values():
        assert set(labels) == set(report["label_names"])
        for row in labels.values():
            assert row["n"] == 60 and 0.0 <= row["coverage_90"] <= 1.0
    md = (out / "report.md").read_text()
    assert "90% interval coverage" in md and "| sbi |" in md
    for name in ("one_to_one.png", "coverage.png", "posterior_corner_star0.png"):
        assert (out / name).stat().st_size > 10_000


def test_report_says_plainly_when_a_method_under_covers(run):
    sp, report, _ = run
    truth = report["truth"]
    narrow = sp.StarLabels(truth + 1.0, np.ones_like(truth), truth + 0.5, truth + 1.5)
    table = sp._coverage_table({"overconfident": narrow}, truth, report["label_names"])
    assert all(row["verdict"] == "under-covers" for row in table["overconfident"].values())
    text = sp.format_report({**report, "coverage_table": table, "plots": [], "files": []})
    assert "WARNING: under-coverage" in text and "overconfident teff (0.0%)" in text


def test_report_never_calls_over_coverage_calibrated(run):
    sp, report, _ = run
    truth = report["truth"]
    wide = sp.StarLabels(truth, np.ones_like(truth), truth - 1e6, truth + 1e6)
    table = sp._coverage_table({"wide": wide}, truth, report["label_names"])
    assert all(row["verdict"] == "over-covers" for row in table["wide"].values())
    text = sp.format_report({**report, "coverage_table": table, "plots": [], "files": []})
    assert "Over-coverage (above the binomial band): wide teff (100.0%)" in text
    assert "inside the binomial band" not in text


def test_binomial_band_and_ensemble_size_check(example):
    sp = example("stellar_pipeline")
    lo, hi = sp.binomial_band(300)
    assert 0.86 <= lo < 0.9 < hi <= 0.94
    with pytest.raises(ValueError, match="ensemble_size"):
        sp.PipelineConfig(ensemble_size=16)


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
    for method in ("sbi", "ensemble"):
        assert all(row["verdict"] == "calibrated" for row in r["coverage_table"][method].values())
    assert np.mean(r["z_sbi_vs_ensemble"] < 2.0) > 0.9
