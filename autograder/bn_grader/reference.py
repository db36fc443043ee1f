"""Float64 reference implementation of Batch Normalization (grading side only).

Semantics follow Keras 3 ``BatchNormalization`` (see ../shared FACTS): biased batch variance,
``running = momentum * running + (1 - momentum) * batch_stat``, ``eps`` inside the square root.
Every function computes in float64 whatever the input dtype, so that it can serve as the
"truth" that student float32/float64 results are compared against.
"""

import numpy as np


def batchnorm_forward(x, gamma, beta, bn_param):
    """Reference BN forward pass.

    Args:
        x: inputs, shape (N, D).
        gamma, beta: scale and shift, shape (D,).
        bn_param: dict with ``mode`` ("train" or "test"), ``eps``, ``momentum``,
            ``running_mean`` (D,), ``running_var`` (D,). Not modified: the updated running
            statistics are returned instead.

    Returns:
        out: (N, D) float64.
        running_mean, running_var: (D,) float64, the statistics after this call.
        cache: tuple for :func:`batchnorm_backward` (only in train mode, else None).
    """
    x = np.asarray(x, dtype=np.float64)
    gamma = np.asarray(gamma, dtype=np.float64)
    beta = np.asarray(beta, dtype=np.float64)
    eps = float(bn_param["eps"])
    momentum = float(bn_param["momentum"])
    running_mean = np.asarray(bn_param["running_mean"], dtype=np.float64)
    running_var = np.asarray(bn_param["running_var"], dtype=np.float64)
    mode = bn_param["mode"]
    if mode == "train":
        mean = x.mean(axis=0)
        var = x.var(axis=0)
        inv_std = 1.0 / np.sqrt(var + eps)
        x_hat = (x - mean) * inv_std
        out = gamma * x_hat + beta
        new_mean = momentum * running_mean + (1.0 - momentum) * mean
        new_var = momentum * running_var + (1.0 - momentum) * var
        return out, new_mean, new_var, (x_hat, gamma, inv_std)
    if mode == "test":
        out = gamma * (x - running_mean) / np.sqrt(running_var + eps) + beta
        return out, running_mean.copy(), running_var.copy(), None
    raise ValueError(f"mode must be 'train' or 'test', got {mode!r}")


def batchnorm_backward(dout, cache):
    """Reference BN backward pass (training mode), closed form.

    Args:
        dout: upstream gradient, shape (N, D).
        cache: from :func:`batchnorm_forward` in train mode.

    Returns:
        dx (N, D), dgamma (D,), dbeta (D,), all float64.
    """
    x_hat, gamma, inv_std = cache
    dout = np.asarray(dout, dtype=np.float64)
    n = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * x_hat).sum(axis=0)
    dx = (gamma * inv_std / n) * (n * dout - dbeta - x_hat * dgamma)
    return dx, dgamma, dbeta


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    """Reference BN over an NHWC tensor: statistics per channel (last axis).

    Args:
        x: (N, H, W, C). gamma, beta: (C,). bn_param: as in :func:`batchnorm_forward`.

    Returns:
        out (N, H, W, C), running_mean (C,), running_var (C,), cache.
    """
    x = np.asarray(x, dtype=np.float64)
    channels = x.shape[-1]
    out, running_mean, running_var, cache = batchnorm_forward(
        x.reshape(-1, channels), gamma, beta, bn_param
    )
    return out.reshape(x.shape), running_mean, running_var, cache


def spatial_batchnorm_backward(dout, cache):
    """Reference backward of :func:`spatial_batchnorm_forward`.

    Args:
        dout: (N, H, W, C). cache: from the spatial forward pass in train mode.

    Returns:
        dx (N, H, W, C), dgamma (C,), dbeta (C,).
    """
    dout = np.asarray(dout, dtype=np.float64)
    dx, dgamma, dbeta = batchnorm_backward(dout.reshape(-1, dout.shape[-1]), cache)
    return dx.reshape(dout.shape), dgamma, dbeta


def layernorm_forward(x, gamma, beta, ln_param):
    """Reference layer normalisation: statistics per example (over the last axis).

    Args:
        x: (N, D). gamma, beta: (D,). ln_param: dict with ``eps``.

    Returns:
        out (N, D) float64 and a cache for :func:`layernorm_backward`.
    """
    x = np.asarray(x, dtype=np.float64)
    eps = float(ln_param["eps"])
    mean = x.mean(axis=1, keepdims=True)
    var = x.var(axis=1, keepdims=True)
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = (x - mean) * inv_std
    gamma = np.asarray(gamma, dtype=np.float64)
    return gamma * x_hat + np.asarray(beta, dtype=np.float64), (x_hat, gamma, inv_std)


def layernorm_backward(dout, cache):
    """Reference backward of :func:`layernorm_forward`.

    Args:
        dout: (N, D). cache: from :func:`layernorm_forward`.

    Returns:
        dx (N, D), dgamma (D,), dbeta (D,).
    """
    x_hat, gamma, inv_std = cache
    dout = np.asarray(dout, dtype=np.float64)
    d = dout.shape[1]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * x_hat).sum(axis=0)
    dx_hat = dout * gamma
    dx = (inv_std / d) * (
        d * dx_hat
        - dx_hat.sum(axis=1, keepdims=True)
        - x_hat * (dx_hat * x_hat).sum(axis=1, keepdims=True)
    )
    return dx, dgamma, dbeta
