import math

import pytest
import torch

from orrery.interface import ConfigError, ShapeError
from orrery.polymix import (
    GatingNetwork,
    MixtureOfExperts,
    NeuralNetwork,
    PolynomialChaosExpansion,
    SurrogateModel,
)
from orrery.polymix.surrogate_models import legendre_polynomials, total_order_indices


def _reference_mlp(net: NeuralNetwork, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """One sample, layer by layer, with the documented layout."""
    h, offset = x, 0
    for k, (n_in, n_out) in enumerate(net.layer_sizes):
        w = theta[offset : offset + n_in * n_out].reshape(n_in, n_out)
        offset += n_in * n_out
        b = theta[offset : offset + n_out]
        offset += n_out
        h = h @ w + b
        if k < len(net.layer_sizes) - 1:
            h = torch.relu(h)
    return h


# -- NeuralNetwork -------------------------------------------------------------


def test_neural_network_parameter_count_matches_reference():
    assert NeuralNetwork(num_inputs=2, num_outputs=1, width=8, depth=2).num_params() == 105
    assert NeuralNetwork(num_inputs=1, num_outputs=1).num_params() == 16 + 16 + 16 + 1
    assert NeuralNetwork(num_inputs=3, num_outputs=2, depth=0).num_params() == 3 * 2 + 2


def test_neural_network_shapes_and_values_match_per_sample_loop():
    net = NeuralNetwork(num_inputs=2, num_outputs=3, width=8, depth=2)
    params, x = torch.randn(4, net.num_params()), torch.randn(5, 2)
    y = net(x, params)
    assert y.shape == (4, 5, 3)
    want = torch.stack([_reference_mlp(net, x, p) for p in params])
    torch.testing.assert_close(y, want)


def test_neural_network_activation_class_instance_or_callable():
    x, params = torch.randn(3, 1), torch.randn(2, NeuralNetwork(1, 1, width=4).num_params())
    a = NeuralNetwork(1, 1, width=4, activation=torch.nn.Tanh)(x, params)
    b = NeuralNetwork(1, 1, width=4, activation=torch.nn.Tanh())(x, params)
    c = NeuralNetwork(1, 1, width=4, activation=torch.tanh)(x, params)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)


def test_neural_network_float64_and_gradcheck():
    net = NeuralNetwork(num_inputs=2, num_outputs=1, width=3, depth=1, activation=torch.nn.Tanh)
    net = net.to(torch.float64)
    x = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    p = torch.randn(2, net.num_params(), dtype=torch.float64, requires_grad=True)
    assert net(x, p).dtype == torch.float64
    assert torch.autograd.gradcheck(net, (x, p))


def test_surrogate_input_validation():
    net = NeuralNetwork(num_inputs=2, num_outputs=1, width=4)
    with pytest.raises(ShapeError, match=r"x: expected shape \(N, 2\).*\(5, 3\)"):
        net(torch.randn(5, 3), torch.randn(1, net.num_params()))
    with pytest.raises(ShapeError, match=r"x: expected shape"):
        net(torch.randn(5), torch.randn(1, net.num_params()))
    with pytest.raises(ShapeError, match=rf"params: expected shape \(S, {net.num_params()}\)"):
        net(torch.randn(5, 2), torch.randn(1, net.num_params() + 1))
    with pytest.raises(ShapeError, match="params"):
        net(torch.randn(5, 2), torch.randn(net.num_params()))
    with pytest.raises(ConfigError, match="dtype"):
        net(torch.randn(5, 2, dtype=torch.float64), torch.randn(1, net.num_params()))
    with pytest.raises(ConfigError, match="num_inputs"):
        NeuralNetwork(num_inputs=0, num_outputs=1)
    with pytest.raises(ConfigError, match="depth"):
        NeuralNetwork(num_inputs=1, num_outputs=1, depth=-1)


def test_base_class_is_abstract():
    base = SurrogateModel(1, 1)
    with pytest.raises(NotImplementedError):
        base.num_params()


# -- PolynomialChaosExpansion --------------------------------------------------


def test_total_order_indices_grouped_by_degree():
    alpha = total_order_indices(2, 2)
    assert alpha.tolist() == [[0, 0], [0, 1], [1, 0], [0, 2], [1, 1], [2, 0]]
    for d, p in [(1, 5), (3, 4), (4, 3)]:
        a = total_order_indices(d, p)
        assert a.shape == (math.comb(d + p, p), d)
        degrees = a.sum(1)
        assert torch.all(degrees[1:] >= degrees[:-1])
        assert len({tuple(r) for r in a.tolist()}) == a.shape[0]


def test_legendre_recurrence_matches_closed_forms():
    x = torch.linspace(-1, 1, 11, dtype=torch.float64)
    p = legendre_polynomials(x, 4)
    closed = torch.stack(
        [
            torch.ones_like(x),
            x,
            (3 * x**2 - 1) / 2,
            (5 * x**3 - 3 * x) / 2,
            (35 * x**4 - 30 * x**2 + 3) / 8,
        ],
        -1,
    )
    torch.testing.assert_close(p, closed)
    assert p.dtype == torch.float64


def test_legendre_orthogonality_norms():
    # Gauss-Legendre quadrature is exact here: E[P_m P_n] = δ_mn / (2n + 1) under U(-1, 1)
    import numpy as np

    nodes, weights = np.polynomial.legendre.leggauss(12)
    p = legendre_polynomials(torch.from_numpy(nodes), 6)
    gram = torch.einsum("q,qm,qn->mn", torch.from_numpy(weights) / 2, p, p)
    torch.testing.assert_close(gram, torch.diag(1.0 / (2 * torch.arange(7.0) + 1)).double())


def test_pce_shapes_counts_and_layout():
    pce = PolynomialChaosExpansion(num_inputs=1, degree=2)
    assert pce.num_terms == 3 and pce.num_params() == 3
    x = torch.linspace(-1, 1, 20).unsqueeze(-1)
    assert pce(x, torch.randn(5, 3)).shape == (5, 20, 1)

    pce = PolynomialChaosExpansion(num_inputs=3, degree=4, num_outputs=2)
    assert pce.num_terms == math.comb(7, 4) and pce.num_params() == 2 * 35
    x, params = torch.rand(6, 3) * 2 - 1, torch.randn(4, pce.num_params())
    y = pce(x, params)
    assert y.shape == (4, 6, 2)
    basis = pce.basis(x)
    # term t of output o is parameter t * num_outputs + o (pypolymix's layout)
    torch.testing.assert_close(y[:, :, 1], params[:, 1::2] @ basis.T)


def test_pce_reproduces_a_known_polynomial():
    # f(x, y) = 1 + 2 P1(x) + 3 P1(x) P1(y) - P2(y); terms 00, 01, 10, 02, 11, 20
    pce = PolynomialChaosExpansion(num_inputs=2, degree=2)
    c = torch.zeros(6)
    c[0], c[2], c[4], c[3] = 1.0, 2.0, 3.0, -1.0
    x = torch.rand(7, 2) * 2 - 1
    want = 1 + 2 * x[:, 0] + 3 * x[:, 0] * x[:, 1] - (3 * x[:, 1] ** 2 - 1) / 2
    torch.testing.assert_close(pce(x, c[None])[0, :, 0], want)


def test_pce_float64_and_gradients_wrt_x():
    pce = PolynomialChaosExpansion(num_inputs=2, degree=3).to(torch.float64)
    x = (torch.rand(5, 2, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    p = torch.randn(2, pce.num_params(), dtype=torch.float64, requires_grad=True)
    y = pce(x, p)
    assert y.dtype == torch.float64
    (gx,) = torch.autograd.grad(y.sum(), x)
    assert gx.shape == x.shape and torch.isfinite(gx).all()
    assert torch.autograd.gradcheck(pce, (x, p))


def test_sobol_indices_of_additive_and_interaction_terms():
    pce = PolynomialChaosExpansion(num_inputs=2, degree=2)
    # y = P1(x1) + P1(x1) P1(x2): variances 1/3 and 1/9; terms 00, 01, 10, 02, 11, 20
    c = torch.zeros(6, dtype=torch.float64)
    c[2], c[4] = 1.0, 1.0
    si = pce.sobol_indices(c)
    var = 1 / 3 + 1 / 9
    torch.testing.assert_close(si.variance, torch.tensor([var], dtype=torch.float64))
    torch.testing.assert_close(
        si.first_order, torch.tensor([[(1 / 3) / var, 0.0]], dtype=torch.float64)
    )
    torch.testing.assert_close(si.total, torch.tensor([[1.0, (1 / 9) / var]], dtype=torch.float64))


def test_sobol_indices_batched_over_samples_and_outputs():
    pce = PolynomialChaosExpansion(num_inputs=3, degree=2, num_outputs=2)
    coef = torch.randn(5, pce.num_params())
    si = pce.sobol_indices(coef)
    assert si.first_order.shape == (5, 2, 3) and si.total.shape == (5, 2, 3)
    assert si.mean.shape == (5, 2) and si.variance.shape == (5, 2)
    assert torch.all(si.first_order <= si.total + 1e-6)
    one = pce.sobol_indices(coef[3])
    torch.testing.assert_close(one.total, si.total[3])
    # the variance from the indices equals the Monte Carlo variance of the expansion
    x = torch.rand(200_000, 3, dtype=torch.float64) * 2 - 1
    y = pce.to(torch.float64)(x, coef[:1].double())[0]
    torch.testing.assert_close(y.var(0), si.variance[0].double(), rtol=2e-2, atol=0)
    with pytest.raises(ShapeError, match="coefficients"):
        pce.sobol_indices(torch.randn(3, 4))


# -- GatingNetwork and MixtureOfExperts ----------------------------------------


def test_gating_network_softmax_weights():
    gating = GatingNetwork(num_inputs=1, num_experts=3, width=8)
    w = gating(torch.zeros(4, 1), torch.randn(2, gating.num_params()))
    assert w.shape == (2, 4, 3)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 4))
    assert gating.num_params() == NeuralNetwork(1, 3, width=8).num_params()


def _moe_by_loop(moe: MixtureOfExperts, x, params):
    outs, offset = [], 0
    for e in moe.experts:
        outs.append(e(x, params[:, offset : offset + e.num_params()]))
        offset += e.num_params()
    weights = moe.gating_network(x, params[:, offset:])
    return (weights.unsqueeze(-1) * torch.stack(outs, dim=2)).sum(2)


def test_mixture_of_experts_matches_loop_over_experts():
    experts = [NeuralNetwork(num_inputs=1, num_outputs=2, width=4) for _ in range(3)]
    gating = GatingNetwork(num_inputs=1, num_experts=3)
    moe = MixtureOfExperts(experts, gating)
    assert moe._stacked
    assert moe.num_params() == 3 * experts[0].num_params() + gating.num_params()
    params, x = torch.randn(4, moe.num_params()), torch.randn(5, 1)
    y = moe(x, params)
    assert y.shape == (4, 5, 2)
    torch.testing.assert_close(y, _moe_by_loop(moe, x, params))
    expert_out = moe.get_expert_outputs(x, params)
    assert expert_out.shape == (4, 3, 5, 2)  # (S, E, N, out) as in pypolymix
    start, end = moe.param_slices[1]
    torch.testing.assert_close(expert_out[:, 1], experts[1](x, params[:, start:end]))
    assert moe.get_gating_weights(x, params).shape == (4, 5, 3)


def test_mixture_of_heterogeneous_experts():
    experts = [NeuralNetwork(1, 1, width=4), PolynomialChaosExpansion(1, degree=3)]
    moe = MixtureOfExperts(experts, GatingNetwork(1, 2, width=4))
    assert not moe._stacked
    params, x = torch.randn(3, moe.num_params()), torch.rand(6, 1)
    torch.testing.assert_close(moe(x, params), _moe_by_loop(moe, x, params))


def test_mixture_of_experts_validation():
    with pytest.raises(ConfigError, match="num_experts=2"):
        MixtureOfExperts([NeuralNetwork(1, 1)] * 2, GatingNetwork(1, 3))
    with pytest.raises(ConfigError, match=r"experts\[1\]"):
        MixtureOfExperts([NeuralNetwork(1, 1), NeuralNetwork(1, 2)], GatingNetwork(1, 2))
    with pytest.raises(ConfigError, match="gating"):
        MixtureOfExperts([NeuralNetwork(1, 1)] * 2, GatingNetwork(2, 2))
    with pytest.raises(ConfigError, match="experts"):
        MixtureOfExperts([], GatingNetwork(1, 2))


def test_mixture_float64_gradcheck():
    experts = [NeuralNetwork(1, 1, width=2, activation=torch.nn.Tanh) for _ in range(2)]
    moe = MixtureOfExperts(experts, GatingNetwork(1, 2, width=2)).to(torch.float64)
    x = torch.randn(3, 1, dtype=torch.float64, requires_grad=True)
    p = torch.randn(2, moe.num_params(), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(moe, (x, p))


@pytest.mark.gpu
def test_surrogates_run_on_cuda():
    dev = torch.device("cuda")
    pce = PolynomialChaosExpansion(2, degree=3).to(dev, torch.float64)
    x = torch.rand(4, 2, device=dev, dtype=torch.float64)
    assert pce(x, torch.randn(3, pce.num_params(), device=dev, dtype=torch.float64)).is_cuda
