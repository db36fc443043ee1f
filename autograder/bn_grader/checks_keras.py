"""Hidden checks for bn_keras.ipynb (Keras BatchNormalization)."""

from . import reference
from .compare import mismatch
from .registry import register

NOTEBOOK = "bn_keras.ipynb"


@register("keras_make_layer", NOTEBOOK, points=2)
def make_layer(ctx):
    """make_keras_bn: settings and state of the layer match a NumPy BN state"""
    make_keras_bn = ctx.function("make_keras_bn")
    d = 6
    bn_param = {
        "mode": "test",
        "eps": 0.05,
        "momentum": 0.8,
        "running_mean": ctx.rng.normal(2.0, 1.0, size=d),
        "running_var": ctx.rng.uniform(0.01, 0.2, size=d),
    }
    gamma = ctx.rng.normal(1.0, 0.5, size=d)
    beta = ctx.rng.normal(0.0, 0.5, size=d)
    x = ctx.rng.normal(2.0, 0.3, size=(9, d))
    layer = ctx.call(make_keras_bn, dict(bn_param), gamma.copy(), beta.copy(), "float64")
    ctx.report.add("make_keras_bn: momentum", abs(getattr(layer, "momentum", -1) - 0.8) < 1e-12,
                   f"expected 0.8 (the NumPy value), got {getattr(layer, 'momentum', None)}")
    ctx.report.add("make_keras_bn: epsilon", abs(getattr(layer, "epsilon", -1) - 0.05) < 1e-12,
                   f"expected 0.05 (the NumPy value), got {getattr(layer, 'epsilon', None)}")
    got = ctx.call(lambda: layer(x, training=False).numpy())
    ref, _, _, _ = reference.batchnorm_forward(x, gamma, beta, bn_param)
    reason = mismatch(got, ref)
    ctx.report.add("make_keras_bn: inference output with the given state", reason is None, reason or "")
