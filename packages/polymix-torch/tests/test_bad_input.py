"""Bad input at the public boundary raises the documented `OrreryError` subclass.

Each case names the exact error class and a fragment of the message (which
names the argument). The second half tampers with saved artifacts: every one
is refused with an `ArtifactError` before a module is built.
"""

import copy
import math
import warnings

import numpy as np
import pytest
import torch

from orrery.interface import (
    ArtifactError,
    ConfigError,
    OrreryError,
    ShapeError,
    ValueDomainError,
    load_artifact,
    save_artifact,
)
from orrery.polymix import (
    DeterministicGroup,
    GatingNetwork,
    GaussianGroup,
    GaussianPrior,
    IIDGaussianGroup,
    IIDGaussianPrior,
    LangevinGroup,
    LaplacePrior,
    LowRankGaussianGroup,
    MixtureOfExperts,
    NeuralNetwork,
    PolynomialChaosExpansion,
    StochasticModel,
    legendre_polynomial_p,
    load,
    predictive_summary,
    save,
    to_draws,
)
from orrery.polymix.io import ARTIFACT_KIND
from orrery.polymix.surrogate_models import total_order_indices


def _model() -> StochasticModel:
    pce = PolynomialChaosExpansion(2, 1, 2)
    return StochasticModel(pce, [GaussianGroup("a", 4), IIDGaussianGroup("b", 2)])


CASES = [
    # surrogates
    (lambda: NeuralNetwork(0), ConfigError, "num_inputs"),
    (lambda: NeuralNetwork(2, width="8"), ConfigError, "width"),
    (lambda: NeuralNetwork(2, depth=-1), ConfigError, "depth"),
    (lambda: NeuralNetwork(2, activation=3), ConfigError, "activation"),
    (lambda: PolynomialChaosExpansion(2, 1, -1), ConfigError, "degree"),
    (lambda: PolynomialChaosExpansion(2, 1.5), ConfigError, "num_outputs"),
    (lambda: GatingNetwork(1, 0), ConfigError, "num_outputs"),
    (lambda: MixtureOfExperts(NeuralNetwork(1), GatingNetwork(1, 1)), ConfigError, "experts"),
    (lambda: MixtureOfExperts([NeuralNetwork(1)], "gate"), ConfigError, "gating_network"),
    (lambda: NeuralNetwork(2)([[0.0, 1.0]], torch.zeros(1, 65)), ShapeError, "x"),
    (lambda: NeuralNetwork(2)(torch.zeros(3, 3), torch.zeros(1, 65)), ShapeError, "x"),
    (lambda: NeuralNetwork(2)(torch.zeros(3, 2), torch.zeros(1, 64)), ShapeError, "params"),
    (lambda: NeuralNetwork(2)(torch.zeros(3, 2), torch.zeros(65)), ShapeError, "params"),
    (
        lambda: NeuralNetwork(2)(torch.zeros(3, 2, dtype=torch.float64), torch.zeros(1, 65)),
        ConfigError,
        "dtype",
    ),
    (lambda: PolynomialChaosExpansion(2).basis(torch.zeros(3)), ShapeError, "x"),
    (lambda: PolynomialChaosExpansion(2).sobol_indices([1.0]), ShapeError, "coefficients"),
    (lambda: legendre_polynomial_p(torch.zeros(2), -1), ConfigError, "n"),
    (lambda: legendre_polynomial_p([0.0], 2), ShapeError, "x"),
    (lambda: total_order_indices(0, 2), ConfigError, "num_inputs"),
    # groups
    (lambda: IIDGaussianGroup(3, 2), ConfigError, "name"),
    (lambda: IIDGaussianGroup("w", 0), ConfigError, "num_params"),
    (lambda: IIDGaussianGroup("w", 2, prior="normal"), ConfigError, "prior"),
    (lambda: IIDGaussianGroup("w", 2, init_std=float("nan")), ConfigError, "init_std"),
    (lambda: IIDGaussianGroup("w", 2, kl_num_mc_samples=0), ConfigError, "kl_num_mc_samples"),
    (lambda: GaussianGroup("w", 2, kl_estimator="magic"), ConfigError, "kl_estimator"),
    (lambda: GaussianGroup("w", 2, jitter=-1.0), ConfigError, "jitter"),
    (lambda: GaussianGroup("w", 2).set_scale_tril(torch.eye(3)), ShapeError, "scale_tril"),
    (lambda: GaussianGroup("w", 2).set_scale_tril(-torch.eye(2)), ValueDomainError, "scale_tril"),
    # an upper factor (e.g. cholesky(upper=True)) would silently lose its off-diagonal
    (
        lambda: GaussianGroup("w", 2).set_scale_tril(torch.tensor([[1.0, 0.5], [0.0, 1.0]])),
        ValueDomainError,
        "scale_tril",
    ),
    (
        lambda: GaussianGroup("w", 2).set_scale_tril(torch.tensor([[1.0, 0.0], [math.nan, 1.0]])),
        ValueDomainError,
        "scale_tril",
    ),
    (
        lambda: GaussianGroup("w", 2).set_scale_tril(torch.tensor([[1.0, 0.0], [math.inf, 1.0]])),
        ValueDomainError,
        "scale_tril",
    ),
    (lambda: LowRankGaussianGroup("w", 3, rank=4), ConfigError, "rank"),
    (
        lambda: LowRankGaussianGroup("w", 3, 1, init_scale_factor=-1.0),
        ConfigError,
        "init_scale_factor",
    ),
    (lambda: DeterministicGroup("w", 2, init_scale=math.inf), ConfigError, "init_scale"),
    (lambda: IIDGaussianGroup("w", 2).sample_parameters(0), ConfigError, "num_samples"),
    (lambda: IIDGaussianGroup("w", 2).sample_parameters(2.0), ConfigError, "num_samples"),
    (lambda: LangevinGroup("w", 2), ConfigError, "score_model, energy_model"),
    (lambda: LangevinGroup("w", 2, NeuralNetwork(2, 3)), ConfigError, "score_model"),
    (lambda: LangevinGroup("w", 2, "net"), ConfigError, "score_model"),
    (
        lambda: LangevinGroup("w", 2, energy_model=NeuralNetwork(2, 2)),
        ConfigError,
        "energy_model",
    ),
    (lambda: LangevinGroup("w", 2, NeuralNetwork(2, 2), step_size=0), ConfigError, "step_size"),
    (
        lambda: LangevinGroup("w", 2, NeuralNetwork(2, 2), init_std=np.float32(np.nan)),
        ConfigError,
        r"^init_std: expected a finite number > 0, got nan$",
    ),
    (
        lambda: GaussianGroup("w", 2, jitter=np.float64(-1e-3)),
        ConfigError,
        r"^jitter: expected a finite number >= 0, got -0\.001$",
    ),
    (lambda: DeterministicGroup("w", 2, init_scale="0.1"), ConfigError, r"^init_scale: .*'0\.1'"),
    (lambda: IIDGaussianGroup("w", 2, init_std=True), ConfigError, r"^init_std: .*got True$"),
    (
        lambda: LangevinGroup("w", 2, NeuralNetwork(2, 2), num_particles=0),
        ConfigError,
        "num_particles",
    ),
    # priors
    (lambda: IIDGaussianPrior(0.0, -1.0), ValueDomainError, "std"),
    (lambda: IIDGaussianPrior(float("nan"), 1.0), ValueDomainError, "mean"),
    (lambda: IIDGaussianPrior("zero", 1.0), ConfigError, "mean"),
    (lambda: LaplacePrior(0.0, 0.0), ValueDomainError, "scale"),
    (lambda: LaplacePrior(math.inf, 1.0), ValueDomainError, "loc"),
    (lambda: GaussianPrior(torch.zeros(2)), ConfigError, "exactly one"),
    (lambda: GaussianPrior(torch.zeros(2), covariance_matrix=torch.eye(3)), ShapeError, "cov"),
    (
        lambda: GaussianPrior(torch.zeros(2), covariance_matrix=-torch.eye(2)),
        ValueDomainError,
        "covariance_matrix",
    ),
    (
        lambda: IIDGaussianPrior(torch.zeros(3), 1.0).distribution(torch.Size([4])),
        ShapeError,
        "event shape",
    ),
    # the stochastic model and its helpers
    (lambda: StochasticModel("net", IIDGaussianGroup("w", 2)), ConfigError, "surrogate_model"),
    (lambda: StochasticModel(NeuralNetwork(1), []), ConfigError, "parameter_groups"),
    (lambda: StochasticModel(NeuralNetwork(1), [3]), ConfigError, "parameter_groups"),
    (lambda: StochasticModel(NeuralNetwork(1), IIDGaussianGroup("w", 2)), ConfigError, "sizes"),
    (
        lambda: StochasticModel(
            PolynomialChaosExpansion(1, 1, 1), [DeterministicGroup("w", 1)] * 2
        ),
        ConfigError,
        "distinct",
    ),
    (lambda: _model()(torch.zeros(3, 3)), ShapeError, "x"),
    (lambda: _model()("x"), ConfigError, "x"),
    (lambda: _model()(torch.zeros(3, 2), num_samples=0), ConfigError, "num_samples"),
    (lambda: _model()(torch.zeros(3, 2), num_samples=True), ConfigError, "num_samples"),
    (lambda: predictive_summary(_model(), torch.zeros(2, 2), 1), ConfigError, "num_samples"),
    (
        lambda: predictive_summary(_model(), torch.zeros(2, 2), quantiles=(0.5, float("nan"))),
        ConfigError,
        "quantiles",
    ),
    (
        lambda: predictive_summary(_model(), torch.zeros(2, 2), quantiles="abc"),
        ConfigError,
        "quantiles",
    ),
    (
        lambda: predictive_summary(_model(), torch.zeros(2, 2), noise_std=float("nan")),
        ValueDomainError,
        "noise_std",
    ),
    (
        lambda: predictive_summary(_model(), torch.zeros(2, 2), noise_std=torch.ones(5)),
        ShapeError,
        "noise_std",
    ),
    (lambda: predictive_summary(_model(), torch.zeros(2, 2), seed=-1), ConfigError, "seed"),
    (lambda: to_draws(torch.nn.Linear(1, 1)), ConfigError, "model"),
    (lambda: save(torch.nn.Linear(1, 1), "unused"), ConfigError, "model"),
    (lambda: load("unused", device="warp-drive"), ConfigError, "device"),
]


@pytest.mark.parametrize(("call", "error", "match"), CASES)
def test_bad_input_raises_named_orrery_error(call, error, match):
    with pytest.raises(error, match=match) as info:
        call()
    assert type(info.value) is error
    assert isinstance(info.value, OrreryError)


def test_upstream_except_clauses_still_catch():
    # pypolymix raised ValueError / RuntimeError here; those clauses keep working
    with pytest.raises(ValueError):
        LowRankGaussianGroup("w", 3, rank=4)
    with pytest.raises(RuntimeError):
        DeterministicGroup("w", 2).variational_distribution()


# -- tampered artifacts ----------------------------------------------------------------


def _saved(tmp_path, model=None):
    path = save(model if model is not None else _model(), tmp_path / "good")
    art = load_artifact(path, kind=ARTIFACT_KIND)
    return copy.deepcopy(art.config), {k: np.array(v) for k, v in art.arrays.items()}


def _write(tmp_path, config, arrays, name="bad"):
    return save_artifact(tmp_path / name, kind=ARTIFACT_KIND, config=config, arrays=arrays)


def _refused(tmp_path, config, arrays, match):
    path = _write(tmp_path, config, arrays)
    with pytest.raises(ArtifactError, match=match) as info:
        load(path)
    assert type(info.value) is ArtifactError
    return info.value


def test_untouched_artifact_loads(tmp_path):
    config, arrays = _saved(tmp_path)
    assert isinstance(load(_write(tmp_path, config, arrays)), StochasticModel)


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("num_groups", "2", "num_groups"),
        ("num_groups", 3, "num_groups=3"),
        ("surrogate.class", "os.system", "surrogate.class"),
        ("groups.0.class", "builtins.eval", "groups.0.class"),
        ("groups.0.prior.class", "Prior", "groups.0.prior.class"),
        ("groups.0.args.num_params", -1, "num_params"),
        ("groups.0.args.jitter", float("inf"), "jitter"),
        ("groups.1.args.kl_estimator", "pickle", "kl_estimator"),
        ("surrogate.args.degree", 3, "C\\(5, 3\\)"),
        ("surrogate.args.num_outputs", 2, "parameters"),
    ],
)
def test_tampered_config_is_refused(tmp_path, key, value, match):
    config, arrays = _saved(tmp_path)
    node = config
    *head, last = key.split(".")
    for part in head:
        node = node[part]
    node[last] = value
    _refused(tmp_path, config, arrays, match)


@pytest.mark.parametrize("key", ["surrogate.args.degree", "groups.0.args.name", "groups"])
def test_missing_config_key_is_refused(tmp_path, key):
    config, arrays = _saved(tmp_path)
    node = config
    *head, last = key.split(".")
    for part in head:
        node = node[part]
    del node[last]
    _refused(tmp_path, config, arrays, "missing")


def test_tampered_arrays_are_refused(tmp_path):
    config, arrays = _saved(tmp_path)
    for name, change, match in [
        ("parameter_groups.0.raw_tril", None, "missing"),
        ("parameter_groups.0.raw_tril", np.zeros(9, dtype=np.float32), "shape"),
        ("parameter_groups.1.log_std", np.zeros(2, dtype=np.int64), "dtype"),
        ("parameter_groups.1.mean", np.array([np.nan, 0.0], dtype=np.float32), "non-finite"),
        ("parameter_groups.1.prior.std", np.full(2, -1.0, dtype=np.float32), "std"),
        ("parameter_groups.1.prior.std", np.ones(3, dtype=np.float32), "shape"),
        ("surrogate_model.multi_indices", np.zeros((6, 2), dtype=np.float64), "dtype"),
        ("surrogate_model.multi_indices", arrays["surrogate_model.multi_indices"][::-1], "multi"),
        ("extra", np.zeros(1), "no model part uses"),
    ]:
        bad = dict(arrays)
        if change is None:
            del bad[name]
        else:
            bad[name] = change
        _refused(tmp_path, config, bad, match)


def test_declared_sizes_are_checked_before_allocation(tmp_path):
    # 472 bytes of metadata must not ask torch for 160 GB: each size is checked
    # against the arrays actually present before a module is built
    config, arrays = _saved(tmp_path)
    huge = copy.deepcopy(config)
    huge["groups"]["0"]["args"]["num_params"] = 200_000  # a 2e10-entry packed factor
    err = _refused(tmp_path, huge, arrays, "parameter_groups.0.mean")
    assert "200000" in str(err)
    huge = copy.deepcopy(config)
    huge["surrogate"]["args"]["degree"] = 10**12  # C(10**12 + 2, 2) terms
    _refused(tmp_path, huge, arrays, "terms")
    huge = copy.deepcopy(config)
    huge["surrogate"]["args"]["num_inputs"] = 10**6
    _refused(tmp_path, huge, arrays, "multi_indices")

    net_config, net_arrays = _saved(
        tmp_path / "net", StochasticModel(NeuralNetwork(1, 1, width=2), IIDGaussianGroup("w", 7))
    )
    net_config["surrogate"]["args"]["width"] = 10**9
    net_config["surrogate"]["args"]["depth"] = 10**9
    _refused(tmp_path, net_config, net_arrays, "parameters")


def test_mixture_and_langevin_configs_are_checked(tmp_path):
    experts = [NeuralNetwork(1, 1, width=2) for _ in range(2)]
    moe = MixtureOfExperts(experts, GatingNetwork(1, 2, width=2))
    model = StochasticModel(
        moe,
        [
            LangevinGroup("l", 2, NeuralNetwork(2, 2, width=2), num_particles=4),
            DeterministicGroup("d", moe.num_params() - 2),
        ],
    )
    config, arrays = _saved(tmp_path, model)
    assert isinstance(load(_write(tmp_path, config, arrays, "ok")), StochasticModel)
    many = copy.deepcopy(config)
    many["surrogate"]["num_experts"] = 10**9
    _refused(tmp_path, many, arrays, "num_experts")
    act = copy.deepcopy(config)
    act["surrogate"]["experts"]["0"]["args"]["activation"] = "Module"
    _refused(tmp_path, act, arrays, "activation")
    mode = copy.deepcopy(config)
    mode["groups"]["0"]["mode"] = "energy"
    _refused(tmp_path, mode, arrays, "energy")
    steps = copy.deepcopy(config)
    steps["groups"]["0"]["args"]["step_size"] = -0.1
    _refused(tmp_path, steps, arrays, "step_size")


def test_loading_never_imports_a_module_named_in_the_file(tmp_path, monkeypatch):
    config, arrays = _saved(tmp_path)
    plant = tmp_path / "planted"
    plant.mkdir()
    marker = tmp_path / "payload-ran"
    (plant / "payload.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\nclass Evil: pass\n"
    )
    monkeypatch.syspath_prepend(str(plant))
    for key, value in [
        ("surrogate.class", "payload.Evil"),
        ("groups.0.class", "payload"),
        ("groups.1.prior.class", "payload.Evil"),
    ]:
        bad = copy.deepcopy(config)
        node = bad
        *head, last = key.split(".")
        for part in head:
            node = node[part]
        node[last] = value
        _refused(tmp_path, bad, arrays, "class")
    net_config, net_arrays = _saved(
        tmp_path / "net", StochasticModel(NeuralNetwork(1, 1, width=2), IIDGaussianGroup("w", 7))
    )
    net_config["surrogate"]["args"]["activation"] = "payload.Evil"
    _refused(tmp_path, net_config, net_arrays, "activation")
    assert not marker.exists()


def test_settings_take_numpy_scalars_like_python_floats():
    assert GaussianGroup("w", 2, jitter=np.float32(1e-5)).jitter == pytest.approx(1e-5)
    assert type(GaussianGroup("w", 2, jitter=np.float64(1e-5)).jitter) is float
    group = LangevinGroup("w", 2, NeuralNetwork(2, 2), step_size=np.float64(1e-3))
    assert group.step_size == 1e-3


def _pce_outputs(x):
    pce = PolynomialChaosExpansion(2, 1, 2)
    return pce(x, torch.ones(1, pce.num_params(), dtype=x.dtype))


def test_pce_inputs_outside_the_legendre_domain_warn_naming_x():
    x = torch.tensor([[0.5, -0.25], [1.0, 2.5], [-4.0, 0.0]])
    pattern = (
        r"^x: 2 input value\(s\) outside \[-1, 1\], the domain of the Legendre basis \(first "
        r"at index \(1, 1\): 2\.5; largest finite \|x\| = 4\); .*rescale the inputs"
    )
    with pytest.warns(RuntimeWarning, match=pattern) as record:
        out = _pce_outputs(x)
    assert record[0].filename == __file__  # points at the caller, not at torch
    assert torch.isfinite(out).all()  # the contract: computed anyway, as pypolymix did
    with pytest.warns(RuntimeWarning, match=r"^x: 1 input value\(s\) .*, 1 of them NaN or inf"):
        PolynomialChaosExpansion(2, 1, 2).basis(torch.tensor([[0.0, float("nan")]]))


def test_pce_inputs_inside_the_domain_or_off_by_rounding_do_not_warn():
    inside = torch.rand(50, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    edge = torch.tensor([[1.0, -1.0], [float(np.nextafter(np.float32(1), 2)), 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _pce_outputs(inside)
        _pce_outputs(inside)  # checked once for this tensor, not once per call
        _pce_outputs(edge)
        _pce_outputs(edge.double() * (1 + 1e-9))
    inside[3, 0] = 7.0  # an in-place edit is seen: the tensor's version changed
    with pytest.warns(RuntimeWarning, match=r"first at index \(3, 0\): 7"):
        _pce_outputs(inside)


def test_pce_domain_check_steps_aside_under_torch_func():
    pce = PolynomialChaosExpansion(1, 1, 2)
    params = torch.ones(1, pce.num_params())

    def total(x):
        return pce(x, params).sum()

    grad = torch.func.grad(total)(torch.tensor([[0.5]]))
    assert grad.item() == pytest.approx(1.0 + 3.0 * 0.5)  # d/dx (1 + x + (3x^2 - 1) / 2)


def test_a_pce_driving_langevin_particles_is_not_checked_against_the_chaos_domain():
    torch.manual_seed(0)
    group = LangevinGroup("c", 3, PolynomialChaosExpansion(3, num_outputs=3, degree=1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # particles of std 1 leave [-1, 1]: no warning for them
        theta = group.sample_parameters(20)
    assert theta.abs().max() > 1
    with pytest.warns(RuntimeWarning, match="^x: "):  # the check is back on afterwards
        _pce_outputs(theta[:, :2].detach())
