"""The student's numerical gradient checker, on functions with known gradients."""

import numpy as np
import pytest

from bnkit.gradcheck import eval_numerical_gradient, eval_numerical_gradient_array, rel_error


def test_rel_error():
    assert rel_error(np.ones(3), np.ones(3)) == 0.0
    assert rel_error(np.array([1.0]), np.array([1.1])) == pytest.approx(0.1 / 2.1)
    with pytest.raises(ValueError, match=r"\(1, 3\)"):
        rel_error(np.ones((1, 3)), np.ones(3))


def test_scalar_gradient_of_a_cubic():
    x = np.random.default_rng(0).normal(size=(3, 4))
    before = x.copy()
    numeric = eval_numerical_gradient(lambda v: np.sum(v**3), x)
    # Truncation error h**2 * f''' / 6 = 1e-10 absolute; relative to 3 x**2 near 0 it reaches 1e-8.
    assert rel_error(numeric, 3 * before**2) < 1e-7
    np.testing.assert_array_equal(x, before)  # restored


def test_array_gradient_of_a_matrix_product():
    rng = np.random.default_rng(1)
    x, w = rng.normal(size=(4, 3)), rng.normal(size=(3, 5))
    dout = rng.normal(size=(4, 5))
    numeric_x = eval_numerical_gradient_array(lambda v: v @ w, x, dout)
    numeric_w = eval_numerical_gradient_array(lambda v: x @ v, w, dout)
    assert rel_error(numeric_x, dout @ w.T) < 1e-8
    assert rel_error(numeric_w, x.T @ dout) < 1e-8


def test_gradient_check_finds_a_missing_path():
    """The checker tells a right softmax-like gradient from one missing the normalising path."""
    rng = np.random.default_rng(2)
    x, dout = rng.normal(size=(2, 4)), rng.normal(size=(2, 4))

    def centre(v):
        return v - v.mean(axis=1, keepdims=True)

    numeric = eval_numerical_gradient_array(centre, x, dout)
    right = dout - dout.mean(axis=1, keepdims=True)
    assert rel_error(numeric, right) < 1e-8
    assert rel_error(numeric, dout) > 1e-2


def test_float32_is_refused():
    with pytest.raises(ValueError, match="float64"):
        eval_numerical_gradient(np.sum, np.ones(3, dtype=np.float32))
