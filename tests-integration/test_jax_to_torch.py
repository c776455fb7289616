"""Pipeline 4: JAX data and Draws, saved as artifacts, train a torch surrogate without JAX."""

import numpy as np
import pytest


@pytest.fixture(scope="module")
def result(example, tmp_path_factory):
    return example("jax_to_torch").run(tmp_path_factory.mktemp("jax_to_torch"))


def test_torch_side_never_imports_jax(result):
    assert result["jax_imported"] is False


def test_jax_ensemble_draws_match_the_closed_form_posterior(result):
    exact_mean, exact_std = np.array(result["exact_mean"]), np.array(result["exact_std"])
    # 64 members: the mean's Monte Carlo error is exact_std / 8.
    np.testing.assert_array_less(
        np.abs(np.array(result["ensemble_mean"]) - exact_mean), 0.5 * exact_std
    )
    np.testing.assert_allclose(result["ensemble_std"], exact_std, rtol=0.35)


def test_torch_variational_posterior_matches_closed_form_and_ensemble(result):
    exact_mean, exact_std = np.array(result["exact_mean"]), np.array(result["exact_std"])
    np.testing.assert_array_less(np.abs(np.array(result["torch_mean"]) - exact_mean), exact_std)
    np.testing.assert_allclose(result["torch_std"], exact_std, rtol=0.3)
    assert result["predictive_max_abs_diff"] < 0.05
