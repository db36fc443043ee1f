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


def _group_rows(x, groups):
    """NHWC ``x`` as rows, one per (example, group): shape (N * G, H * W * C / G).

    Groups are contiguous runs of C / G channels (channels 0..C/G-1 form group 0), as in
    Keras's ``GroupNormalization``.
    """
    n, h, w, c = x.shape
    return x.reshape(n, h, w, groups, c // groups).transpose(0, 3, 1, 2, 4).reshape(n * groups, -1)


def _ungroup_rows(rows, shape, groups):
    """Inverse of :func:`_group_rows`."""
    n, h, w, c = shape
    return rows.reshape(n, groups, h, w, c // groups).transpose(0, 2, 3, 1, 4).reshape(shape)


def check_groups(channels, groups):
    """Raise ValueError unless ``groups`` is a positive divisor of ``channels``."""
    if groups < 1 or channels % groups:
        raise ValueError(
            f"the number of channels C={channels} must be divisible by the number of groups "
            f"G={groups}"
        )


def groupnorm_forward(x, gamma, beta, groups, gn_param):
    """Reference group normalisation of an NHWC tensor (Wu & He, 2018; Keras semantics).

    Statistics per example and per group of C / G contiguous channels, over H, W and those
    channels; biased variance; ``eps`` inside the square root; gamma and beta per channel.
    G = C is instance normalisation, G = 1 layer normalisation over (H, W, C).

    Args:
        x: (N, H, W, C). gamma, beta: (C,). groups: G, a divisor of C. gn_param: dict with
            ``eps``.

    Returns:
        out (N, H, W, C) float64 and a cache for :func:`groupnorm_backward`.

    Raises:
        ValueError: C is not divisible by G.
    """
    x = np.asarray(x, dtype=np.float64)
    check_groups(x.shape[-1], groups)
    eps = float(gn_param["eps"])
    rows = _group_rows(x, groups)
    mean = rows.mean(axis=1, keepdims=True)
    inv_std = 1.0 / np.sqrt(rows.var(axis=1, keepdims=True) + eps)
    x_hat = _ungroup_rows((rows - mean) * inv_std, x.shape, groups)
    gamma = np.asarray(gamma, dtype=np.float64)
    out = gamma * x_hat + np.asarray(beta, dtype=np.float64)
    return out, (x_hat, gamma, inv_std, groups)


def groupnorm_backward(dout, cache):
    """Reference backward of :func:`groupnorm_forward`: layer norm's backward per group row.

    Args:
        dout: (N, H, W, C). cache: from :func:`groupnorm_forward`.

    Returns:
        dx (N, H, W, C), dgamma (C,), dbeta (C,).
    """
    x_hat, gamma, inv_std, groups = cache
    dout = np.asarray(dout, dtype=np.float64)
    dbeta = dout.sum(axis=(0, 1, 2))
    dgamma = (dout * x_hat).sum(axis=(0, 1, 2))
    g = _group_rows(dout * gamma, groups)
    rows_hat = _group_rows(x_hat, groups)
    drows = inv_std * (
        g - g.mean(axis=1, keepdims=True) - rows_hat * (g * rows_hat).mean(axis=1, keepdims=True)
    )
    return _ungroup_rows(drows, dout.shape, groups), dgamma, dbeta


def batchnorm_gradient_pieces(x, gamma, dout, eps):
    """The intermediate derivatives of BN's closed-form derivation (Part C), float64.

    Returns:
        dict with ``dx_hat`` (N, D) = gamma * dout, ``dvar`` (D,) = dL/dvar and ``dmean`` (D,) =
        dL/dmean (its path through the variance is zero because sum(x - mean) = 0).
    """
    x = np.asarray(x, dtype=np.float64)
    dx_hat = np.asarray(dout, dtype=np.float64) * np.asarray(gamma, dtype=np.float64)
    centered = x - x.mean(axis=0)
    std = np.sqrt(x.var(axis=0) + float(eps))
    dvar = -0.5 * (dx_hat * centered).sum(axis=0) / std**3
    dmean = -dx_hat.sum(axis=0) / std
    return {"dx_hat": dx_hat, "dvar": dvar, "dmean": dmean}
