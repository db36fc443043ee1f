"""Numerical gradients and relative errors, to check a backward pass by hand."""

import numpy as np


def rel_error(x, y):
    """Largest relative error between two arrays of the same shape (a float).

    Expect below 1e-7 for a correct float64 backward pass checked numerically.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return float(np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y))))
