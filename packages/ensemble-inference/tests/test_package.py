"""The distribution installs as a subpackage of the implicit `orrery` namespace."""

import importlib.metadata

import orrery
import orrery.ensemble as pkg


def test_version_matches_distribution_metadata():
    assert pkg.__version__ == importlib.metadata.version("ensemble-inference")


def test_orrery_is_an_implicit_namespace_package():
    assert getattr(orrery, "__file__", None) is None
    assert not hasattr(orrery, "__all__")


def test_public_api_is_declared():
    assert "__version__" in pkg.__all__
    for name in pkg.__all__:
        assert hasattr(pkg, name), name


def _params(fn):
    import inspect

    sig = inspect.signature(fn)
    return [
        (p.name, p.kind.name, None if p.default is inspect.Parameter.empty else p.default)
        for p in sig.parameters.values()
    ]


def test_upstream_names_and_signatures_are_kept():
    """The pyrox.inference surface: names, argument order, keyword-only markers, defaults."""
    kw, pos, var = "KEYWORD_ONLY", "POSITIONAL_OR_KEYWORD", "VAR_POSITIONAL"
    assert _params(pkg.ensemble_init) == [
        ("init_fn", pos, None),
        ("optimizer", pos, None),
        ("ensemble_size", kw, None),
        ("seed", kw, None),
    ]
    assert _params(pkg.ensemble_loss) == [
        ("log_joint", pos, None),
        ("prior_weight", kw, 1.0),
        ("scale", kw, 1.0),
    ]
    assert _params(pkg.ensemble_step)[:7] == [
        ("state", pos, None),
        ("x_batch", pos, None),
        ("y_batch", pos, None),
        ("log_joint", kw, None),
        ("optimizer", kw, None),
        ("prior_weight", kw, 1.0),
        ("scale", kw, 1.0),
    ]
    assert _params(pkg.ensemble_map)[:10] == [
        ("log_joint", pos, None),
        ("init_fn", pos, None),
        ("ensemble_size", kw, None),
        ("num_epochs", kw, None),
        ("data", kw, None),
        ("seed", kw, None),
        ("batch_size", kw, None),
        ("learning_rate", kw, 5e-3),
        ("prior_weight", kw, 1.0),
        ("optimizer", kw, None),
    ]
    assert _params(pkg.ensemble_vi)[:10] == [
        ("model_fn", pos, None),
        ("guide_fn", pos, None),
        ("ensemble_size", kw, None),
        ("num_epochs", kw, None),
        ("data", kw, None),
        ("seed", kw, None),
        ("kl_weight", kw, 1.0),
        ("learning_rate", kw, 5e-3),
        ("optimizer", kw, None),
        ("num_particles", kw, 1),
    ]
    assert _params(pkg.ensemble_predict)[:3] == [
        ("params_stacked", pos, None),
        ("predict_fn", pos, None),
        ("x_new", pos, None),
    ]
    assert _params(pkg.EnsembleMAP.run)[:6] == [
        ("self", pos, None),
        ("seed", pos, None),
        ("num_epochs", pos, None),
        ("x", pos, None),
        ("y", pos, None),
        ("batch_size", kw, None),
    ]
    assert _params(pkg.EnsembleVI.run)[:4] == [
        ("self", pos, None),
        ("seed", pos, None),
        ("num_epochs", pos, None),
        ("args", var, None),
    ]
    assert pkg.EnsembleState._fields == ("params", "opt_state")
    assert pkg.EnsembleResult._fields[:2] == ("params", "losses")
    defaults = {
        f: pkg.EnsembleMAP.__dataclass_fields__[f].default
        for f in ("ensemble_size", "prior_weight")
    }
    assert defaults == {"ensemble_size": 16, "prior_weight": 1.0}
    vi_fields = pkg.EnsembleVI.__dataclass_fields__
    assert [vi_fields[f].default for f in ("ensemble_size", "kl_weight", "num_particles")] == [
        16,
        1.0,
        1,
    ]
