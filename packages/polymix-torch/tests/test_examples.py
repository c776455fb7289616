"""The worked example in ``examples/`` runs as documented and meets its accuracy claims."""

import importlib.util
from pathlib import Path

import pytest
import torch

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "worked_example.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("polymix_worked_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_regression_band_covers_about_ninety_percent(example):
    result = example.regression_coverage(num_train=1000, num_test=1000, steps=1000, seed=0)
    # 1000 held-out points: the binomial standard error of a 90% coverage is ~0.01
    assert 0.86 <= result["coverage_90"] <= 0.94, result
    assert abs(result["noise_std"] - 0.1) < 0.02, result
    assert result["rmse_vs_truth"] < 0.06, result


def test_ishigami_sobol_indices_within_two_percent(example):
    sobol = example.ishigami_sobol(degree=8, num_points=2000, seed=0)
    first, total = example.ishigami_sobol_analytic()
    got_first, got_total = sobol.first_order[0].tolist(), sobol.total[0].tolist()
    for i in range(3):
        for got, want in ((got_first[i], first[i]), (got_total[i], total[i])):
            if want == 0.0:
                assert abs(got) < 0.02 * max(first)
            else:
                assert abs(got - want) <= 0.02 * want, (i, got, want)


def test_ishigami_sobol_per_posterior_sample(example):
    # treat jittered least-squares coefficients as posterior samples: one set of indices each
    sobol = example.ishigami_sobol(degree=6, num_points=600, seed=1)
    assert sobol.first_order.shape == (1, 3)
    pce = example.PolynomialChaosExpansion(3, degree=6)
    coef = torch.randn(4, pce.num_params(), dtype=torch.float64)
    assert pce.sobol_indices(coef).total.shape == (4, 1, 3)
