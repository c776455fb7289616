"""Bad input at every public function of orrery.interface: an OrreryError naming the argument."""

import warnings

import numpy as np
import pytest

from orrery import interface as oi
from orrery.interface import (
    ArtifactError,
    ConfigError,
    Draws,
    MissingDependencyError,
    ShapeError,
    ValueDomainError,
)

D = Draws({"a": np.zeros((2, 5))})

CASES = [
    # validation helpers
    (lambda: oi.check_shape(np.zeros(3), None, "x"), ConfigError, "expected"),
    (lambda: oi.check_shape(np.zeros(3), "ab", "x"), ConfigError, "expected"),
    (lambda: oi.check_ndim(np.zeros(3), "a", "x"), ConfigError, "ndim"),
    (lambda: oi.check_ndim(np.zeros(3), 2, "x"), ShapeError, "^x: expected 2"),
    (lambda: oi.check_finite([1.0, np.inf], "x"), ValueDomainError, r"^x: .*index \(1,\)"),
    (lambda: oi.check_finite(np.array(["1", "nan"]), "y"), ValueDomainError, "^y: expected fin"),
    (lambda: oi.check_finite(np.array(["1", "a"]), "y"), ValueDomainError, "^y: expected num"),
    (lambda: oi.check_finite(np.array([1.0, None]), "y"), ValueDomainError, "^y: expected"),
    (lambda: oi.check_finite(np.array([1j], dtype=object), "y"), ValueDomainError, "^y:"),
    (lambda: oi.check_finite(np.zeros(2, "M8[D]"), "t"), ValueDomainError, "dtype datetime"),
    (lambda: oi.check_nonnegative(np.array(["-1"]), "s"), ValueDomainError, "^s: expected non"),
    (lambda: oi.check_positive_int(1.5, "n"), ConfigError, "^n: expected an integer"),
    (lambda: oi.check_positive_int(True, "n"), ConfigError, "^n: expected an integer"),
    (lambda: oi.check_choice("adma", ["adam"], "opt"), ConfigError, "did you mean 'adam'"),
    (lambda: oi.check_positive_float(0.0, "lr"), ConfigError, r"^lr: expected a finite number > 0"),
    (lambda: oi.check_positive_float(np.nan, "lr"), ConfigError, r"^lr: .*> 0, got nan$"),
    (lambda: oi.check_positive_float(-np.inf, "lr"), ConfigError, r"^lr: .*got -inf$"),
    (lambda: oi.check_positive_float("1e-3", "lr"), ConfigError, r"^lr: .*got '1e-3'$"),
    (lambda: oi.check_positive_float(True, "lr"), ConfigError, r"^lr: .*got True$"),
    (lambda: oi.check_positive_float(np.ones(2), "lr"), ConfigError, r"^lr: .*got array"),
    (lambda: oi.check_positive_float(np.array(1j), "lr"), ConfigError, r"^lr: expected"),
    (lambda: oi.check_nonnegative_float(-1e-9, "w"), ConfigError, r"^w: .*number >= 0, got -1e-09"),
    (lambda: oi.check_nonnegative_float(None, "w"), ConfigError, r"^w: .*>= 0, got None$"),
    (lambda: oi.check_fraction(0.0, "f"), ConfigError, r"^f: .*number in \(0, 1\], got 0\.0$"),
    (lambda: oi.check_fraction(1.0 + 1e-12, "f"), ConfigError, r"^f: .*in \(0, 1\]"),
    (lambda: oi.check_fraction(1, "f", include_one=False), ConfigError, r"in \(0, 1\), got 1\.0"),
    (lambda: oi.check_fraction(-0.1, "f", include_zero=True), ConfigError, r"in \[0, 1\], got"),
    (lambda: oi.check_float(5, "t", maximum=2), ConfigError, r"^t: .*number <= 2, got 5\.0$"),
    (lambda: oi.check_float(2, "t", maximum=2, include_maximum=False), ConfigError, r"< 2, got"),
    (lambda: oi.check_float(np.inf, "t"), ConfigError, r"^t: .*\(any finite value\), got inf"),
    (lambda: oi.require("no_such_mod_xyz", extra="e", feature="f"), MissingDependencyError, "e"),
    # seeds
    (lambda: oi.as_numpy_rng(-1), ConfigError, "^seed"),
    (lambda: oi.as_numpy_rng(1.5), ConfigError, "^seed"),
    (lambda: oi.as_int_seed("7"), ConfigError, "^seed"),
    (
        lambda: oi.as_int_seed(2**40),
        ConfigError,
        r"^seed: expected an integer in \[0, 2\*\*31 - 1\]",
    ),
    (lambda: oi.as_int_seed(np.uint64(2**31)), ConfigError, r"^seed: .*got 2147483648;"),
    # element names
    (lambda: oi.element_names(3, (2,)), ConfigError, "^name"),
    (lambda: oi.element_names("w", (-1,)), ShapeError, "^shape"),
    (lambda: oi.element_names("w", ("a",)), ShapeError, "^shape"),
    (lambda: oi.parse_element_name(3), ConfigError, "^label"),
    # Draws
    (lambda: Draws(None), ConfigError, "^samples"),
    (lambda: Draws({"a": np.array([["x"] * 5] * 2)}), ShapeError, r"samples\['a'\].*dtype <U1"),
    (lambda: Draws({"a": np.zeros(5)}), ShapeError, r"^samples\['a'\]"),
    (lambda: Draws({1: np.zeros((2, 5))}), ConfigError, "^names"),
    (lambda: Draws.from_matrix(np.zeros((4, 2)), "ab"), ConfigError, "^names"),
    (lambda: Draws.from_matrix(np.zeros((4, 2)), ["a", "b"], n_chains="2"), ConfigError, "n_ch"),
    (lambda: Draws.from_matrix(np.zeros((4, 2)), ["a", "b"], n_chains=3), ShapeError, "n_ch"),
    (lambda: D.subset(["zz"]), ConfigError, r"^names: no variable\(s\) \['zz'\]"),
    (lambda: D.quantile("x"), ConfigError, "^q: expected quantiles"),
    (lambda: D.quantile(np.nan), ConfigError, "^q: expected quantiles"),
    (lambda: D.summary(quantiles=(2.0,)), ConfigError, "^quantiles: expected"),
    (lambda: D.std(ddof="x"), ConfigError, "^ddof"),
    (lambda: Draws.concat([D, 1]), ConfigError, r"^items\[1\]: expected Draws"),
    (lambda: Draws.concat([], dim="chain"), ConfigError, "^items"),
    (lambda: Draws.concat([D], dim="x"), ConfigError, "^dim"),
    # artifacts
    (lambda: oi.save_artifact(None, kind="k", config={}, arrays={}), ArtifactError, "^path"),
    (lambda: oi.save_artifact("x", kind=3, config={}, arrays={}), ArtifactError, "^kind"),
    (lambda: oi.save_artifact("x", kind="k", config=None, arrays={}), ArtifactError, "^config"),
    (lambda: oi.save_artifact("x", kind="k", config={}, arrays=[1]), ArtifactError, "^arrays"),
    (
        lambda: oi.save_artifact("x", kind="k", config={}, arrays={}, metadata=[1]),
        ArtifactError,
        "^metadata",
    ),
    (lambda: oi.save_artifact("x", kind="k", config={}, arrays={"": 1}), ArtifactError, "keys"),
    (lambda: oi.load_artifact(None), ArtifactError, "^path"),
    (lambda: oi.load_artifact("x", max_bytes=-1), ConfigError, "^max_bytes"),
    (lambda: oi.load_artifact("x", max_bytes=1.5), ConfigError, "^max_bytes"),
    (lambda: oi.check_json_safe({"a": {1j}}), ArtifactError, r"config\['a'\]"),
    (lambda: oi.Artifact("k", {}, {}).config_value(3, int), ConfigError, "^key"),
    (lambda: oi.Artifact("k", {}, {"w": 1.0}).array("w", kind=None), ConfigError, "^kind"),
    (lambda: oi.check_json_safe(np.complex64(1j), "x"), ArtifactError, "^x is a complex"),
]


@pytest.mark.parametrize(("call", "error", "match"), CASES)
def test_bad_input_raises_a_named_orrery_error(call, error, match, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(error, match=match) as info:
        call()
    assert type(info.value) is error


def test_check_finite_converts_numeric_strings_and_leaves_integers_alone():
    out = oi.check_finite(np.array(["1.5", " 2 "]), "labels")
    assert out.dtype == np.float64 and out.tolist() == [1.5, 2.0]
    ints = np.arange(3, dtype=np.int16)
    assert oi.check_finite(ints, "n") is ints
    assert oi.check_finite(np.array([True]), "b").dtype == bool
    assert oi.check_finite(np.array([1, 2.5], dtype=object), "o").dtype == np.float64


def test_draws_load_refuses_an_incomplete_artifact(tmp_path):
    D.save(tmp_path / "d")
    meta = tmp_path / "d" / "metadata.json"
    meta.write_text(meta.read_text().replace('"names"', '"nomen"'))
    with pytest.raises(ArtifactError, match=r"metadata\.json: config key 'names' is missing"):
        Draws.load(tmp_path / "d")


def test_draws_statistics_of_nonfinite_draws_warn_naming_variables_and_counts():
    mu = np.zeros((2, 5))
    mu[0, 1] = mu[1, 3] = np.nan
    w = np.ones((2, 5, 3))
    w[1, 0, 2] = np.inf
    d = Draws({"mu": mu, "w": w, "k": np.ones((2, 5), dtype=np.int64), "ok": np.ones((2, 5))})
    calls = {
        "mean": d.mean,
        "std": d.std,
        "quantile": lambda: d.quantile(0.5),
        "summary": d.summary,
    }
    pattern = r"Draws\.{}: 3 non-finite draw value\(s\) \(NaN or inf\) in 'mu' \(2\), 'w' \(1\);"
    for method, call in calls.items():
        with pytest.warns(RuntimeWarning, match=pattern.format(method)) as record:
            out = call()
        assert record[0].filename == __file__  # points at the caller
        if method == "summary":
            assert np.isnan(out["mean"][0])  # the contract: kept, the statistic is NaN
        else:
            assert np.isnan(out["mu"]).all() and np.isfinite(out["ok"]).all()
    clean = d.subset(["ok", "k"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clean.summary(), clean.mean(), clean.std(), clean.quantile(0.5)


def test_as_int_seed_keeps_its_documented_range():
    assert oi.as_int_seed(2**31 - 1) == 2**31 - 1  # the largest promised seed passes unchanged
    assert oi.as_int_seed(np.int64(0)) == 0
    assert oi.as_numpy_rng(2**40).integers(10) == np.random.default_rng(2**40).integers(10)
    rng = np.random.default_rng(0)
    assert all(0 <= oi.as_int_seed(rng) < 2**31 for _ in range(100))


def test_float_checks_accept_real_scalars_of_every_kind_and_return_floats():
    for value in (3, 3.0, np.int8(3), np.float32(3.0), np.array(3.0), np.array(3, np.int64)):
        out = oi.check_positive_float(value, "x")
        assert out == 3.0 and type(out) is float
    assert oi.check_nonnegative_float(0, "w") == 0.0
    assert oi.check_fraction(1, "f") == 1.0
    assert oi.check_fraction(0, "f", include_zero=True, include_one=False) == 0.0
    assert oi.check_float(-7.5, "t") == -7.5
    assert oi.check_float(2, "t", minimum=2, maximum=2) == 2.0


def test_the_error_table_names_every_error_class_and_every_check():
    doc = oi.errors.__doc__
    for name in oi.errors.__all__:
        if name != "OrreryError":
            assert f"`{name}`" in doc, name
    checks = [n for n in oi.validation.__all__ if n.startswith("check_")]
    for name in [*checks, "require"]:
        assert f"`{name}`" in doc, name
