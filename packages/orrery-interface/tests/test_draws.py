"""Draws: construction, exact round trips, statistics, concatenation, persistence."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from orrery.interface import ConfigError, Draws, MissingDependencyError, ShapeError

names_st = st.lists(
    st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True), min_size=1, max_size=4, unique=True
)
event_shape_st = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=3)


@st.composite
def draws_st(draw):
    names = draw(names_st)
    chains = draw(st.integers(1, 3))
    n = draw(st.integers(1, 5))
    samples = {}
    for name in names:
        shape = (chains, n, *draw(event_shape_st))
        samples[name] = draw(
            hnp.arrays(np.float64, shape, elements=st.floats(-1e6, 1e6, allow_nan=False))
        )
    return Draws(samples)


def _same(a: Draws, b: Draws) -> None:
    assert a.names == b.names
    for k in a.names:
        assert a[k].shape == b[k].shape
        np.testing.assert_array_equal(a[k], b[k])


@settings(max_examples=60, deadline=None)
@given(draws_st())
def test_matrix_round_trip_is_exact(d):
    matrix, names = d.to_matrix()
    assert matrix.shape == (d.n_chains * d.n_draws, len(names))
    _same(Draws.from_matrix(matrix, names, n_chains=d.n_chains), d)
    cube, names3 = d.to_matrix(keep_chains=True)
    assert names3 == names
    _same(Draws.from_matrix(cube, names), d)


@settings(max_examples=40, deadline=None)
@given(draws_st(), st.randoms(use_true_random=False))
def test_from_matrix_accepts_columns_in_any_order(d, rnd):
    matrix, names = d.to_matrix()
    order = list(range(len(names)))
    rnd.shuffle(order)
    back = Draws.from_matrix(matrix[:, order], [names[i] for i in order], n_chains=d.n_chains)
    assert sorted(back.names) == sorted(d.names)
    for k in d.names:
        np.testing.assert_array_equal(back[k], d[k])


@settings(max_examples=40, deadline=None)
@given(draws_st())
def test_dict_round_trip_without_chains(d):
    single = Draws({k: v[:1] for k, v in d.items()})
    back = Draws.from_dict({k: v[0] for k, v in single.items()}, has_chains=False)
    _same(back, single)


def test_element_names_and_summary_columns():
    rng = np.random.default_rng(0)
    d = Draws({"mu": rng.normal(size=(4, 500)), "w": rng.normal(2.0, 3.0, size=(4, 500, 2, 3))})
    _, names = d.to_matrix()
    assert names[:3] == ["mu", "w[0,0]", "w[0,1]"]
    s = d.summary()
    assert list(s.columns) == ["mean", "sd", "5%", "50%", "95%", "r_hat", "ess"]
    assert s.names == names
    np.testing.assert_allclose(s["mean"][1:], 2.0, atol=0.3)
    np.testing.assert_allclose(s["sd"][1:], 3.0, rtol=0.1)
    # Independent draws: R-hat ~ 1, ESS close to the number of draws.
    assert np.all(np.abs(s["r_hat"] - 1) < 0.02)
    assert np.all(s["ess"] > 1200)
    text = str(s)
    assert "w[1,2]" in text and "r_hat" in text


def test_rhat_flags_chains_that_disagree_and_ess_sees_autocorrelation():
    rng = np.random.default_rng(1)
    stuck = rng.normal(size=(4, 400)) + np.arange(4)[:, None] * 3.0
    assert Draws({"x": stuck}).summary()["r_hat"][0] > 1.5
    # AR(1) with rho = 0.9: ESS ≈ N (1 - rho) / (1 + rho) ≈ N / 19.
    x = np.zeros((4, 4000))
    eps = rng.normal(size=x.shape)
    for t in range(1, x.shape[1]):
        x[:, t] = 0.9 * x[:, t - 1] + eps[:, t]
    ess = Draws({"x": x}).summary()["ess"][0]
    assert 16000 / 19 * 0.7 < ess < 16000 / 19 * 1.3


def test_ess_of_anticorrelated_chains_is_the_cap_not_negative():
    # lag-1 autocorrelation below -1: no positive pair; Stan floors tau at 1 / log10(m n)
    rng = np.random.default_rng(2)
    x = np.tile([1.0, -1.0], (4, 50)) + 1e-3 * rng.normal(size=(4, 100))
    ess = Draws({"x": x}).summary()["ess"][0]
    assert ess == pytest.approx(400 * np.log10(400), rel=1e-12)


def _ar1(rng, phi, chains, draws):
    x = np.zeros((chains, draws))
    eps = rng.normal(size=x.shape)
    for t in range(1, draws):
        x[:, t] = phi * x[:, t - 1] + eps[:, t]
    return x


@pytest.mark.parametrize("phi", [-0.95, -0.5, 0.0, 0.7, 0.99])
@pytest.mark.parametrize("draws", [4, 7, 10, 51, 300])
def test_rhat_and_ess_equal_arviz_split_estimators(phi, draws):
    az = pytest.importorskip("arviz")
    x = _ar1(np.random.default_rng(draws), phi, 3, draws)
    s = Draws({"x": x}).summary()
    assert s["r_hat"][0] == pytest.approx(float(az.rhat(x, method="split")), rel=1e-12)
    assert s["ess"][0] == pytest.approx(float(az.ess(x, method="mean")), rel=1e-12)


def test_single_chain_summary_has_no_convergence_columns():
    s = Draws({"x": np.arange(10.0)[None]}).summary(quantiles=(0.5,))
    assert list(s.columns) == ["mean", "sd", "50%"]
    assert s.to_dict()["x"]["50%"] == pytest.approx(4.5)


def test_mean_std_quantile():
    x = np.arange(24.0).reshape(2, 12)
    d = Draws({"x": x})
    assert d.mean()["x"] == pytest.approx(x.mean())
    assert d.std()["x"] == pytest.approx(x.std(ddof=1))
    q = d.quantile([0.25, 0.75])["x"]
    np.testing.assert_allclose(q, np.quantile(x, [0.25, 0.75]))
    with pytest.raises(ConfigError, match="q"):
        d.quantile(1.5)


def test_concat_over_chains_and_draws():
    a = Draws({"x": np.zeros((2, 5, 3))})
    b = Draws({"x": np.ones((1, 5, 3))})
    assert Draws.concat([a, b], dim="chain").n_chains == 3
    c = Draws.concat([a, Draws({"x": np.ones((2, 4, 3))})], dim="draw")
    assert (c.n_chains, c.n_draws) == (2, 9)
    with pytest.raises(ShapeError, match=r"items\[1\]"):
        Draws.concat([a, Draws({"x": np.ones((2, 5, 4))})])
    with pytest.raises(ConfigError, match="dim"):
        Draws.concat([a], dim="member")


def test_stacked_and_subset_and_mapping_protocol():
    d = Draws({"a": np.zeros((2, 3)), "b": np.ones((2, 3, 4))})
    assert d.stacked()["b"].shape == (6, 4)
    assert d.subset(["b"]).names == ["b"]
    assert "a" in d and len(d) == 2 and list(d) == ["a", "b"]
    assert d.shapes == {"a": (), "b": (4,)}
    with pytest.raises(KeyError, match="have"):
        d["c"]


def test_repr_is_readable():
    r = repr(Draws({"mu": np.zeros((2, 7)), "w": np.zeros((2, 7, 3))}))
    assert r == "Draws(chains=2, draws=7; mu: float64, w: float64[3])"


@pytest.mark.parametrize(
    ("samples", "match"),
    [
        ({"x": np.zeros(5)}, r"samples\['x'\].*\(chain, draw"),
        ({"x": np.zeros((2, 5)), "y": np.zeros((3, 5))}, r"samples\['y'\].*\(2, 5\)"),
        ({"x": np.zeros((2, 0))}, r"samples\['x'\]: zero-size"),
        ({"x": np.array([[object()]])}, r"samples\['x'\].*object"),
    ],
)
def test_bad_samples_name_the_variable(samples, match):
    with pytest.raises(ShapeError, match=match):
        Draws(samples)


def test_bad_names_are_rejected():
    with pytest.raises(ConfigError, match="names"):
        Draws({"w[0]": np.zeros((1, 2))})
    with pytest.raises(ConfigError, match="samples"):
        Draws({})
    with pytest.raises(ShapeError, match="names: expected 2"):
        Draws.from_matrix(np.zeros((4, 2)), ["a"])
    with pytest.raises(ConfigError, match="'a' appears more than once"):
        Draws.from_matrix(np.zeros((4, 2)), ["a", "a"])
    with pytest.raises(ConfigError, match=r"variable 'w' with shape \(3,\) needs 3"):
        Draws.from_matrix(np.zeros((4, 2)), ["w[0]", "w[2]"])
    with pytest.raises(ShapeError, match="n_chains"):
        Draws.from_matrix(np.zeros((5, 2)), ["a", "b"], n_chains=2)


def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    d = Draws({"a": rng.normal(size=(2, 4)), "b": rng.integers(0, 9, size=(2, 4, 3))})
    d.save(tmp_path / "draws", metadata={"source": "test"})
    _same(Draws.load(tmp_path / "draws"), d)


def test_to_arviz_explains_the_missing_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "arviz", None)
    with pytest.raises(MissingDependencyError, match=r"orrery-interface\[arviz\]"):
        Draws({"x": np.zeros((1, 3))}).to_arviz()


def test_to_arviz_when_installed():
    pytest.importorskip("arviz")
    rng = np.random.default_rng(0)
    idata = Draws({"mu": rng.normal(size=(2, 50)), "w": rng.normal(size=(2, 50, 3))}).to_arviz()
    post = idata["posterior"] if not hasattr(idata, "posterior") else idata.posterior
    assert post["w"].shape == (2, 50, 3)
