"""Hidden checks for bn_numpy.ipynb (NumPy Batch Normalization)."""

from . import reference
from .compare import mismatch
from .registry import register
from .runner import StudentError

NOTEBOOK = "bn_numpy.ipynb"


def _bn_param(mode, eps, momentum, running_mean, running_var):
    return {
        "mode": mode,
        "eps": eps,
        "momentum": momentum,
        "running_mean": running_mean.copy(),
        "running_var": running_var.copy(),
    }


def _unpack_pair(result, name):
    if not isinstance(result, tuple) or len(result) != 2:
        raise StudentError(f"{name} must return a tuple (out, cache), got {type(result).__name__}")
    return result


@register("bn_forward_train", NOTEBOOK, points=2)
def forward_train(ctx):
    """batchnorm_forward, train mode: output and updated running statistics"""
    forward = ctx.function("batchnorm_forward")
    # (N, D, eps, momentum, offset, scale): N != D, and a small-variance case where the place
    # of eps matters (std 0.1 against eps 1e-3 shows a 4% difference).
    for n, d, eps, momentum, offset, scale in [(7, 5, 1e-5, 0.9, 3.0, 2.0), (16, 3, 1e-3, 0.99, -1.0, 0.1)]:
        x = ctx.rng.normal(offset, scale, size=(n, d))
        gamma = ctx.rng.normal(1.0, 0.5, size=d)
        beta = ctx.rng.normal(0.0, 0.5, size=d)
        running_mean = ctx.rng.normal(0.0, 1.0, size=d)
        running_var = ctx.rng.uniform(0.5, 2.0, size=d)
        student_param = _bn_param("train", eps, momentum, running_mean, running_var)
        out, _ = _unpack_pair(ctx.call(forward, x.copy(), gamma.copy(), beta.copy(), student_param), "batchnorm_forward")
        ref_out, ref_mean, ref_var, _ = reference.batchnorm_forward(x, gamma, beta, student_param | {"running_mean": running_mean, "running_var": running_var})
        label = f"batchnorm_forward train, x {x.shape}, eps={eps:g}, momentum={momentum:g}"
        for what, got, ref in [("out", out, ref_out), ("running_mean", student_param["running_mean"], ref_mean), ("running_var", student_param["running_var"], ref_var)]:
            reason = mismatch(got, ref)
            if reason is None:
                ctx.report.passed(f"{label}: {what}")
            else:
                ctx.report.failed(f"{label}: {what}", reason)

