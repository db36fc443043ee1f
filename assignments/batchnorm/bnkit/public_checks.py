"""Checks you can run before submitting: shapes, the hand-worked example, the commonest mistakes.

They use small public inputs and the formulas stated in the notebook; passing them does not
guarantee full marks (the grader uses other inputs and checks more), failing one means a
graded check will fail too. Each check prints ``[ok]`` or ``[problem]`` lines and returns
True when everything was ok.
"""

import contextlib

import numpy as np

from .gradcheck import eval_numerical_gradient_array, rel_error


class _Checker:
    def __init__(self, name):
        self.name = name
        self.good = True

    def expect(self, condition, what, hint=""):
        if condition:
            print(f"[ok] {self.name}: {what}")
        else:
            self.good = False
            print(f"[problem] {self.name}: {what}" + (f" -- {hint}" if hint else ""))
        return condition

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
    return check.good


def _check_backward(check, forward, backward, x, gamma, beta, param):
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
            check.expect(
                error < 1e-6,
                f"{name} matches the numerical gradient (relative error {error:.1e})",
                "expect below 1e-7; check the paths through the mean and the variance",
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
        )
    return check.good
