"""Tests for `orrery.parax.operator.Operator`: the composition algebra."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import orrery.parax.op as op
from orrery.interface import ShapeError
from orrery.parax.operator import Operator

X = np.array([0.5, 1.0, 2.0], dtype=np.float32)


class Affine(Operator):
    """f(x) = w * x + b, with array leaves to differentiate."""

    w: jax.Array
    b: jax.Array

    def __call__(self, x):
        return self.w * x + self.b


class Square(Operator):
    def __call__(self, x):
        return x**2


class DictOut(Operator):
    def __call__(self, x):
        return {"a": x, "b": 2.0 * x}


class Leafy(eqx.Module):
    """An array-like pytree, in the way `Parameter` is: a single value, not a container."""

    v: jax.Array

    def __jax_array__(self):
        return 10.0 * self.v


F = Affine(jnp.asarray(2.0), jnp.asarray(1.0))
G = Square()
FX, GX = 2.0 * X + 1.0, X**2


def test_operator_is_abstract():
    with pytest.raises(TypeError, match="abstract"):
        Operator()

    class Incomplete(Operator):
        pass

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()


def test_operator_is_a_module_and_generic():
    import orrery.parax.module as module

    assert issubclass(Operator, module.Module)
    assert issubclass(Operator, eqx.Module)

    class Typed(Operator[[jax.Array], jax.Array]):
        def __call__(self, x):
            return x + 1

    np.testing.assert_allclose(Typed()(X), X + 1)


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda: F + G, FX + GX),
        (lambda: F - G, FX - GX),
        (lambda: F * G, FX * GX),
        (lambda: F / G, FX / GX),
        (lambda: F**G, FX**GX),
        (lambda: F // G, FX // GX),
        (lambda: F % G, FX % GX),
        (lambda: F + 3.0, FX + 3.0),
        (lambda: 3.0 + F, 3.0 + FX),
        (lambda: 3.0 - F, 3.0 - FX),
        (lambda: 3.0 * F, 3.0 * FX),
        (lambda: 3.0 / F, 3.0 / FX),
        (lambda: 2.0**F, 2.0**FX),
        (lambda: F**2, FX**2),
        (lambda: 7.0 // F, 7.0 // FX),
        (lambda: 7.0 % F, 7.0 % FX),
        (lambda: -F, -FX),
        (lambda: +F, FX),
        (lambda: abs(F - 2.5), np.abs(FX - 2.5)),
        (lambda: (F + G) * 2.0 - G / F, (FX + GX) * 2.0 - GX / FX),
        (lambda: np.array([1.0, 2.0, 3.0]) + F, np.array([1.0, 2.0, 3.0]) + FX),
        (lambda: jnp.array([1.0, 2.0, 3.0]) * F, np.array([1.0, 2.0, 3.0]) * FX),
    ],
)
def test_arithmetic_matches_numpy(build, expected):
    composed = build()
    assert isinstance(composed, Operator)
    np.testing.assert_allclose(composed(X), expected, rtol=1e-6)


def test_matmul():
    class Mat(Operator):
        def __call__(self, x):
            return jnp.outer(x, x)

    v = np.array([1.0, -2.0, 0.5], dtype=np.float32)
    np.testing.assert_allclose((Mat() @ v)(X), np.outer(X, X) @ v, rtol=1e-6)
    np.testing.assert_allclose((v @ Mat())(X), v @ np.outer(X, X), rtol=1e-6)
    np.testing.assert_allclose((Mat() @ Mat())(X), np.outer(X, X) @ np.outer(X, X), rtol=1e-5)


def test_comparisons_and_logic_are_pointwise_operators():
    np.testing.assert_array_equal((F < G)(X), FX < GX)
    np.testing.assert_array_equal((F <= 3.0)(X), FX <= 3.0)
    np.testing.assert_array_equal((F > G)(X), FX > GX)
    np.testing.assert_array_equal((F >= 3.0)(X), FX >= 3.0)
    np.testing.assert_array_equal(F.eq(3.0)(X), FX == 3.0)
    np.testing.assert_array_equal(F.ne(3.0)(X), FX != 3.0)
    between = (F > 1.5) & (F < 4.0)
    np.testing.assert_array_equal(between(X), (FX > 1.5) & (FX < 4.0))
    np.testing.assert_array_equal(((F < 2.5) | (G > 3.0))(X), (FX < 2.5) | (GX > 3.0))
    np.testing.assert_array_equal(((F < 2.5) ^ (G < 0.5))(X), (FX < 2.5) ^ (GX < 0.5))
    np.testing.assert_array_equal((~(F < 2.5))(X), ~(FX < 2.5))
    np.testing.assert_array_equal((True & (F < 2.5))(X), FX < 2.5)


def test_indexing_builds_index_operator():
    s = np.arange(12.0, dtype=np.float32).reshape(4, 3)
    first = F[:, 0]
    assert isinstance(first, op.Index)
    np.testing.assert_array_equal(first(s), 2.0 * s[:, 0] + 1.0)
    np.testing.assert_array_equal((F[1:] - F[:-1])(X), FX[1:] - FX[:-1])
    with pytest.raises(TypeError, match="not iterable"):
        iter(F)


def test_equality_stays_structural():
    a, b = F + 1.0, F + 1.0
    # ``==`` is equinox's tree equality (a bool, or a 0-d bool array with array leaves)
    assert bool(a == b)
    # graphs without array leaves are hashable, so they can be static data under jit
    assert hash(2.0 * G + 1.0) == hash(2.0 * G + 1.0)
    assert not bool(a == F + 2.0)
    assert bool(a != F + 2.0)
    assert bool((F - 1.0) != (F + 1.0))


def test_pytree_outputs_broadcast_scalars_and_combine_leafwise():
    d = DictOut()
    out = (2.0 * d + 1.0)(X)
    np.testing.assert_allclose(out["a"], 2 * X + 1)
    np.testing.assert_allclose(out["b"], 4 * X + 1)
    out = (d * d - d)(X)
    np.testing.assert_allclose(out["b"], (2 * X) ** 2 - 2 * X)
    # an array operator output broadcasts over a pytree output too
    out = (d + G)(X)
    np.testing.assert_allclose(out["a"], X + X**2)
    np.testing.assert_allclose(out["b"], 2 * X + X**2)
    # pytree constants
    out = (d + {"a": 1.0, "b": -1.0})(X)
    np.testing.assert_allclose(out["b"], 2 * X - 1.0)
    neg = (-d)(X)
    np.testing.assert_allclose(neg["a"], -X)
    assert set((d > 1.0)(X)) == {"a", "b"}


def test_mismatched_pytrees_raise_shape_error():
    class Other(Operator):
        def __call__(self, x):
            return {"a": x, "c": x}

    with pytest.raises(ShapeError, match="same structure"):
        (DictOut() + Other())(X)


def test_array_like_objects_are_single_values():
    leafy = Leafy(jnp.asarray(0.5))
    out = (DictOut() * leafy)(X)  # broadcast like a scalar, not split into its leaves
    np.testing.assert_allclose(out["b"], 2 * X * 5.0, rtol=1e-6)
    np.testing.assert_allclose((G + leafy)(X), X**2 + 5.0, rtol=1e-6)


def test_jit_closure_and_argument():
    h = (F * G + 1.0) / (abs(F) + 1.0)
    expected = (FX * GX + 1.0) / (np.abs(FX) + 1.0)
    np.testing.assert_allclose(jax.jit(lambda x: h(x))(X), expected, rtol=1e-6)
    call = jax.jit(lambda o, x: o(x))
    np.testing.assert_allclose(call(h, X), expected, rtol=1e-6)
    np.testing.assert_allclose(eqx.filter_jit(lambda o, x: o(x))(h, X), expected, rtol=1e-6)


def test_grad_with_respect_to_inputs_and_operator_leaves():
    h = F * G - 3.0 * F  # (w x + b) x^2 - 3 (w x + b)
    w, b = 2.0, 1.0

    dx = jax.grad(lambda x: h(x).sum())(jnp.asarray(X))
    np.testing.assert_allclose(dx, w * X**2 + (w * X + b) * 2 * X - 3 * w, rtol=1e-5)

    grads = eqx.filter_grad(lambda o, x: o(x).sum())(h, jnp.asarray(X))
    dw = grads.left.left.w + grads.right.right.w  # F appears twice in the graph
    db = grads.left.left.b + grads.right.right.b
    np.testing.assert_allclose(dw, np.sum(X**3 - 3 * X), rtol=1e-5)
    np.testing.assert_allclose(db, np.sum(X**2 - 3), rtol=1e-5)
