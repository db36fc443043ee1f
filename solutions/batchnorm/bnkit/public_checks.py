"""Checks you can run before submitting: shapes, the hand-worked example, the commonest mistakes.

They use small public inputs and the formulas stated in the notebooks; passing them does not
guarantee full marks (the grader uses other inputs and checks more), failing one means a
graded check will fail too. Each check prints ``[ok]`` or ``[problem]`` lines and returns
True when everything was ok.

Grade cells call :func:`confirm`: it runs the public checks of that cell quietly and prints one
summary line (and the problems). Under nbgrader's Validate (the Validate button or
``nbgrader validate``, which set ``NBGRADER_VALIDATING=1``) a problem also fails the cell, so
Validate says "failed" for a notebook whose functions are unfinished. When your notebook is
graded, :func:`confirm` only reports: the grade comes from the hidden tests alone.
"""

import contextlib
import io
import os
import sys
import warnings

import numpy as np

from .gradcheck import eval_numerical_gradient, eval_numerical_gradient_array, rel_error

# A correct float64 backward pass checked numerically with h = 1e-5 shows about 1e-10 to 1e-8.
GRADIENT_TOLERANCE = 1e-7


class _Checker:
    def __init__(self, name):
        self.name = name
        self.good = True

    def expect(self, condition, what, hint="", failed=None):
        """Print ``[ok] what`` or ``[problem] failed`` (default: ``what``) with the hint."""
        if condition:
            print(f"[ok] {self.name}: {what}")
        else:
            self.good = False
            print(f"[problem] {self.name}: {failed or what}" + (f" -- {hint}" if hint else ""))
        return bool(condition)

    def shape(self, value, shape, what):
        got = getattr(value, "shape", type(value).__name__)
        return self.expect(
            isinstance(value, np.ndarray) and value.shape == shape,
            f"{what} has shape {shape}",
            f"got {got}"
            + (" (use shape (D,), not (1, D): drop keepdims=True)" if got == (1,) + shape else ""),
        )


@contextlib.contextmanager
def _guard(checker):
    """Turn an exception in the student's code into a [problem] line."""
    try:
        yield
    except NotImplementedError:
        checker.expect(False, "implemented", "it still raises NotImplementedError")
    except Exception as error:  # noqa: BLE001  report any failure as a line, not a traceback
        checker.expect(False, "runs without an error", f"{type(error).__name__}: {error}")


def _param(mode, d, momentum=0.9, eps=1e-5, dtype=np.float64):
    return {
        "mode": mode,
        "eps": eps,
        "momentum": momentum,
        "running_mean": np.zeros(d, dtype=dtype),
        "running_var": np.ones(d, dtype=dtype),
    }


def check_batchnorm_forward(batchnorm_forward):
    """Public checks of batchnorm_forward (train and test mode)."""
    check = _Checker("batchnorm_forward")
    with _guard(check):
        z = np.array([[-2.0], [0.0], [2.0], [6.0]])
        out, _ = batchnorm_forward(
            z, np.array([2.0]), np.array([1.0]), _param("train", 1, eps=1e-8)
        )
        check.expect(
            np.allclose(np.ravel(out), [-1.3664, -0.0142, 1.3381, 4.0426], atol=1e-3),
            "hand-worked example z = [-2, 0, 2, 6], gamma 2, beta 1 gives [-1.37, -0.01, 1.34, 4.04]",
            f"got {np.round(np.ravel(out), 4)}; divide by the biased std sqrt(var + eps) with var = mean((z - mean)**2)",
        )
        rng = np.random.default_rng(0)
        x = rng.normal(3.0, 2.0, size=(6, 4))
        x_before = x.copy()
        gamma, beta = np.array([1.0, 2.0, 0.5, -1.0]), np.array([0.0, 1.0, -1.0, 2.0])
        param = _param("train", 4)
        out, _ = batchnorm_forward(x, gamma, beta, param)
        check.shape(out, (6, 4), "train out for x of shape (6, 4)")
        check.expect(
            np.array_equal(x, x_before),
            "train mode leaves x unmodified",
            "do not change x in place",
        )
        check.shape(param["running_mean"], (4,), 'bn_param["running_mean"] after a train step')
        check.shape(param["running_var"], (4,), 'bn_param["running_var"] after a train step')
        if isinstance(out, np.ndarray) and out.shape == (6, 4):
            check.expect(
                np.allclose(out.mean(axis=0), beta)
                and np.allclose(out.std(axis=0), np.abs(gamma), rtol=1e-4),
                "train out has per-feature mean beta and std |gamma|",
                "normalise each feature (column) with the batch mean and biased variance, then scale and shift",
            )
        if np.shape(param["running_mean"]) == (4,):
            check.expect(
                np.allclose(param["running_mean"], 0.1 * x.mean(axis=0)),
                "running_mean = 0.9 * 0 + 0.1 * batch mean (momentum 0.9 weights the OLD value)",
                "running = momentum * running + (1 - momentum) * batch_mean, stored back into bn_param",
            )
        if np.shape(param["running_var"]) == (4,):
            check.expect(
                np.allclose(param["running_var"], 0.9 + 0.1 * x.var(axis=0)),
                "running_var = 0.9 * 1 + 0.1 * biased batch variance",
                "use the biased variance (divide by N) and momentum * running + (1 - momentum) * var",
            )
        test_param = _param("test", 4)
        test_param["running_mean"] = np.array([1.0, -2.0, 3.0, 0.5])
        test_param["running_var"] = np.array([4.0, 0.25, 9.0, 1.0])
        saved = {
            key: value.copy() for key, value in test_param.items() if isinstance(value, np.ndarray)
        }
        x_one = rng.normal(size=(1, 4))
        out, _ = batchnorm_forward(x_one, gamma, beta, test_param)
        expected = (
            gamma * (x_one - saved["running_mean"]) / np.sqrt(saved["running_var"] + 1e-5) + beta
        )
        check.expect(
            isinstance(out, np.ndarray) and out.shape == (1, 4) and np.allclose(out, expected),
            "test mode with a batch of one uses the running statistics",
            "out = gamma * (x - running_mean) / sqrt(running_var + eps) + beta",
        )
        check.expect(
            all(np.array_equal(test_param[key], value) for key, value in saved.items()),
            "test mode leaves the running statistics unchanged",
        )
        param32 = _param("train", 4, dtype=np.float32)
        out32, _ = batchnorm_forward(
            x.astype(np.float32), gamma.astype(np.float32), beta.astype(np.float32), param32
        )
        check.expect(
            getattr(out32, "dtype", None) == np.float32
            and getattr(param32["running_var"], "dtype", None) == np.float32,
            "float32 inputs give float32 out and running statistics",
            "avoid astype(float), float64 arrays and np.float64 constants",
        )
        try:
            batchnorm_forward(x, gamma, beta, _param("eval", 4))
            raised = None
        except Exception as error:  # noqa: BLE001
            raised = error
        check.expect(isinstance(raised, ValueError), 'mode "eval" raises ValueError')
        _check_eps(check, batchnorm_forward, rng, gamma, beta)
    return check.good


def _check_eps(check, batchnorm_forward, rng, gamma, beta):
    """Where eps sits only shows when the variance is not large next to eps (FACTS)."""
    eps = 1e-3
    small = rng.normal(0.0, 0.05, size=(8, 4))
    small[:, 3] = 0.7  # a constant feature: variance 0
    param = _param("train", 4, eps=eps)
    out, _ = batchnorm_forward(small, gamma, beta, param)
    expected = gamma * (small - small.mean(axis=0)) / np.sqrt(small.var(axis=0) + eps) + beta
    finite = isinstance(out, np.ndarray) and out.shape == small.shape and np.all(np.isfinite(out))
    check.expect(
        finite,
        "a constant feature (variance 0) gives a finite output",
        "divide by sqrt(var + eps): without eps a zero variance gives 0 / 0 = nan",
    )
    check.expect(
        finite and np.allclose(out, expected, rtol=1e-6, atol=1e-8),
        "train mode with a small variance (std 0.05, eps 1e-3): eps inside the square root",
        "(x - mean) / sqrt(var + eps), not / (sqrt(var) + eps) or / sqrt(var)",
    )
    test_param = _param("test", 4, eps=eps)
    test_param["running_var"] = np.array([0.01, 0.0025, 4.0, 0.0])
    test_param["running_mean"] = np.array([0.1, -0.1, 0.0, 0.7])
    out, _ = batchnorm_forward(small, gamma, beta, test_param)
    expected = (
        gamma * (small - test_param["running_mean"]) / np.sqrt(test_param["running_var"] + eps)
    )
    check.expect(
        isinstance(out, np.ndarray)
        and out.shape == small.shape
        and np.allclose(out, expected + beta, rtol=1e-6, atol=1e-8),
        "test mode with small running variances (eps 1e-3): eps inside the square root",
        "(x - running_mean) / sqrt(running_var + eps) in test mode too",
    )


def _check_backward(check, forward, backward, x, gamma, beta, param, hints=None):
    dout = np.random.default_rng(1).normal(size=x.shape)
    out, cache = forward(x, gamma, beta, dict(param))
    dx, dgamma, dbeta = backward(dout, cache)
    channels = x.shape[-1]
    check.shape(dx, x.shape, "dx")
    check.shape(dgamma, (channels,), "dgamma")
    check.shape(dbeta, (channels,), "dbeta")

    def run(x_, gamma_, beta_):
        return forward(x_, gamma_, beta_, dict(param))[0]

    numeric = {
        "dx": eval_numerical_gradient_array(lambda v: run(v, gamma, beta), x.copy(), dout),
        "dgamma": eval_numerical_gradient_array(lambda v: run(x, v, beta), gamma.copy(), dout),
        "dbeta": eval_numerical_gradient_array(lambda v: run(x, gamma, v), beta.copy(), dout),
    }
    for name, analytic in [("dx", dx), ("dgamma", dgamma), ("dbeta", dbeta)]:
        if np.shape(analytic) == numeric[name].shape:
            error = rel_error(analytic, numeric[name])
            hint = (hints or {}).get(name, "")
            if callable(hint):
                hint = hint(analytic, x, gamma, dout)
            check.expect(
                error < GRADIENT_TOLERANCE,
                f"{name} matches the numerical gradient (relative error {error:.1e}, "
                f"below {GRADIENT_TOLERANCE:.0e})",
                hint or "check the paths through the mean and the variance",
                failed=f"{name} does not match the numerical gradient: relative error "
                f"{error:.1e}, expected below {GRADIENT_TOLERANCE:.0e}",
            )


def check_batchnorm_backward(batchnorm_forward, batchnorm_backward):
    """Public checks of a BN backward pass (staged or alt): shapes and a numerical gradient."""
    check = _Checker(getattr(batchnorm_backward, "__name__", "batchnorm_backward"))
    with _guard(check):
        rng = np.random.default_rng(2)
        x = rng.normal(1.0, 2.0, size=(5, 3))
        _check_backward(
            check,
            batchnorm_forward,
            batchnorm_backward,
            x,
            rng.normal(size=3),
            rng.normal(size=3),
            _param("train", 3),
        )
    return check.good


def check_spatial(spatial_batchnorm_forward, spatial_batchnorm_backward):
    """Public checks of the NHWC functions: per-channel statistics, shapes, numerical gradient."""
    check = _Checker("spatial_batchnorm")
    with _guard(check):
        rng = np.random.default_rng(3)
        x = rng.normal(2.0, 3.0, size=(2, 3, 4, 5))
        param = _param("train", 5)
        out, _ = spatial_batchnorm_forward(x, np.ones(5), np.zeros(5), param)
        check.shape(out, x.shape, "out")
        if isinstance(out, np.ndarray) and out.shape == x.shape:
            check.expect(
                np.allclose(out.mean(axis=(0, 1, 2)), 0)
                and np.allclose(out.var(axis=(0, 1, 2)), 1, rtol=1e-4),
                "with gamma 1, beta 0 each channel (last axis) has mean 0 and variance 1 over N, H, W",
                "the channel axis is the LAST one in NHWC; average over axes 0, 1 and 2",
            )
        check.shape(param["running_mean"], (5,), 'bn_param["running_mean"]')
        small = rng.normal(size=(2, 2, 3, 2))
        _check_backward(
            check,
            spatial_batchnorm_forward,
            spatial_batchnorm_backward,
            small,
            rng.normal(size=2),
            rng.normal(size=2),
            _param("train", 2),
        )
    return check.good


def check_layernorm(layernorm_forward, layernorm_backward):
    """Public checks of layer norm: per-example statistics, batch size 1, numerical gradient."""
    check = _Checker("layernorm")
    with _guard(check):
        rng = np.random.default_rng(4)
        x = rng.normal(3.0, 2.0, size=(4, 6))
        out, _ = layernorm_forward(x, np.ones(6), np.zeros(6), {"eps": 1e-5})
        check.shape(out, (4, 6), "out")
        if isinstance(out, np.ndarray) and out.shape == (4, 6):
            check.expect(
                np.allclose(out.mean(axis=1), 0) and np.allclose(out.var(axis=1), 1, rtol=1e-4),
                "with gamma 1, beta 0 each example (row) has mean 0 and variance 1",
                "layer norm averages over the features of each example: axis=1",
            )
        one, _ = layernorm_forward(x[:1], np.ones(6), np.zeros(6), {"eps": 1e-5})
        check.expect(
            isinstance(one, np.ndarray) and np.all(np.isfinite(one)) and np.ptp(one) > 0,
            "a batch of one example works (statistics per example)",
        )

        def forward(x_, gamma_, beta_, _param):
            return layernorm_forward(x_, gamma_, beta_, {"eps": 1e-5})

        _check_backward(
            check,
            forward,
            layernorm_backward,
            rng.normal(size=(3, 5)),
            rng.normal(size=5),
            rng.normal(size=5),
            {"eps": 1e-5},
            hints={"dx": _layernorm_dx_hint},
        )
    return check.good


def _layernorm_dx_hint(dx, x, gamma, dout, eps=1e-5):
    """Name the classic layer-norm dx mistake: Part C's formula with gamma outside the sums."""
    x_hat = (x - x.mean(axis=1, keepdims=True)) / np.sqrt(x.var(axis=1, keepdims=True) + eps)
    std = np.sqrt(x.var(axis=1, keepdims=True) + eps)
    d = x.shape[1]
    part_c_swapped = (
        gamma
        * (
            d * dout
            - dout.sum(axis=1, keepdims=True)
            - x_hat * (dout * x_hat).sum(axis=1, keepdims=True)
        )
        / (d * std)
    )
    if np.shape(dx) == x.shape and rel_error(dx, part_c_swapped) < 1e-6:
        return (
            "this is Part C's closed form with the axes swapped and gamma outside the sums; in "
            "layer norm gamma varies along the normalised axis, so start from g = gamma * dout "
            "and sum g and g * x_hat over axis 1: dx = (D g - sum(g) - x_hat sum(g x_hat)) / (D std)"
        )
    return (
        "the mean and variance paths sum over the features of each example (axis 1), and "
        "g = gamma * dout goes inside those sums"
    )


def check_backward_pieces(backward_pieces):
    """Public checks of Part C's pieces: shapes, and each derivative against a numerical one."""
    check = _Checker("backward_pieces")
    with _guard(check):
        rng = np.random.default_rng(6)
        x = rng.normal(1.0, 2.0, size=(5, 3))
        gamma, dout, eps = rng.normal(size=3), rng.normal(size=(5, 3)), 1e-5
        pieces = backward_pieces(x, gamma, dout, eps)
        if not check.expect(
            isinstance(pieces, dict), "returns a dict", "return {'dx_hat': ..., ...}"
        ):
            return check.good
        mean, var = x.mean(axis=0), x.var(axis=0)

        def loss_of_var(v):  # x_hat depends on the variance through s = sqrt(var + eps)
            return (dout * gamma * (x - mean) / np.sqrt(v + eps)).sum()

        def loss_of_mean(m):  # ... and on the mean through x - mean and through the variance
            return (dout * gamma * (x - m) / np.sqrt(((x - m) ** 2).mean(axis=0) + eps)).sum()

        numeric = {
            "dx_hat": dout * gamma,
            "dvar": eval_numerical_gradient(loss_of_var, var.copy()),
            "dmean": eval_numerical_gradient(loss_of_mean, mean.copy()),
        }
        hints = {
            "dx_hat": "y = gamma * x_hat + beta, so dL/dx_hat = gamma * dout",
            "dvar": "differentiate (var + eps) ** (-1/2) and sum over the batch (axis 0)",
            "dmean": "two paths: through x - mean directly and through the variance",
        }
        for name, expected in numeric.items():
            got = pieces.get(name)
            if check.shape(got, expected.shape, f'"{name}"'):
                error = rel_error(got, expected)
                check.expect(
                    error < GRADIENT_TOLERANCE,
                    f"{name} matches the numerical derivative (relative error {error:.1e})",
                    hints[name],
                    failed=f"{name} does not match the numerical derivative: relative error "
                    f"{error:.1e}",
                )
    return check.good


def check_groupnorm(groupnorm_forward, groupnorm_backward):
    """Public checks of group norm: per-group statistics, no batch statistics, gamma per channel,
    a G that does not divide C, numerical gradient."""
    check = _Checker("groupnorm")
    with _guard(check):
        rng = np.random.default_rng(5)
        x = rng.normal(2.0, 3.0, size=(3, 2, 3, 6)) + np.arange(6.0)  # one offset per channel
        ones, zeros = np.ones(6), np.zeros(6)
        out, _ = groupnorm_forward(x, ones, zeros, 3, {"eps": 1e-5})
        check.shape(out, x.shape, "out")
        if isinstance(out, np.ndarray) and out.shape == x.shape:
            groups = out.reshape(3, 2, 3, 3, 2)
            check.expect(
                np.allclose(groups.mean(axis=(1, 2, 4)), 0)
                and np.allclose(groups.var(axis=(1, 2, 4)), 1, rtol=1e-3),
                "with gamma 1, beta 0 each example's group of C/G consecutive channels has mean 0 "
                "and variance 1",
                "statistics per example over H, W and the group's channels: reshape the last axis "
                "to (G, C // G) and average over axes (1, 2, 4)",
            )
            alone, _ = groupnorm_forward(x[:1], ones, zeros, 3, {"eps": 1e-5})
            check.expect(
                isinstance(alone, np.ndarray)
                and alone.shape == (1, 2, 3, 6)
                and np.allclose(alone, out[:1]),
                "an example alone gives the same output as inside the batch",
                "group norm never averages over the batch axis N",
            )
            gamma = rng.normal(size=6)
            scaled, _ = groupnorm_forward(x, gamma, zeros, 3, {"eps": 1e-5})
            check.expect(
                isinstance(scaled, np.ndarray)
                and scaled.shape == x.shape
                and np.allclose(scaled, out * gamma),
                "gamma scales each channel by its own value",
                "gamma and beta have one value per channel, shape (C,)",
            )
        try:
            groupnorm_forward(x, ones, zeros, 4, {"eps": 1e-5})
            raised = None
        except NotImplementedError:
            raise
        except Exception as error:  # noqa: BLE001  reported below
            raised = error
        message = str(raised)
        check.expect(
            isinstance(raised, ValueError)
            and "6" in message
            and "4" in message
            and not message.startswith("cannot reshape"),
            "C=6 with G=4 raises a ValueError that names C and G",
            "check C % G before computing and raise ValueError(f'C={C} ... G={G} ...')",
            failed="C=6 with G=4: expected a ValueError naming C and G, got "
            + ("no exception" if raised is None else f"{type(raised).__name__}: {message[:80]}"),
        )

        def forward(x_, gamma_, beta_, param):
            return groupnorm_forward(x_, gamma_, beta_, 2, param)

        _check_backward(
            check,
            forward,
            groupnorm_backward,
            rng.normal(size=(2, 2, 3, 4)),
            rng.normal(size=4),
            rng.normal(size=4),
            {"eps": 1e-5},
            hints={"dx": "group norm's dx is layer norm's (Part E) on each (example, group) block"},
        )
    return check.good


# ------------------------------------------------------------------------- bn_keras.ipynb
def _keras_reference(x, gamma, beta, mean, var, eps):
    return gamma * (x - mean) / np.sqrt(var + eps) + beta


def check_choose_device(choose_device):
    """Public checks of choose_device: an empty GPU list and a list with one GPU."""
    check = _Checker("choose_device")
    with _guard(check):
        import tensorflow as tf

        cpu = choose_device([])
        check.expect(cpu == "/CPU:0", 'no GPU listed gives "/CPU:0"', f"got {cpu!r}")
        one_gpu = [tf.config.PhysicalDevice(name="/physical_device:GPU:0", device_type="GPU")]
        gpu = choose_device(one_gpu)
        check.expect(gpu == "/GPU:0", 'one GPU listed gives "/GPU:0"', f"got {gpu!r}")
    return check.good


_DEMO_PARAM = {
    "eps": 1e-5,
    "momentum": 0.9,
    "running_mean": np.array([1.0, -1.0, 0.5]),
    "running_var": np.array([4.0, 0.25, 2.0]),
}
_DEMO_GAMMA, _DEMO_BETA = np.array([2.0, 1.0, 0.5]), np.array([0.5, 0.0, -1.0])


def _demo_param(mode):
    return dict(
        _DEMO_PARAM,
        mode=mode,
        running_mean=_DEMO_PARAM["running_mean"].copy(),
        running_var=_DEMO_PARAM["running_var"].copy(),
    )


def check_make_keras_bn(make_keras_bn):
    """Public checks of make_keras_bn: class, momentum, epsilon, dtype and the four weights."""
    check = _Checker("make_keras_bn")
    with _guard(check):
        import keras

        layer = make_keras_bn(_demo_param("test"), _DEMO_GAMMA, _DEMO_BETA, (None, 3))
        check.expect(
            isinstance(layer, keras.layers.BatchNormalization),
            "returns a keras.layers.BatchNormalization",
            f"got {type(layer).__name__}",
        )
        if not isinstance(layer, keras.layers.BatchNormalization):
            return check.good
        check.expect(
            np.isclose(layer.momentum, 0.9) and np.isclose(layer.epsilon, 1e-5),
            "momentum 0.9 and epsilon 1e-5 come from bn_param",
            f"got momentum {layer.momentum}, epsilon {layer.epsilon}; pass momentum= and "
            "epsilon= (Keras's defaults are 0.99 and 1e-3)",
        )
        check.expect(
            str(layer.dtype) == "float64",
            'dtype="float64" by default',
            f"got {layer.dtype}; pass dtype=dtype to the layer",
        )
        check.expect(
            layer.trainable is True,
            "the layer is trainable (training=True can use the batch statistics)",
            "a layer with trainable=False runs in inference mode even with training=True",
        )
        for name, expected in [
            ("gamma", _DEMO_GAMMA),
            ("beta", _DEMO_BETA),
            ("moving_mean", _DEMO_PARAM["running_mean"]),
            ("moving_variance", _DEMO_PARAM["running_var"]),
        ]:
            value = np.asarray(getattr(layer, name))
            check.expect(
                value.shape == expected.shape and np.allclose(value, expected),
                f"layer.{name} is set",
                f"expected {expected}, got {np.round(value, 4)}",
            )
    return check.good


def check_keras_bn_forward(keras_bn_forward):
    """Public checks of keras_bn_forward: both modes and the moving statistics, in float64."""
    check = _Checker("keras_bn_forward")
    with _guard(check):
        x = np.random.default_rng(5).normal(2.0, 1.5, size=(6, 3))
        param = _demo_param("train")
        out = keras_bn_forward(x, _DEMO_GAMMA, _DEMO_BETA, param)
        expected = _keras_reference(x, _DEMO_GAMMA, _DEMO_BETA, x.mean(0), x.var(0), 1e-5)
        check.expect(
            isinstance(out, np.ndarray),
            "returns a NumPy array",
            f"got {type(out).__name__}; return out.numpy()",
        )
        check.expect(
            np.shape(out) == x.shape and np.allclose(out, expected, atol=1e-8),
            "train mode normalises with the batch statistics",
            "call the layer with training=True when mode is 'train'",
        )
        moving_mean = 0.9 * _DEMO_PARAM["running_mean"] + 0.1 * x.mean(0)
        moving_var = 0.9 * _DEMO_PARAM["running_var"] + 0.1 * x.var(0)
        check.expect(
            np.allclose(np.asarray(param["running_mean"]), moving_mean)
            and np.allclose(np.asarray(param["running_var"]), moving_var),
            "train mode writes the layer's moving statistics back into bn_param",
            'bn_param["running_mean"] = layer.moving_mean.numpy(), and the same for the variance',
        )
        param = _demo_param("test")
        out = keras_bn_forward(x, _DEMO_GAMMA, _DEMO_BETA, param)
        expected = _keras_reference(
            x,
            _DEMO_GAMMA,
            _DEMO_BETA,
            _DEMO_PARAM["running_mean"],
            _DEMO_PARAM["running_var"],
            1e-5,
        )
        check.expect(
            np.shape(out) == x.shape and np.allclose(np.asarray(out), expected, atol=1e-8),
            "test mode normalises with the moving statistics",
            "call the layer with training=False when mode is 'test'",
        )
        check.expect(
            np.array_equal(np.asarray(param["running_mean"]), _DEMO_PARAM["running_mean"])
            and np.array_equal(np.asarray(param["running_var"]), _DEMO_PARAM["running_var"]),
            "test mode leaves bn_param unchanged",
        )
    return check.good


def _bn_gradients(x, gamma, dout, eps, axes):
    mean, var = x.mean(axis=axes), x.var(axis=axes)
    x_hat = (x - mean) / np.sqrt(var + eps)
    count = x.size // x.shape[-1]
    dbeta, dgamma = dout.sum(axis=axes), (dout * x_hat).sum(axis=axes)
    dx = gamma / (count * np.sqrt(var + eps)) * (count * dout - dbeta - x_hat * dgamma)
    return {"dx": dx, "dgamma": dgamma, "dbeta": dbeta}


def _check_keras_gradients(check, keras_bn_backward, x, gamma, beta):
    dout = np.random.default_rng(6).normal(size=x.shape)
    got = keras_bn_backward(x, gamma, beta, _demo_param("train") | _channels(x), dout)
    axes = tuple(range(x.ndim - 1))
    expected = _bn_gradients(x, gamma, dout, 1e-5, axes)
    if not (isinstance(got, tuple | list) and len(got) == 3):
        check.expect(False, "returns (dx, dgamma, dbeta)", f"got {type(got).__name__}")
        return
    for name, value in zip(("dx", "dgamma", "dbeta"), got, strict=True):
        value = np.asarray(value) if value is not None else None
        check.expect(
            value is not None
            and value.shape == expected[name].shape
            and np.allclose(value, expected[name], atol=1e-8),
            f"{name} for x of shape {x.shape}",
            "None means the tape did not see the variable: tape.watch(x) and ask for "
            "layer.gamma and layer.beta"
            if value is None
            else f"expected shape {expected[name].shape}, got {value.shape}",
        )


def _channels(x):
    channels = x.shape[-1]
    return {
        "running_mean": np.resize(_DEMO_PARAM["running_mean"], channels),
        "running_var": np.resize(_DEMO_PARAM["running_var"], channels),
    }


def check_keras_bn_backward(keras_bn_backward):
    """Public checks of keras_bn_backward: the three gradients in float64 against the formula."""
    check = _Checker("keras_bn_backward")
    with _guard(check):
        x = np.random.default_rng(7).normal(1.0, 2.0, size=(5, 3))
        _check_keras_gradients(check, keras_bn_backward, x, _DEMO_GAMMA, _DEMO_BETA)
    return check.good


def check_keras_nhwc(keras_bn_forward, keras_bn_backward):
    """Public checks on NHWC images: statistics per channel (last axis), forward and gradients."""
    check = _Checker("keras NHWC")
    with _guard(check):
        x = np.random.default_rng(8).normal(1.0, 2.0, size=(2, 3, 4, 2))
        gamma, beta = np.array([1.5, 0.5]), np.array([0.2, -0.1])
        param = _demo_param("train") | _channels(x)
        out = keras_bn_forward(x, gamma, beta, param)
        expected = _keras_reference(x, gamma, beta, x.mean((0, 1, 2)), x.var((0, 1, 2)), 1e-5)
        check.expect(
            np.shape(out) == x.shape and np.allclose(np.asarray(out), expected, atol=1e-8),
            "keras_bn_forward on (2, 3, 4, 2) images: one mean and variance per channel",
            "build the layer with axis=-1 (channels last) and input_shape (None, H, W, C)",
        )
        _check_keras_gradients(check, keras_bn_backward, x, gamma, beta)
    return check.good


def check_used_batch_statistics(used_batch_statistics):
    """Public checks of the mode detector on a training-mode and an inference-mode output."""
    check = _Checker("used_batch_statistics")
    with _guard(check):
        x = np.random.default_rng(9).normal(0.0, 1.0, size=(16, 3))
        moving_mean, moving_var = np.full(3, 3.0), np.full(3, 4.0)
        state = (_DEMO_GAMMA, _DEMO_BETA, moving_mean, moving_var, 1e-3)
        train_y = _keras_reference(x, _DEMO_GAMMA, _DEMO_BETA, x.mean(0), x.var(0), 1e-3)
        test_y = _keras_reference(x, _DEMO_GAMMA, _DEMO_BETA, moving_mean, moving_var, 1e-3)
        for label, y, expected in [("training", train_y, True), ("inference", test_y, False)]:
            got = used_batch_statistics(x, y.astype(np.float32), *state)
            check.expect(
                got is expected or got == expected,
                f"a float32 {label}-mode output gives {expected}",
                f"got {got!r}; compare y with both formulas (biased batch variance) within "
                "a relative tolerance of 1e-3",
            )
    return check.good


MODE_CHOICES = ("training", "inference")
FROZEN_FIT_CHOICES = ("updated", "unchanged")


def check_mode_answers(mode_answers):
    """Public checks of MODE_ANSWERS: every entry filled in with an allowed word (not right or
    wrong: that is for the verification cell and the grader)."""
    check = _Checker("MODE_ANSWERS")
    with _guard(check):
        from .keras_helpers import MODE_SCENARIOS

        if not isinstance(mode_answers, dict):
            check.expect(False, "is a dict", f"got {type(mode_answers).__name__}")
            return check.good
        for scenario in MODE_SCENARIOS:
            choices = FROZEN_FIT_CHOICES if "moving statistics" in scenario else MODE_CHOICES
            answer = mode_answers.get(scenario)
            check.expect(
                answer in choices,
                f"{scenario!r} is answered",
                f"got {answer!r}; write one of {' or '.join(map(repr, choices))}",
            )
    return check.good


def _layer_kinds(model):
    import keras

    kinds = []
    for layer in getattr(model, "layers", []):
        if isinstance(layer, keras.layers.BatchNormalization):
            kinds.append("bn")
        elif isinstance(layer, keras.layers.Dense):
            kinds.append("dense")
        elif isinstance(layer, keras.layers.Conv2D):
            kinds.append("conv")
    return kinds


def _dense_before_bn_is_linear(model):
    import keras

    layers = list(getattr(model, "layers", []))
    for before, layer in zip(layers, layers[1:], strict=False):
        if isinstance(layer, keras.layers.BatchNormalization):
            if not isinstance(before, keras.layers.Dense):
                return False
            if getattr(before.activation, "__name__", "") != "linear":
                return False
    return True


def check_build_mlp(build_mlp):
    """Public checks of build_mlp: output shape, and three BN layers exactly when use_bn."""
    check = _Checker("build_mlp")
    with _guard(check):
        for use_bn in (True, False):
            model = build_mlp(use_bn, "sigmoid")
            shape = tuple(model.output_shape) if hasattr(model, "output_shape") else None
            check.expect(
                shape == (None, 10),
                f"build_mlp({use_bn}) maps (N, 64) to (N, 10)",
                f"got output shape {shape}",
            )
            kinds = _layer_kinds(model)
            if use_bn:
                check.expect(
                    _dense_before_bn_is_linear(model),
                    "with BN each hidden block is Dense (no activation) -> BN -> activation",
                    "give the Dense layer no activation and put Activation(activation) after "
                    "BatchNormalization, the order this notebook asks for",
                )
            check.expect(
                kinds.count("dense") == 4 and kinds.count("bn") == (3 if use_bn else 0),
                f"build_mlp({use_bn}) has 4 Dense layers and {3 if use_bn else 0} "
                "BatchNormalization layers",
                f"got {kinds.count('dense')} Dense and {kinds.count('bn')} BatchNormalization",
            )
        model = build_mlp(True, "relu", momentum=0.9)
        momenta = [float(layer.momentum) for layer in model.layers if hasattr(layer, "moving_mean")]
        check.expect(
            momenta and all(np.isclose(m, 0.9) for m in momenta),
            "momentum=0.9 reaches every BatchNormalization layer",
            f"got {momenta}; pass momentum=momentum to BatchNormalization",
        )
    return check.good


def check_build_cnn(build_cnn):
    """Public checks of build_cnn: output shape, two Conv2D and two BatchNormalization layers."""
    check = _Checker("build_cnn")
    with _guard(check):
        model = build_cnn()
        shape = tuple(model.output_shape) if hasattr(model, "output_shape") else None
        check.expect(
            shape == (None, 10), "maps (N, 8, 8, 1) to (N, 10)", f"got output shape {shape}"
        )
        kinds = _layer_kinds(model)
        check.expect(
            kinds.count("conv") == 2 and kinds.count("bn") == 2,
            "two Conv2D and two BatchNormalization layers",
            f"got {kinds.count('conv')} Conv2D and {kinds.count('bn')} BatchNormalization",
        )
    return check.good


EXPERIMENT_RUNS = (
    "sigmoid",
    "sigmoid+BN",
    "relu lr 0.1",
    "relu+BN lr 0.1",
    "relu lr 1",
    "relu+BN lr 1",
    "cnn+BN",
    "sigmoid+BN momentum 0.9",
)


def check_experiments(histories):
    """Public checks of HISTORIES: every run of Part G recorded with its curves."""
    check = _Checker("HISTORIES")
    with _guard(check):
        histories = histories if isinstance(histories, dict) else {}
        for run in EXPERIMENT_RUNS:
            curve = histories.get(run, {}).get("val_accuracy") if run in histories else None
            check.expect(
                bool(curve),
                f"run {run!r} is recorded",
                "not run yet: run its experiment cell (names as in the text)",
            )
    return check.good


# ----------------------------------------------------------------------- grade cells
# Grade-cell suite -> (check function, names of the notebook's globals it takes).
# Students read a suite by the names it checks ("Public checks of batchnorm_forward").
def _groupnorm_formula(x, gamma, beta, groups, eps):
    n, h, w, c = x.shape
    grouped = x.reshape(n, h, w, groups, c // groups)
    mean = grouped.mean(axis=(1, 2, 4), keepdims=True)
    var = grouped.var(axis=(1, 2, 4), keepdims=True)
    return gamma * ((grouped - mean) / np.sqrt(var + eps)).reshape(x.shape) + beta


def check_keras_groupnorm(keras_groupnorm_forward, keras_layernorm_forward):
    """Public checks of the Keras group and layer norm functions (float64, the stated formula)."""
    check = _Checker("keras_groupnorm_forward")
    with _guard(check):
        rng = np.random.default_rng(8)
        x = rng.normal(1.0, 0.1, size=(2, 3, 2, 6)) + np.arange(6.0)
        gamma, beta = rng.normal(1.0, 0.3, 6), rng.normal(0.0, 0.3, 6)
        for groups in (1, 3, 6):
            out = np.asarray(keras_groupnorm_forward(x, gamma, beta, groups, {"eps": 1e-5}))
            expected = _groupnorm_formula(x, gamma, beta, groups, 1e-5)
            check.expect(
                out.shape == x.shape and out.dtype == np.float64 and np.allclose(out, expected),
                f"G={groups}: float64 output equals the group-norm formula",
                "pass groups=G, axis=-1, epsilon=gn_param['eps'], dtype=x.dtype.name; assign "
                "gamma and beta",
            )
        trained = np.asarray(
            keras_groupnorm_forward(x, gamma, beta, 3, {"eps": 1e-5}, training=True)
        )
        check.expect(
            np.allclose(trained, _groupnorm_formula(x, gamma, beta, 3, 1e-5)),
            "training=True gives the same output (group norm has no moving statistics)",
        )
        rows = rng.normal(2.0, 0.1, size=(4, 5))
        ln_gamma, ln_beta = rng.normal(1.0, 0.3, 5), rng.normal(0.0, 0.3, 5)
        out = np.asarray(keras_layernorm_forward(rows, ln_gamma, ln_beta, {"eps": 1e-5}))
        mean, var = rows.mean(axis=1, keepdims=True), rows.var(axis=1, keepdims=True)
        check.expect(
            out.shape == rows.shape
            and np.allclose(out, ln_gamma * (rows - mean) / np.sqrt(var + 1e-5) + ln_beta),
            "layer norm: float64 output equals the formula of Part E (bn_numpy)",
            "pass axis=-1, epsilon=ln_param['eps'], dtype=x.dtype.name; assign gamma and beta",
        )
    return check.good


def check_keras_groupnorm_backward(keras_groupnorm_backward):
    """Public checks of the tape gradients of Keras group norm: float64, against a numerical dx
    and the closed forms dgamma = sum(dout * x_hat), dbeta = sum(dout) over N, H, W."""
    check = _Checker("keras_groupnorm_backward")
    with _guard(check):
        rng = np.random.default_rng(10)
        x = rng.normal(0.0, 0.3, size=(2, 2, 3, 4)) + np.arange(4.0)
        gamma, beta = rng.normal(1.0, 0.3, 4), rng.normal(0.0, 0.3, 4)
        dout = rng.normal(size=x.shape)
        got = keras_groupnorm_backward(x.copy(), gamma, beta, 2, {"eps": 1e-5}, dout.copy())
        if not check.expect(
            isinstance(got, tuple | list) and len(got) == 3,
            "returns (dx, dgamma, dbeta)",
            f"got {type(got).__name__}",
        ):
            return check.good
        x_hat = _groupnorm_formula(x, np.ones(4), np.zeros(4), 2, 1e-5)
        expected = {
            "dx": eval_numerical_gradient_array(
                lambda values: _groupnorm_formula(values, gamma, beta, 2, 1e-5), x.copy(), dout
            ),
            "dgamma": (dout * x_hat).sum(axis=(0, 1, 2)),
            "dbeta": dout.sum(axis=(0, 1, 2)),
        }
        values = {}
        for name, value in zip(("dx", "dgamma", "dbeta"), got, strict=True):
            if value is None:
                check.expect(
                    False,
                    f"{name} is an array",
                    "tape.gradient gave None: convert x with tf.convert_to_tensor, call "
                    "tape.watch(x) inside the with block and pass that tensor to the layer",
                    failed=f"{name} is None",
                )
                continue
            value = np.asarray(value)
            if check.shape(value, expected[name].shape, name):
                values[name] = value
        for name, value in values.items():
            error = rel_error(value, expected[name])
            hint = "loss = tf.reduce_sum(out * dout) on the training-mode output"
            if name == "dx" and np.allclose(value, dout):
                hint = "that is dout, the gradient with respect to the output: ask for x"
            elif name != "dx" and np.allclose(
                value, expected["dbeta" if name == "dgamma" else "dgamma"]
            ):
                hint = "dgamma and dbeta are swapped: ask for [x, layer.gamma, layer.beta]"
            elif np.allclose(value * x.size, expected[name]):
                hint = "that is the gradient of a mean: use tf.reduce_sum, not tf.reduce_mean"
            check.expect(
                value.dtype == np.float64 and error < GRADIENT_TOLERANCE,
                f"{name} matches the numerical gradient (relative error {error:.1e})",
                hint if value.dtype == np.float64 else "build the layer with dtype=x.dtype.name",
                failed=f"{name} does not match: relative error {error:.1e}, dtype {value.dtype}",
            )
    return check.good


SUITES = {
    "batchnorm_forward": (check_batchnorm_forward, ("batchnorm_forward",)),
    "batchnorm_backward": (check_batchnorm_backward, ("batchnorm_forward", "batchnorm_backward")),
    "batchnorm_backward_alt": (
        check_batchnorm_backward,
        ("batchnorm_forward", "batchnorm_backward_alt"),
    ),
    "spatial": (check_spatial, ("spatial_batchnorm_forward", "spatial_batchnorm_backward")),
    "layernorm": (check_layernorm, ("layernorm_forward", "layernorm_backward")),
    "backward_pieces": (check_backward_pieces, ("backward_pieces",)),
    "groupnorm": (check_groupnorm, ("groupnorm_forward", "groupnorm_backward")),
    "choose_device": (check_choose_device, ("choose_device",)),
    "make_keras_bn": (check_make_keras_bn, ("make_keras_bn",)),
    "keras_bn_forward": (check_keras_bn_forward, ("keras_bn_forward",)),
    "keras_bn_backward": (check_keras_bn_backward, ("keras_bn_backward",)),
    "keras_images": (check_keras_nhwc, ("keras_bn_forward", "keras_bn_backward")),
    "used_batch_statistics": (check_used_batch_statistics, ("used_batch_statistics",)),
    "mode_answers": (check_mode_answers, ("MODE_ANSWERS",)),
    "build_mlp": (check_build_mlp, ("build_mlp",)),
    "build_cnn": (check_build_cnn, ("build_cnn",)),
    "experiments": (check_experiments, ("HISTORIES",)),
    "keras_norms": (
        check_keras_groupnorm,
        ("keras_groupnorm_forward", "keras_layernorm_forward"),
    ),
    "keras_norm_gradients": (check_keras_groupnorm_backward, ("keras_groupnorm_backward",)),
}
SUITE_LABELS = {"keras_images": "keras_bn_forward and keras_bn_backward on NHWC images"}
GRADER_SOCKET_VARIABLE = "BNKIT_CHECKER_SOCKET"  # set only when the notebook is being graded
MAX_PROBLEM_LINES = 6


def suite_label(suite):
    """What a student reads for ``suite``: the names it checks."""
    return SUITE_LABELS.get(suite) or " and ".join(SUITES[suite][1])


def run_suite(suite, namespace):
    """Run one suite quietly on the objects of ``namespace``; return its ``[problem]`` lines."""
    check_function, names = SUITES[suite]
    missing = [name for name in names if name not in namespace]
    if missing:
        return [f"[problem] {name} is not defined: run its cell first" for name in missing]
    captured = io.StringIO()
    try:
        with (
            contextlib.redirect_stdout(captured),
            contextlib.redirect_stderr(captured),
            warnings.catch_warnings(),
            np.errstate(all="ignore"),
        ):
            warnings.simplefilter("ignore")
            check_function(*(namespace[name] for name in names))
    except KeyboardInterrupt:
        raise
    except BaseException as error:  # noqa: BLE001  a public check must never break the cell
        stopped = f"{type(error).__name__}: {str(error)[:120]}"
        return [f"[problem] {suite_label(suite)}: the public checks stopped ({stopped})"]
    return [line for line in captured.getvalue().splitlines() if line.startswith("[problem]")]


def confirm(suite):
    """What a grade cell runs before its hidden tests: the public checks of ``suite``, quietly.

    Prints one summary line, then (when not graded) up to six ``[problem]`` lines. Never raises
    and never writes to stderr, except under nbgrader's Validate (``NBGRADER_VALIDATING=1``, no
    grader attached): then a problem is also written to stderr, which makes Validate count the
    cell as failed.

    Args:
        suite: a key of :data:`SUITES`, e.g. ``"batchnorm_forward"``.

    Returns:
        None (so the cell shows no ``Out[n]`` value).
    """
    namespace = sys._getframe(1).f_globals
    problems = run_suite(suite, namespace)
    label = suite_label(suite)
    graded = bool(os.environ.get(GRADER_SOCKET_VARIABLE))
    if not problems:
        later = "" if graded else " The hidden tests run when your notebook is graded."
        print(f"Public checks of {label}: all passed.{later}")
        return None
    print(f"Public checks of {label}: {len(problems)} problem(s), see the try-it cell above.")
    if graded:
        return None  # the hidden tests' [FAIL] lines that follow say more
    for line in problems[:MAX_PROBLEM_LINES]:
        print(f"  {line}")
    if os.environ.get("NBGRADER_VALIDATING") == "1":
        sys.stderr.write(f"Validate: the public checks of {label} found a problem:\n")
        sys.stderr.write(f"  {problems[0]}\n")
    return None
