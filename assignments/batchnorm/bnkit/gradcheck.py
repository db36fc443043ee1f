"""Numerical gradients and relative errors, to check a backward pass by hand.

Central differences: ``df/dx_i ~ (f(x + h e_i) - f(x - h e_i)) / (2 h)``, with an error of
order ``h**2`` from truncation and ``1e-16 / h`` from rounding in float64; ``h = 1e-5``
balances both at about 1e-10, so a correct backward pass shows a relative error well below
1e-7 (CS231n's rule of thumb). Always check in float64: float32 rounding alone is about 1e-3 here.
"""

import numpy as np


def rel_error(x, y):
    """Largest relative error between two arrays of the same shape (a float).

    Expect below 1e-7 for a correct float64 backward pass checked numerically; about 1e-2 or
    more means a mistake. Shapes must agree exactly: (1, D) against (D,) raises ValueError.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"rel_error needs equal shapes, got {x.shape} and {y.shape}")
    if x.size == 0:
        return 0.0
    return float(np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y))))


def eval_numerical_gradient(f, x, h=1e-5):
    """Numerical gradient of a scalar function ``f`` at ``x`` (central differences).

    Args:
        f: function of one array returning a float.
        x: float64 array of any shape; changed during the call and restored afterwards.
        h: step.

    Returns:
        array of the shape of ``x``: df/dx.
    """
    if x.dtype != np.float64:
        raise ValueError(f"check gradients in float64, got {x.dtype}")
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        old = x[index]
        x[index] = old + h
        plus = float(f(x))
        x[index] = old - h
        minus = float(f(x))
        x[index] = old
        grad[index] = (plus - minus) / (2 * h)
    return grad


def eval_numerical_gradient_array(f, x, df, h=1e-5):
    """Numerical gradient through an array-valued ``f``: ``sum(df * f(x))`` differentiated.

    Args:
        f: function of one array returning an array of the shape of ``df``.
        x: float64 array of any shape; changed during the call and restored afterwards.
        df: upstream gradient, the shape of ``f(x)``.
        h: step.

    Returns:
        array of the shape of ``x``: what a backward pass should return for ``x``.
    """
    if x.dtype != np.float64:
        raise ValueError(f"check gradients in float64, got {x.dtype}")
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        old = x[index]
        x[index] = old + h
        plus = np.array(f(x), dtype=np.float64)
        x[index] = old - h
        minus = np.array(f(x), dtype=np.float64)
        x[index] = old
        grad[index] = np.sum((plus - minus) * df) / (2 * h)
    return grad
