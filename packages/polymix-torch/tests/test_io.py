import json

import numpy as np
import pytest
import torch

from orrery.interface import ArtifactError, ConfigError, load_artifact
from orrery.polymix import (
    DeterministicGroup,
    GatingNetwork,
    GaussianGroup,
    GaussianPrior,
    IIDGaussianGroup,
    LangevinGroup,
    LaplacePrior,
    LowRankGaussianGroup,
    MixtureOfExperts,
    NeuralNetwork,
    PolynomialChaosExpansion,
    StochasticModel,
    load,
    save,
)
from orrery.polymix.io import ARTIFACT_KIND


def _rich_model() -> StochasticModel:
    experts = [NeuralNetwork(2, 1, width=3, activation=torch.nn.Tanh) for _ in range(2)]
    surrogate = MixtureOfExperts(experts, GatingNetwork(2, 2, width=3, depth=2))
    sizes = [e.num_params() for e in experts] + [surrogate.gating_network.num_params()]
    total = sum(sizes)
    groups = [
        IIDGaussianGroup("a", 5, prior=LaplacePrior(0.1, torch.full((5,), 0.5))),
        GaussianGroup(
            "b", 4, prior=GaussianPrior(torch.ones(4), covariance_matrix=2 * torch.eye(4))
        ),
        LowRankGaussianGroup("c", 6, rank=2),
        LangevinGroup(
            "d", 3, PolynomialChaosExpansion(3, num_outputs=3, degree=2), num_diffusion_steps=5
        ),
        DeterministicGroup("e", total - 18),
    ]
    return StochasticModel(surrogate, groups)


def test_round_trip_restores_every_tensor_and_prediction(tmp_path):
    model = _rich_model()
    path = save(model, tmp_path / "model", metadata={"note": "test"})
    back = load(path)
    assert type(back.surrogate) is MixtureOfExperts
    assert [type(g) for g in back.parameter_groups] == [type(g) for g in model.parameter_groups]
    for (k, v), (k2, v2) in zip(model.state_dict().items(), back.state_dict().items(), strict=True):
        assert k == k2
        torch.testing.assert_close(v, v2, rtol=0, atol=0)
    x = torch.randn(4, 2)
    torch.manual_seed(1)
    want = model(x, num_samples=3)
    torch.manual_seed(1)
    torch.testing.assert_close(back(x, num_samples=3), want)
    assert back.parameter_groups[2].rank == 2
    assert back.parameter_groups[3].num_diffusion_steps == 5
    art = load_artifact(path, kind=ARTIFACT_KIND)
    assert art.metadata == {"note": "test"}
    assert art.producer["distribution"] == "polymix-torch"
    assert "config" in json.loads((path / "metadata.json").read_text())


def test_round_trip_keeps_prior_hyperparameters_and_functional_activation(tmp_path):
    prior = GaussianPrior(torch.arange(3.0), covariance_matrix=torch.eye(3) * 2)
    net = NeuralNetwork(1, 1, width=1, activation=torch.tanh)
    model = StochasticModel(net, GaussianGroup("w", 4, prior=LaplacePrior(0.5, 0.25)))
    back = load(save(model, tmp_path / "m"))
    assert back.surrogate_model.activation is torch.tanh
    torch.testing.assert_close(back.parameter_groups[0].prior.scale, torch.tensor(0.25))
    lang = LangevinGroup("c", 3, energy_model=NeuralNetwork(3, 1, width=2), prior=prior)
    model = StochasticModel(PolynomialChaosExpansion(1, degree=2), lang)
    back = load(save(model, tmp_path / "e"))
    assert back.parameter_groups[0].mode == "energy"
    torch.testing.assert_close(back.parameter_groups[0].prior.mean, torch.arange(3.0))


def test_round_trip_keeps_float64(tmp_path):
    model = StochasticModel(NeuralNetwork(1, 1, width=2), [IIDGaussianGroup("w", 7)]).to(
        torch.float64
    )
    with torch.no_grad():
        model.parameter_groups[0].mean.copy_(torch.linspace(0, 1, 7, dtype=torch.float64) / 3)
    back = load(save(model, tmp_path / "m64"))
    assert back.parameter_groups[0].mean.dtype == torch.float64
    torch.testing.assert_close(back.parameter_groups[0].mean, model.parameter_groups[0].mean)
    assert back(torch.zeros(2, 1, dtype=torch.float64)).dtype == torch.float64


def test_no_pickle_is_written(tmp_path):
    path = save(_rich_model(), tmp_path / "m")
    with np.load(path / "arrays.npz", allow_pickle=False) as npz:
        assert all(npz[k].dtype != object for k in npz.files)


def test_unsavable_components_raise(tmp_path):
    class Custom(PolynomialChaosExpansion):
        pass

    model = StochasticModel(Custom(1, degree=1), [IIDGaussianGroup("w", 2)])
    with pytest.raises(ConfigError, match="cannot be saved"):
        save(model, tmp_path / "x")
    lambda_act = StochasticModel(
        NeuralNetwork(1, 1, width=2, activation=lambda t: t.tanh()), [IIDGaussianGroup("w", 7)]
    )
    with pytest.raises(ConfigError, match="activation"):
        save(lambda_act, tmp_path / "y")
    with pytest.raises(ConfigError, match="model"):
        save(torch.nn.Linear(1, 1), tmp_path / "z")


def test_load_errors(tmp_path):
    with pytest.raises(ArtifactError, match="no artifact"):
        load(tmp_path / "missing")
    path = save(
        StochasticModel(PolynomialChaosExpansion(1, degree=1), [IIDGaussianGroup("w", 2)]),
        tmp_path / "m",
    )
    meta = json.loads((path / "metadata.json").read_text())
    meta["config"]["groups"]["0"]["args"]["num_params"] = 3
    (path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="parameter_groups.0.mean"):
        load(path)
    meta["kind"] = "something.else"
    (path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="kind"):
        load(path)
