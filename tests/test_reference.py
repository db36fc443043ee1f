"""The float64 reference against independent computations: the hand-worked example, explicit
loops, numerical gradients and Keras itself (float64 layer, GradientTape)."""

import numpy as np
import pytest

from bn_grader import reference
from bnkit.gradcheck import eval_numerical_gradient_array, rel_error


def _param(mode, d, eps=1e-5, momentum=0.9, running_mean=None, running_var=None):
    return {
        "mode": mode,
        "eps": eps,
        "momentum": momentum,
        "running_mean": np.zeros(d) if running_mean is None else running_mean,
        "running_var": np.ones(d) if running_var is None else running_var,
    }


def test_hand_worked_example():
    # z = [-2, 0, 2, 6]: mean 1.5, biased variance 35 / 4 = 8.75, std 2.9580.
    z = np.array([[-2.0], [0.0], [2.0], [6.0]])
    out, running_mean, running_var, _ = reference.batchnorm_forward(
        z, np.array([2.0]), np.array([1.0]), _param("train", 1, eps=0.0, momentum=0.99)
    )
    std = np.sqrt(8.75)
    np.testing.assert_allclose(out.ravel(), 2 * (z.ravel() - 1.5) / std + 1, rtol=1e-14)
    np.testing.assert_allclose(out.ravel(), [-1.3664, -0.0142, 1.3381, 4.0426], atol=1e-4)
    np.testing.assert_allclose(running_mean, [0.01 * 1.5], rtol=1e-14)
    np.testing.assert_allclose(running_var, [0.99 + 0.01 * 8.75], rtol=1e-14)


def test_forward_loops_and_test_mode():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(5, 3))
    gamma, beta = rng.normal(size=3), rng.normal(size=3)
    param = _param(
        "train",
        3,
        eps=1e-3,
        momentum=0.8,
        running_mean=np.full(3, 4.0),
        running_var=np.full(3, 9.0),
    )
    out, running_mean, running_var, _ = reference.batchnorm_forward(x, gamma, beta, param)
    for j in range(3):
        column = list(x[:, j])
        mean = sum(column) / 5
        var = sum((v - mean) ** 2 for v in column) / 5
        for i in range(5):
            expected = gamma[j] * (column[i] - mean) / (var + 1e-3) ** 0.5 + beta[j]
            assert out[i, j] == pytest.approx(expected, rel=1e-12)
        assert running_mean[j] == pytest.approx(0.8 * 4.0 + 0.2 * mean, rel=1e-14)
        assert running_var[j] == pytest.approx(0.8 * 9.0 + 0.2 * var, rel=1e-14)
    np.testing.assert_array_equal(param["running_mean"], np.full(3, 4.0))  # not modified
    test_out, same_mean, same_var, cache = reference.batchnorm_forward(
        x, gamma, beta, param | {"mode": "test"}
    )
    np.testing.assert_allclose(test_out, gamma * (x - 4.0) / np.sqrt(9.0 + 1e-3) + beta, rtol=1e-14)
    assert cache is None and np.array_equal(same_var, np.full(3, 9.0))
    with pytest.raises(ValueError, match="mode"):
        reference.batchnorm_forward(x, gamma, beta, param | {"mode": "eval"})


def _numeric_grads(forward, x, gamma, beta, dout):
    return (
        eval_numerical_gradient_array(lambda v: forward(v, gamma, beta), x.copy(), dout),
        eval_numerical_gradient_array(lambda v: forward(x, v, beta), gamma.copy(), dout),
        eval_numerical_gradient_array(lambda v: forward(x, gamma, v), beta.copy(), dout),
    )


@pytest.mark.parametrize("shape", [(4, 3), (7, 5), (1, 3)])
def test_backward_matches_numerical_gradients(shape):
    rng = np.random.default_rng(1)
    x = rng.normal(2.0, 1.5, size=shape)
    gamma, beta, dout = rng.normal(size=shape[1]), rng.normal(size=shape[1]), rng.normal(size=shape)
    param = _param("train", shape[1], eps=1e-3)

    def forward(x_, gamma_, beta_):
        return reference.batchnorm_forward(x_, gamma_, beta_, param)[0]

    _, _, _, cache = reference.batchnorm_forward(x, gamma, beta, param)
    analytic = reference.batchnorm_backward(dout, cache)
    for got, expected in zip(analytic, _numeric_grads(forward, x, gamma, beta, dout), strict=True):
        # Central differences with h=1e-5 are accurate to about 1e-9 relative here.
        assert np.max(np.abs(got - expected)) <= 1e-7 * max(1.0, np.max(np.abs(expected)))


def test_spatial_is_per_channel():
    rng = np.random.default_rng(2)
    x = rng.normal(1.0, 2.0, size=(2, 3, 4, 5))
    gamma, beta = rng.normal(size=5), rng.normal(size=5)
    out, running_mean, running_var, cache = reference.spatial_batchnorm_forward(
        x, gamma, beta, _param("train", 5)
    )
    for c in range(5):
        values = x[..., c]
        expected = gamma[c] * (values - values.mean()) / np.sqrt(values.var() + 1e-5) + beta[c]
        np.testing.assert_allclose(out[..., c], expected, rtol=1e-12, atol=1e-12)
        assert running_var[c] == pytest.approx(0.9 + 0.1 * values.var(), rel=1e-13)
    small = rng.normal(size=(2, 2, 3, 2))
    dout = rng.normal(size=small.shape)
    param = _param("train", 2)

    def forward(x_, gamma_, beta_):
        return reference.spatial_batchnorm_forward(x_, gamma_, beta_, param)[0]

    _, _, _, cache = reference.spatial_batchnorm_forward(small, gamma[:2], beta[:2], param)
    analytic = reference.spatial_batchnorm_backward(dout, cache)
    for got, expected in zip(
        analytic, _numeric_grads(forward, small, gamma[:2], beta[:2], dout), strict=True
    ):
        assert rel_error(got, expected) < 1e-6


def test_layernorm_is_batchnorm_of_the_transpose():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 6)) + rng.normal(0, 5, size=(4, 1))
    gamma, beta, dout = rng.normal(size=6), rng.normal(size=6), rng.normal(size=(4, 6))
    out, cache = reference.layernorm_forward(x, gamma, beta, {"eps": 1e-5})
    transposed, _, _, _ = reference.batchnorm_forward(
        x.T, np.ones(4), np.zeros(4), _param("train", 4)
    )
    np.testing.assert_allclose(out, gamma * transposed.T + beta, rtol=1e-12, atol=1e-12)

    def forward(x_, gamma_, beta_):
        return reference.layernorm_forward(x_, gamma_, beta_, {"eps": 1e-5})[0]

    analytic = reference.layernorm_backward(dout, cache)
    for got, expected in zip(analytic, _numeric_grads(forward, x, gamma, beta, dout), strict=True):
        assert rel_error(got, expected) < 1e-6


def test_agrees_with_keras_float64():
    """Keras 3 BatchNormalization in float64 (FACTS: agreement to about 1e-13)."""
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(4)
    for shape in [(6, 4), (2, 3, 3, 4)]:
        x = rng.normal(2.0, 0.1, size=shape)  # small std: eps's place matters (1e-3 vs 0.01)
        channels = shape[-1]
        gamma, beta = rng.normal(size=channels), rng.normal(size=channels)
        moving_mean, moving_var = rng.normal(size=channels), rng.uniform(0.5, 2.0, size=channels)
        layer = tf.keras.layers.BatchNormalization(momentum=0.8, epsilon=1e-3, dtype="float64")
        layer.build(shape)
        layer.set_weights([gamma, beta, moving_mean, moving_var])
        x_tf = tf.constant(x)
        dout = rng.normal(size=shape)
        with tf.GradientTape() as tape:
            tape.watch(x_tf)
            y = layer(x_tf, training=True)
            loss = tf.reduce_sum(y * dout)
        dx_keras, dgamma_keras, dbeta_keras = tape.gradient(loss, [x_tf, layer.gamma, layer.beta])
        param = _param(
            "train",
            channels,
            eps=1e-3,
            momentum=0.8,
            running_mean=moving_mean,
            running_var=moving_var,
        )
        forward = (
            reference.batchnorm_forward if len(shape) == 2 else reference.spatial_batchnorm_forward
        )
        backward = (
            reference.batchnorm_backward
            if len(shape) == 2
            else reference.spatial_batchnorm_backward
        )
        out, running_mean, running_var, cache = forward(x, gamma, beta, param)
        dx, dgamma, dbeta = backward(dout, cache)
        # 1e-10 leaves room over the measured 1e-13 for other summation orders.
        for ours, theirs in [
            (out, y.numpy()),
            (running_mean, layer.moving_mean.numpy()),
            (running_var, layer.moving_variance.numpy()),
            (dx, dx_keras.numpy()),
            (dgamma, dgamma_keras.numpy()),
            (dbeta, dbeta_keras.numpy()),
        ]:
            np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-10)
        test_out, _, _, _ = forward(
            x,
            gamma,
            beta,
            param | {"mode": "test", "running_mean": running_mean, "running_var": running_var},
        )
        np.testing.assert_allclose(
            test_out, layer(x_tf, training=False).numpy(), rtol=1e-10, atol=1e-10
        )
