"""Failing submissions written the way students write them, each with its true cause(s).

Not edits of the model answer: each submission is whole functions in a student's own style
(CS231n-like staged code, one-liners, loops, helper functions, PyTorch habits), with one or two
real mistakes. ``causes`` are the catalogue ids (mistakes.py, mistakes_keras.py) a correct
diagnosis may name for it; a failing item that names anything else is a wrong name.
``checks`` are the check ids graded (the ones whose functions the submission defines).

tests/test_diagnosis_corpus.py grades every submission through ``bn_grader.check`` and measures
the share of failing items that carry a right cause.
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Submission:
    name: str
    notebook: str  # "bn_numpy" or "bn_keras"
    causes: frozenset
    checks: tuple
    code: str


FWD = ("bn_forward_train", "bn_forward_running", "bn_forward_test")
BWD = ("bn_backward_dx", "bn_backward_params")
SPATIAL = ("spatial_forward",)
LN = ("ln_forward", "ln_backward")


def _np(name, causes, checks, code):
    return Submission(name, "bn_numpy", frozenset(causes), tuple(checks), code)


def _keras(name, causes, checks, code):
    return Submission(name, "bn_keras", frozenset(causes), tuple(checks), code)


# A correct forward in two students' styles, reused by submissions whose mistakes are elsewhere.
_FORWARD_CACHE_TUPLE = """
def batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param["mode"]
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)
    N, D = x.shape
    running_mean = bn_param.get("running_mean", np.zeros(D, dtype=x.dtype))
    running_var = bn_param.get("running_var", np.ones(D, dtype=x.dtype))
    out, cache = None, None
    if mode == "train":
        sample_mean = np.mean(x, axis=0)
        sample_var = np.var(x, axis=0)
        x_norm = (x - sample_mean) / np.sqrt(sample_var + eps)
        out = gamma * x_norm + beta
        cache = (x, x_norm, sample_mean, sample_var, gamma, beta, eps)
        running_mean = momentum * running_mean + (1 - momentum) * sample_mean
        running_var = momentum * running_var + (1 - momentum) * sample_var
    elif mode == "test":
        x_norm = (x - running_mean) / np.sqrt(running_var + eps)
        out = gamma * x_norm + beta
    else:
        raise ValueError('Invalid forward batchnorm mode "%s"' % mode)
    bn_param["running_mean"] = running_mean
    bn_param["running_var"] = running_var
    return out, cache
"""

_FORWARD_DICT = """
def batchnorm_forward(x, gamma, beta, bn_param):
    eps, momentum = bn_param["eps"], bn_param["momentum"]
    if bn_param["mode"] == "train":
        mu = x.mean(0)
        xmu = x - mu
        var = (xmu ** 2).mean(0)
        sqrtvar = np.sqrt(var + eps)
        ivar = 1.0 / sqrtvar
        xhat = xmu * ivar
        out = gamma * xhat + beta
        bn_param["running_mean"] = momentum * bn_param["running_mean"] + (1 - momentum) * mu
        bn_param["running_var"] = momentum * bn_param["running_var"] + (1 - momentum) * var
        return out, {"xhat": xhat, "xmu": xmu, "ivar": ivar, "sqrtvar": sqrtvar, "var": var,
                     "gamma": gamma, "eps": eps}
    if bn_param["mode"] == "test":
        xhat = (x - bn_param["running_mean"]) / np.sqrt(bn_param["running_var"] + eps)
        return gamma * xhat + beta, None
    raise ValueError("mode")
"""

_SPATIAL_OK = """
def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    N, H, W, C = x.shape
    out, cache = batchnorm_forward(x.reshape(N * H * W, C), gamma, beta, bn_param)
    return out.reshape(N, H, W, C), cache
"""

_LN_FORWARD_OK = """
def layernorm_forward(x, gamma, beta, ln_param):
    eps = ln_param.get("eps", 1e-5)
    mu = np.mean(x, axis=1, keepdims=True)
    var = np.var(x, axis=1, keepdims=True)
    std = np.sqrt(var + eps)
    x_hat = (x - mu) / std
    return gamma * x_hat + beta, (x_hat, std, gamma)
"""

NUMPY = [
    _np(
        "all-elements-statistics",
        {"stats-over-all-elements"},
        FWD + SPATIAL,
        _FORWARD_CACHE_TUPLE.replace("np.mean(x, axis=0)", "np.mean(x)").replace(
            "np.var(x, axis=0)", "np.var(x)"
        )
        + _SPATIAL_OK,
    ),
    _np(
        "test-running-mean-batch-var",
        {"test-uses-batch-stats"},
        FWD,
        """
def batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param['mode']
    eps = bn_param['eps']
    m = bn_param['momentum']
    if mode == 'train':
        mean = np.mean(x, axis=0)
        var = np.var(x, axis=0)
        bn_param['running_mean'] = m * bn_param['running_mean'] + (1 - m) * mean
        bn_param['running_var'] = m * bn_param['running_var'] + (1 - m) * var
    elif mode == 'test':
        mean = bn_param['running_mean']
        var = np.var(x, axis=0)   # variance of this batch
    else:
        raise ValueError(mode)
    x_hat = (x - mean) / np.sqrt(var + eps)
    return gamma * x_hat + beta, (x, x_hat, mean, var, gamma, eps)
""",
    ),
    _np(
        "test-batch-mean-running-var",
        {"test-uses-batch-stats"},
        FWD,
        """
def batchnorm_forward(x, gamma, beta, bn_param):
    eps = bn_param["eps"]
    momentum = bn_param["momentum"]
    batch_mean = x.mean(axis=0)
    if bn_param["mode"] == "train":
        batch_var = x.var(axis=0)
        bn_param["running_mean"] = momentum * bn_param["running_mean"] + (1 - momentum) * batch_mean
        bn_param["running_var"] = momentum * bn_param["running_var"] + (1 - momentum) * batch_var
        out = gamma * (x - batch_mean) / np.sqrt(batch_var + eps) + beta
        return out, (x, batch_mean, batch_var, gamma, eps)
    elif bn_param["mode"] == "test":
        out = gamma * (x - batch_mean) / np.sqrt(bn_param["running_var"] + eps) + beta
        return out, None
    raise ValueError("bad mode")
""",
    ),
    _np(
        "shift-inside-division",
        {"shift-divided-by-std"},
        FWD + SPATIAL,
        """
def _normalize(x, mean, var, gamma, beta, eps):
    return (gamma * (x - mean) + beta) / np.sqrt(var + eps)


def batchnorm_forward(x, gamma, beta, bn_param):
    eps, momentum = bn_param["eps"], bn_param["momentum"]
    if bn_param["mode"] == "train":
        mean, var = x.mean(axis=0), x.var(axis=0)
        bn_param["running_mean"] = momentum * bn_param["running_mean"] + (1 - momentum) * mean
        bn_param["running_var"] = momentum * bn_param["running_var"] + (1 - momentum) * var
    elif bn_param["mode"] == "test":
        mean, var = bn_param["running_mean"], bn_param["running_var"]
    else:
        raise ValueError(bn_param["mode"])
    return _normalize(x, mean, var, gamma, beta, eps), (x, mean, var, gamma, eps)
"""
        + _SPATIAL_OK,
    ),
    _np(
        "backward-std-without-eps",
        {"eps-missing-backward"},
        BWD,
        _FORWARD_CACHE_TUPLE
        + """
def batchnorm_backward(dout, cache):
    x, x_norm, mean, var, gamma, beta, eps = cache
    N = x.shape[0]
    std = np.sqrt(var)
    dbeta = np.sum(dout, axis=0)
    dgamma = np.sum(dout * x_norm, axis=0)
    dx_norm = dout * gamma
    dvar = np.sum(dx_norm * (x - mean), axis=0) * -0.5 * std ** -3
    dmean = np.sum(-dx_norm / std, axis=0) + dvar * np.mean(-2 * (x - mean), axis=0)
    dx = dx_norm / std + dvar * 2 * (x - mean) / N + dmean / N
    return dx, dgamma, dbeta
""",
    ),
    _np(
        "unbiased-divide-by-n-minus-1",
        {"unbiased-variance"},
        FWD,
        """
def batchnorm_forward(x, gamma, beta, bn_param):
    N = x.shape[0]
    eps = bn_param["eps"]
    mom = bn_param["momentum"]
    if bn_param["mode"] == "train":
        mu = np.sum(x, axis=0) / N
        with np.errstate(divide="ignore", invalid="ignore"):
            sigma2 = np.sum((x - mu) ** 2, axis=0) / (N - 1)
        xhat = (x - mu) / np.sqrt(sigma2 + eps)
        bn_param["running_mean"] = mom * bn_param["running_mean"] + (1 - mom) * mu
        bn_param["running_var"] = mom * bn_param["running_var"] + (1 - mom) * sigma2
        return gamma * xhat + beta, (xhat, gamma, sigma2, eps)
    if bn_param["mode"] == "test":
        xhat = (x - bn_param["running_mean"]) / np.sqrt(bn_param["running_var"] + eps)
        return gamma * xhat + beta, None
    raise ValueError
""",
    ),
    _np(
        "backward-forgot-return-dgamma",
        {"returns-none", "unbiased-variance"},
        BWD,
        _FORWARD_DICT.replace("var = (xmu ** 2).mean(0)", "var = x.var(0, ddof=1)")
        + """
def batchnorm_backward(dout, cache):
    xhat, ivar, gamma = cache["xhat"], cache["ivar"], cache["gamma"]
    N = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = None  # TODO
    dxhat = dout * gamma
    dx = ivar / N * (N * dxhat - dxhat.sum(0) - xhat * (dxhat * xhat).sum(0))
    return dx, dgamma, dbeta
""",
    ),
    _np(
        "momentum-pytorch-style",
        {"momentum-swapped", "pytorch-running-var"},
        FWD,
        """
def batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param["mode"]
    eps = bn_param["eps"]
    momentum = bn_param["momentum"]
    if mode == "train":
        mean = x.mean(axis=0)
        var = x.var(axis=0)
        n = x.shape[0]
        unbiased_var = var * n / (n - 1) if n > 1 else var * np.nan
        # running = (1 - momentum) * running + momentum * new, like torch.nn.BatchNorm1d
        bn_param["running_mean"] = (1 - momentum) * bn_param["running_mean"] + momentum * mean
        bn_param["running_var"] = (1 - momentum) * bn_param["running_var"] + momentum * unbiased_var
        xhat = (x - mean) / np.sqrt(var + eps)
    elif mode == "test":
        xhat = (x - bn_param["running_mean"]) / np.sqrt(bn_param["running_var"] + eps)
        return gamma * xhat + beta, None
    else:
        raise ValueError(mode)
    return gamma * xhat + beta, (x, xhat, var, gamma, eps)
""",
    ),
    _np(
        "eps-outside-and-swapped-affine",
        {"eps-outside-sqrt", "gamma-beta-swapped"},
        FWD,
        """
def batchnorm_forward(x, gamma, beta, bn_param):
    eps = bn_param["eps"]
    if bn_param["mode"] == "train":
        mean = np.mean(x, axis=0)
        var = np.mean((x - mean) ** 2, axis=0)
        m = bn_param["momentum"]
        bn_param["running_mean"] = m * bn_param["running_mean"] + (1 - m) * mean
        bn_param["running_var"] = m * bn_param["running_var"] + (1 - m) * var
    elif bn_param["mode"] == "test":
        mean, var = bn_param["running_mean"], bn_param["running_var"]
    else:
        raise ValueError("mode must be train or test")
    x_hat = (x - mean) / (np.sqrt(var) + eps)
    out = beta * x_hat + gamma
    return out, (x_hat, mean, var)
""",
    ),
    _np(
        "stats-per-example",
        {"wrong-axis"},
        FWD,
        """
def batchnorm_forward(x, gamma, beta, bn_param):
    eps = bn_param["eps"]
    momentum = bn_param["momentum"]
    if bn_param["mode"] == "train":
        mean = np.mean(x, axis=1, keepdims=True)
        var = np.var(x, axis=1, keepdims=True)
        bn_param["running_mean"] = momentum * bn_param["running_mean"] + (1 - momentum) * mean.ravel()
        bn_param["running_var"] = momentum * bn_param["running_var"] + (1 - momentum) * var.ravel()
        out = gamma * (x - mean) / np.sqrt(var + eps) + beta
        return out, (x, mean, var, gamma, eps)
    if bn_param["mode"] == "test":
        out = gamma * (x - bn_param["running_mean"]) / np.sqrt(bn_param["running_var"] + eps) + beta
        return out, None
    raise ValueError("mode")
""",
    ),
    _np(
        "running-in-local-variables",
        {"running-not-written-back"},
        FWD,
        """
def batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param["mode"]
    eps = bn_param["eps"]
    momentum = bn_param["momentum"]
    running_mean = bn_param["running_mean"].copy()
    running_var = bn_param["running_var"].copy()
    if mode == "train":
        mu = x.mean(axis=0)
        var = x.var(axis=0)
        running_mean = momentum * running_mean + (1 - momentum) * mu
        running_var = momentum * running_var + (1 - momentum) * var
        x_hat = (x - mu) / np.sqrt(var + eps)
        cache = (x, x_hat, mu, var, gamma, eps)
    elif mode == "test":
        x_hat = (x - running_mean) / np.sqrt(running_var + eps)
        cache = None
    else:
        raise ValueError(mode)
    return gamma * x_hat + beta, cache
""",
    ),
    _np(
        "running-replaced-by-batch",
        {"running-replaced"},
        FWD,
        """
def batchnorm_forward(x, gamma, beta, bn_param):
    eps = bn_param["eps"]
    if bn_param["mode"] == "train":
        mean = x.mean(axis=0)
        var = x.var(axis=0)
        bn_param["running_mean"] = mean
        bn_param["running_var"] = var
    elif bn_param["mode"] == "test":
        mean = bn_param["running_mean"]
        var = bn_param["running_var"]
    else:
        raise ValueError("unknown mode")
    xn = (x - mean) / np.sqrt(var + eps)
    return gamma * xn + beta, (x, xn, mean, var, gamma, eps)
""",
    ),
    _np(
        "running-var-with-std",
        {"running-var-is-std"},
        FWD,
        """
def batchnorm_forward(x, gamma, beta, bn_param):
    eps = bn_param["eps"]
    mom = bn_param["momentum"]
    if bn_param["mode"] == "train":
        mu = np.mean(x, axis=0)
        sd = np.std(x, axis=0)
        bn_param["running_mean"] = mom * bn_param["running_mean"] + (1 - mom) * mu
        bn_param["running_var"] = mom * bn_param["running_var"] + (1 - mom) * sd
        xhat = (x - mu) / np.sqrt(sd ** 2 + eps)
    elif bn_param["mode"] == "test":
        xhat = (x - bn_param["running_mean"]) / np.sqrt(bn_param["running_var"] + eps)
    else:
        raise ValueError
    return gamma * xhat + beta, (x, xhat, mu if bn_param["mode"] == "train" else None)
""",
    ),
    _np(
        "divides-by-variance",
        {"sqrt-missing"},
        FWD,
        """
def batchnorm_forward(x, gamma, beta, bn_param):
    eps = bn_param["eps"]
    momentum = bn_param["momentum"]
    if bn_param["mode"] == "train":
        mean = x.mean(axis=0)
        var = x.var(axis=0)
        bn_param["running_mean"] = momentum * bn_param["running_mean"] + (1 - momentum) * mean
        bn_param["running_var"] = momentum * bn_param["running_var"] + (1 - momentum) * var
        x_hat = (x - mean) / (var + eps)
    elif bn_param["mode"] == "test":
        x_hat = (x - bn_param["running_mean"]) / np.sqrt(bn_param["running_var"] + eps)
    else:
        raise ValueError(bn_param["mode"])
    return gamma * x_hat + beta, (x_hat, mean if bn_param["mode"] == "train" else None)
""",
    ),
    _np(
        "variance-of-uncentred-x",
        {"var-not-centred"},
        FWD,
        """
def batchnorm_forward(x, gamma, beta, bn_param):
    eps = bn_param["eps"]
    momentum = bn_param["momentum"]
    if bn_param["mode"] == "train":
        mean = np.mean(x, axis=0)
        var = np.mean(x ** 2, axis=0)
        bn_param["running_mean"] = momentum * bn_param["running_mean"] + (1 - momentum) * mean
        bn_param["running_var"] = momentum * bn_param["running_var"] + (1 - momentum) * var
    elif bn_param["mode"] == "test":
        mean, var = bn_param["running_mean"], bn_param["running_var"]
    else:
        raise ValueError("mode")
    return gamma * (x - mean) / np.sqrt(var + eps) + beta, None
""",
    ),
    _np(
        "test-mode-forgets-affine",
        {"gamma-beta-missing"},
        FWD,
        """
def batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param["mode"]
    eps = bn_param["eps"]
    momentum = bn_param["momentum"]
    if mode == "train":
        mean = x.mean(axis=0)
        var = x.var(axis=0)
        bn_param["running_mean"] = momentum * bn_param["running_mean"] + (1 - momentum) * mean
        bn_param["running_var"] = momentum * bn_param["running_var"] + (1 - momentum) * var
        x_hat = (x - mean) / np.sqrt(var + eps)
        return gamma * x_hat + beta, (x, x_hat, mean, var, gamma, eps)
    if mode == "test":
        return (x - bn_param["running_mean"]) / np.sqrt(bn_param["running_var"] + eps), None
    raise ValueError(mode)
""",
    ),
    _np(
        "eps-missing-zero-variance",
        {"eps-missing", "nan-or-inf"},
        ("bn_forward_train",),
        """
def batchnorm_forward(x, gamma, beta, bn_param):
    mu = x.mean(axis=0)
    var = x.var(axis=0)
    if bn_param["mode"] == "train":
        with np.errstate(divide="ignore", invalid="ignore"):
            x_hat = (x - mu) / np.sqrt(var)
        return gamma * x_hat + beta, (x_hat, var)
    raise ValueError("only train")
""",
    ),
    _np(
        "unbiased-and-shift-divided",
        {"unbiased-variance", "shift-divided-by-std"},
        ("bn_forward_train",),
        """
def batchnorm_forward(x, gamma, beta, bn_param):
    if bn_param["mode"] != "train":
        raise ValueError("not done yet")
    mu = np.mean(x, axis=0)
    s2 = np.var(x, axis=0, ddof=1)
    out = (gamma * (x - mu) + beta) / np.sqrt(s2 + bn_param["eps"])
    return out, (x, mu, s2)
""",
    ),
    _np(
        "test-batch-stats-and-eps-outside",
        {"test-uses-batch-stats", "eps-outside-sqrt"},
        ("bn_forward_train", "bn_forward_test"),
        """
def batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param["mode"]
    if mode not in ("train", "test"):
        raise ValueError(mode)
    mu = x.mean(axis=0)
    var = x.var(axis=0)
    if mode == "train":
        m = bn_param["momentum"]
        bn_param["running_mean"] = m * bn_param["running_mean"] + (1 - m) * mu
        bn_param["running_var"] = m * bn_param["running_var"] + (1 - m) * var
    x_hat = (x - mu) / (np.sqrt(var) + bn_param["eps"])
    return gamma * x_hat + beta, (x, x_hat, mu, var, gamma)
""",
    ),
    _np(
        "backward-no-mean-path",
        {"backward-missing-mean-path"},
        BWD,
        _FORWARD_DICT
        + """
def batchnorm_backward(dout, cache):
    N = dout.shape[0]
    xhat, xmu, ivar, sqrtvar, gamma = (cache[k] for k in ("xhat", "xmu", "ivar", "sqrtvar", "gamma"))
    dbeta = np.sum(dout, axis=0)
    dgamma = np.sum(dout * xhat, axis=0)
    dxhat = dout * gamma
    divar = np.sum(dxhat * xmu, axis=0)
    dsqrtvar = -1.0 / (sqrtvar ** 2) * divar
    dvar = 0.5 / sqrtvar * dsqrtvar
    dsq = 1.0 / N * np.ones_like(dout) * dvar
    dxmu = dxhat * ivar + 2 * xmu * dsq
    dx = dxmu
    return dx, dgamma, dbeta
""",
    ),
    _np(
        "backward-no-var-path",
        {"backward-missing-var-path"},
        BWD,
        _FORWARD_DICT
        + """
def batchnorm_backward(dout, cache):
    N = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * cache["xhat"]).sum(axis=0)
    dxhat = dout * cache["gamma"]
    dxmu = dxhat * cache["ivar"]
    dmu = -dxmu.sum(axis=0)
    dx = dxmu + dmu / N
    return dx, dgamma, dbeta
""",
    ),
    _np(
        "backward-dvar-missing-factor-two",
        {"backward-term-weight"},
        BWD,
        _FORWARD_CACHE_TUPLE
        + """
def batchnorm_backward(dout, cache):
    x, x_norm, mean, var, gamma, beta, eps = cache
    N = x.shape[0]
    dx_norm = dout * gamma
    dvar = np.sum(dx_norm * (x - mean), axis=0) * -0.5 * (var + eps) ** (-1.5)
    dmean = -np.sum(dx_norm, axis=0) / np.sqrt(var + eps)
    dx = dx_norm / np.sqrt(var + eps) + dvar * (x - mean) / N + dmean / N
    return dx, np.sum(dout * x_norm, axis=0), np.sum(dout, axis=0)
""",
    ),
    _np(
        "backward-forgot-gamma",
        {"backward-gamma-missing"},
        BWD,
        _FORWARD_DICT
        + """
def batchnorm_backward(dout, cache):
    xhat, ivar = cache["xhat"], cache["ivar"]
    N = dout.shape[0]
    dbeta = np.sum(dout, axis=0)
    dgamma = np.sum(dout * xhat, axis=0)
    dx = (1.0 / N) * ivar * (N * dout - np.sum(dout, axis=0) - xhat * np.sum(dout * xhat, axis=0))
    return dx, dgamma, dbeta
""",
    ),
    _np(
        "params-returned-in-wrong-order",
        {"params-swapped"},
        BWD,
        _FORWARD_DICT
        + """
def batchnorm_backward(dout, cache):
    xhat, ivar, gamma = cache["xhat"], cache["ivar"], cache["gamma"]
    N = dout.shape[0]
    dgamma = np.sum(dout, axis=0)
    dbeta = np.sum(dout * xhat, axis=0)
    dxhat = dout * gamma
    dx = ivar / N * (N * dxhat - dxhat.sum(0) - xhat * (dxhat * xhat).sum(0))
    return dx, dgamma, dbeta
""",
    ),
    _np(
        "dgamma-with-raw-x",
        {"dgamma-uses-x"},
        BWD,
        _FORWARD_CACHE_TUPLE
        + """
def batchnorm_backward(dout, cache):
    x, x_norm, mean, var, gamma, beta, eps = cache
    N = x.shape[0]
    dgamma = np.sum(dout * x, axis=0)
    dbeta = np.sum(dout, axis=0)
    std = np.sqrt(var + eps)
    dx_norm = dout * gamma
    dx = (N * dx_norm - dx_norm.sum(axis=0) - x_norm * (dx_norm * x_norm).sum(axis=0)) / (N * std)
    return dx, dgamma, dbeta
""",
    ),
    _np(
        "params-summed-over-features",
        {"params-wrong-axis"},
        BWD,
        _FORWARD_DICT
        + """
def batchnorm_backward(dout, cache):
    xhat, ivar, gamma = cache["xhat"], cache["ivar"], cache["gamma"]
    N = dout.shape[0]
    dbeta = np.sum(dout, axis=1)
    dgamma = np.sum(dout * xhat, axis=1)
    dxhat = dout * gamma
    dx = ivar / N * (N * dxhat - dxhat.sum(0) - xhat * (dxhat * xhat).sum(0))
    return dx, dgamma, dbeta
""",
    ),
    _np(
        "dbeta-keepdims",
        {"wrong-shape"},
        BWD,
        _FORWARD_DICT
        + """
def batchnorm_backward(dout, cache):
    xhat, ivar, gamma = cache["xhat"], cache["ivar"], cache["gamma"]
    N = dout.shape[0]
    dbeta = np.sum(dout, axis=0, keepdims=True)
    dgamma = np.sum(dout * xhat, axis=0, keepdims=True)
    dxhat = dout * gamma
    dx = ivar / N * (N * dxhat - dbeta * gamma - xhat * dgamma * gamma)
    return dx, dgamma, dbeta
""",
    ),
    _np(
        "closed-form-missing-one-over-n",
        {"backward-term-weight"},
        ("bn_backward_dx",),
        _FORWARD_DICT
        + """
def batchnorm_backward(dout, cache):
    xhat, ivar, gamma = cache["xhat"], cache["ivar"], cache["gamma"]
    N = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dx = gamma * ivar * (dout - dbeta - xhat * dgamma / N)
    return dx, dgamma, dbeta
""",
    ),
    _np(
        "backward-no-mean-path-and-no-eps",
        {"backward-missing-mean-path", "eps-missing-backward"},
        ("bn_backward_dx",),
        _FORWARD_CACHE_TUPLE
        + """
def batchnorm_backward(dout, cache):
    x, x_norm, mean, var, gamma, beta, eps = cache
    N = x.shape[0]
    std = var ** 0.5
    dxn = dout * gamma
    dvar = (dxn * (x - mean)).sum(axis=0) * -0.5 / std ** 3
    dx = dxn / std + dvar * 2.0 * (x - mean) / N
    return dx, (dout * x_norm).sum(axis=0), dout.sum(axis=0)
""",
    ),
    _np(
        "float64-constant-in-forward",
        {"float32-promoted"},
        ("bn_forward_properties",),
        """
def batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param["mode"]
    if mode not in ("train", "test"):
        raise ValueError("mode must be 'train' or 'test'")
    eps = np.float64(bn_param["eps"])
    momentum = np.array(bn_param["momentum"])
    if mode == "train":
        mean, var = x.mean(axis=0), x.var(axis=0)
        bn_param["running_mean"] = momentum * bn_param["running_mean"] + (1 - momentum) * mean
        bn_param["running_var"] = momentum * bn_param["running_var"] + (1 - momentum) * var
    else:
        mean, var = bn_param["running_mean"], bn_param["running_var"]
    x_hat = (x - mean) / np.sqrt(var + eps)
    return (gamma * x_hat + beta).astype(np.float64), (x, x_hat, mean, var, gamma, eps)
""",
    ),
    _np(
        "centres-x-in-place",
        {"mutates-input"},
        ("bn_forward_properties",),
        """
def batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param["mode"]
    eps = bn_param["eps"]
    if mode == "train":
        mean = x.mean(axis=0)
        var = x.var(axis=0)
        m = bn_param["momentum"]
        bn_param["running_mean"] = m * bn_param["running_mean"] + (1 - m) * mean
        bn_param["running_var"] = m * bn_param["running_var"] + (1 - m) * var
    elif mode == "test":
        mean, var = bn_param["running_mean"], bn_param["running_var"]
    else:
        raise ValueError(mode)
    x -= mean
    x /= np.sqrt(var + eps)
    return gamma * x + beta, (x, var, gamma, eps)
""",
    ),
    _np(
        "spatial-channels-first-recipe",
        {"wrong-axis"},
        SPATIAL,
        _FORWARD_CACHE_TUPLE
        + """
def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    N, H, W, C = x.shape
    x_flat = x.transpose(0, 3, 1, 2).reshape(-1, C)
    out_flat, cache = batchnorm_forward(x_flat, gamma, beta, bn_param)
    out = out_flat.reshape(N, C, H, W).transpose(0, 2, 3, 1)
    return out, cache
""",
    ),
    _np(
        "spatial-forgot-reshape-back",
        {"wrong-shape"},
        SPATIAL,
        _FORWARD_CACHE_TUPLE
        + """
def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    N, H, W, C = x.shape
    out, cache = batchnorm_forward(x.reshape(-1, C), gamma, beta, bn_param)
    return out, cache
""",
    ),
    _np(
        "layernorm-unbiased",
        {"unbiased-variance"},
        ("ln_forward",),
        """
def layernorm_forward(x, gamma, beta, ln_param):
    eps = ln_param.get("eps", 1e-5)
    mu = x.mean(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        var = x.var(axis=1, ddof=1, keepdims=True)
    xhat = (x - mu) / np.sqrt(var + eps)
    return gamma * xhat + beta, (xhat, np.sqrt(var + eps), gamma)
""",
    ),
    _np(
        "layernorm-batchnorm-axis",
        {"wrong-axis"},
        ("ln_forward",),
        """
def layernorm_forward(x, gamma, beta, ln_param):
    eps = ln_param["eps"]
    mean = np.mean(x, axis=0)
    var = np.var(x, axis=0)
    x_hat = (x - mean) / np.sqrt(var + eps)
    return gamma * x_hat + beta, (x_hat, np.sqrt(var + eps), gamma)
""",
    ),
    _np(
        "layernorm-part-c-form-carried-over",
        {"ln-gamma-outside-sums"},
        LN,
        _LN_FORWARD_OK
        + """
def layernorm_backward(dout, cache):
    x_hat, std, gamma = cache
    D = x_hat.shape[1]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * x_hat).sum(axis=0)
    # Part C's closed form with the axes swapped
    dx = (gamma / (D * std)) * (
        D * dout - dout.sum(axis=1, keepdims=True) - x_hat * (dout * x_hat).sum(axis=1, keepdims=True)
    )
    return dx, dgamma, dbeta
""",
    ),
    _np(
        "layernorm-backward-no-var-path",
        {"backward-missing-var-path"},
        ("ln_backward",),
        _LN_FORWARD_OK
        + """
def layernorm_backward(dout, cache):
    x_hat, std, gamma = cache
    D = x_hat.shape[1]
    dxhat = dout * gamma
    dx = (dxhat - dxhat.mean(axis=1, keepdims=True)) / std
    return dx, np.sum(dout * x_hat, axis=0), np.sum(dout, axis=0)
""",
    ),
    _np(
        "loops-over-features-updates-in-test",
        {"test-updates-running"},
        ("bn_forward_train", "bn_forward_test"),
        """
def batchnorm_forward(x, gamma, beta, bn_param):
    N, D = x.shape
    eps, momentum = bn_param["eps"], bn_param["momentum"]
    if bn_param["mode"] not in ("train", "test"):
        raise ValueError("bad mode")
    out = np.zeros_like(x)
    new_mean = np.zeros(D)
    new_var = np.zeros(D)
    for j in range(D):
        col = x[:, j]
        mu = col.sum() / N
        var = ((col - mu) ** 2).sum() / N
        if bn_param["mode"] == "train":
            out[:, j] = gamma[j] * (col - mu) / np.sqrt(var + eps) + beta[j]
        else:
            rm, rv = bn_param["running_mean"][j], bn_param["running_var"][j]
            out[:, j] = gamma[j] * (col - rm) / np.sqrt(rv + eps) + beta[j]
        new_mean[j] = momentum * bn_param["running_mean"][j] + (1 - momentum) * mu
        new_var[j] = momentum * bn_param["running_var"][j] + (1 - momentum) * var
    bn_param["running_mean"] = new_mean
    bn_param["running_var"] = new_var
    return out, (x, gamma, eps)
""",
    ),
    _np(
        "train-normalises-with-running",
        {"train-uses-running"},
        ("bn_forward_train",),
        """
def batchnorm_forward(x, gamma, beta, bn_param):
    eps, momentum = bn_param["eps"], bn_param["momentum"]
    if bn_param["mode"] == "train":
        bn_param["running_mean"] = momentum * bn_param["running_mean"] + (1 - momentum) * x.mean(0)
        bn_param["running_var"] = momentum * bn_param["running_var"] + (1 - momentum) * x.var(0)
    elif bn_param["mode"] != "test":
        raise ValueError("mode")
    x_hat = (x - bn_param["running_mean"]) / np.sqrt(bn_param["running_var"] + eps)
    return gamma * x_hat + beta, (x, x_hat, gamma)
""",
    ),
    _np(
        "spatial-per-image-statistics",
        {"wrong-axis"},
        SPATIAL,
        """
def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    eps, momentum = bn_param["eps"], bn_param["momentum"]
    if bn_param["mode"] == "train":
        mean = x.mean(axis=(1, 2), keepdims=True)
        var = x.var(axis=(1, 2), keepdims=True)
        bn_param["running_mean"] = momentum * bn_param["running_mean"] + (1 - momentum) * mean.mean(axis=(0, 1, 2))
        bn_param["running_var"] = momentum * bn_param["running_var"] + (1 - momentum) * var.mean(axis=(0, 1, 2))
    else:
        mean, var = bn_param["running_mean"], bn_param["running_var"]
    out = gamma * (x - mean) / np.sqrt(var + eps) + beta
    return out, (x, mean, var, gamma, eps)
""",
    ),
    _np(
        "layernorm-eps-outside",
        {"eps-outside-sqrt"},
        LN,
        """
def layernorm_forward(x, gamma, beta, ln_param):
    eps = ln_param["eps"]
    mu = x.mean(axis=1, keepdims=True)
    sigma = x.std(axis=1, keepdims=True) + eps
    xhat = (x - mu) / sigma
    return gamma * xhat + beta, (xhat, sigma, gamma)


def layernorm_backward(dout, cache):
    xhat, sigma, gamma = cache
    D = xhat.shape[1]
    dxhat = dout * gamma
    dx = (D * dxhat - dxhat.sum(1, keepdims=True) - xhat * (dxhat * xhat).sum(1, keepdims=True)) / (D * sigma)
    return dx, (dout * xhat).sum(0), dout.sum(0)
""",
    ),
    _np(
        "alt-backward-drops-variance-term",
        {"backward-missing-var-path"},
        ("bn_backward_alt",),
        _FORWARD_DICT
        + """
def batchnorm_backward_alt(dout, cache):
    xhat, ivar, gamma = cache["xhat"], cache["ivar"], cache["gamma"]
    N = dout.shape[0]
    dbeta = np.sum(dout, axis=0)
    dgamma = np.sum(xhat * dout, axis=0)
    dx = gamma * ivar * (dout - dbeta / N)
    return dx, dgamma, dbeta
""",
    ),
    _np(
        "spatial-backward-on-unflattened",
        {"wrong-shape"},
        ("spatial_backward",),
        _FORWARD_DICT
        + _SPATIAL_OK
        + """
def batchnorm_backward(dout, cache):
    xhat, ivar, gamma = cache["xhat"], cache["ivar"], cache["gamma"]
    N = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dxhat = dout * gamma
    dx = ivar / N * (N * dxhat - dxhat.sum(0) - xhat * (dxhat * xhat).sum(0))
    return dx, dgamma, dbeta


def spatial_batchnorm_backward(dout, cache):
    N, H, W, C = dout.shape
    dx, dgamma, dbeta = batchnorm_backward(dout.reshape(-1, C), cache)
    return dx, dgamma, dbeta
""",
    ),
]


# ------------------------------------------------------------------------------------- Keras
_MAKE_OK = """
def make_keras_bn(bn_param, gamma, beta, input_shape, dtype="float64"):
    layer = keras.layers.BatchNormalization(momentum=bn_param["momentum"],
                                            epsilon=bn_param["eps"], dtype=dtype)
    layer.build(input_shape)
    layer.set_weights([np.asarray(gamma), np.asarray(beta),
                       np.asarray(bn_param["running_mean"]), np.asarray(bn_param["running_var"])])
    return layer
"""

_FORWARD_OK = """
def keras_bn_forward(x, gamma, beta, bn_param):
    layer = make_keras_bn(bn_param, gamma, beta, (None,) + x.shape[1:], dtype=x.dtype.name)
    is_training = bn_param["mode"] == "train"
    y = layer(x, training=is_training)
    if is_training:
        bn_param["running_mean"] = np.array(layer.moving_mean)
        bn_param["running_var"] = np.array(layer.moving_variance)
    return np.array(y)
"""

KERAS = [
    _keras(
        "keras-gamma-beta-swapped",
        {"keras-gamma-beta-swapped"},
        ("keras_make_layer", "keras_forward_train", "keras_forward_test"),
        """
def make_keras_bn(bn_param, gamma, beta, input_shape, dtype="float64"):
    bn = keras.layers.BatchNormalization(momentum=bn_param["momentum"], epsilon=bn_param["eps"],
                                         dtype=dtype)
    bn.build(input_shape)
    bn.beta.assign(gamma)
    bn.gamma.assign(beta)
    bn.moving_mean.assign(bn_param["running_mean"])
    bn.moving_variance.assign(bn_param["running_var"])
    return bn
"""
        + _FORWARD_OK,
    ),
    _keras(
        "keras-moving-variance-copy-paste",
        {"keras-moving-variance-written-wrong"},
        ("keras_moving_stats",),
        _MAKE_OK
        + """
def keras_bn_forward(x, gamma, beta, bn_param):
    layer = make_keras_bn(bn_param, gamma, beta, (None,) + x.shape[1:], dtype=x.dtype.name)
    training = bn_param["mode"] == "train"
    out = layer(x, training=training)
    if training:
        bn_param["running_mean"] = layer.moving_mean.numpy()
        bn_param["running_var"] = layer.moving_mean.numpy()
    return out.numpy()
""",
    ),
    _keras(
        "keras-moving-variance-as-std",
        {"keras-moving-variance-written-wrong"},
        ("keras_moving_stats",),
        _MAKE_OK
        + """
def keras_bn_forward(x, gamma, beta, bn_param):
    layer = make_keras_bn(bn_param, gamma, beta, (None,) + x.shape[1:], dtype=x.dtype.name)
    out = layer(x, training=bn_param["mode"] == "train")
    if bn_param["mode"] == "train":
        bn_param["running_mean"] = layer.moving_mean.numpy()
        bn_param["running_var"] = np.sqrt(layer.moving_variance.numpy())
    return out.numpy()
""",
    ),
    _keras(
        "keras-training-mode-string",
        {"keras-test-ran-training"},
        ("keras_forward_train", "keras_forward_test"),
        _MAKE_OK
        + """
def keras_bn_forward(x, gamma, beta, bn_param):
    layer = make_keras_bn(bn_param, gamma, beta, (None,) + x.shape[1:], dtype=x.dtype.name)
    out = layer(x, training=bn_param["mode"])
    if bn_param["mode"] == "train":
        bn_param["running_mean"] = layer.moving_mean.numpy()
        bn_param["running_var"] = layer.moving_variance.numpy()
    return out.numpy()
""",
    ),
    _keras(
        "keras-tape-never-watched-x",
        {"keras-tape-not-watching-x"},
        ("keras_gradients",),
        _MAKE_OK
        + """
def keras_bn_backward(x, gamma, beta, bn_param, dout):
    layer = make_keras_bn(bn_param, gamma, beta, (None,) + x.shape[1:], dtype=x.dtype.name)
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        out = layer(x, training=True)
        loss = tf.reduce_sum(out * dout)
    dx, dgamma, dbeta = tape.gradient(loss, [x, layer.gamma, layer.beta])
    return dx.numpy(), dgamma.numpy(), dbeta.numpy()
""",
    ),
    _keras(
        "keras-detector-unbiased-variance",
        {"keras-detector-unbiased"},
        ("keras_mode_detector",),
        """
def used_batch_statistics(x, y, gamma, beta, moving_mean, moving_variance, epsilon):
    mu = np.mean(x, axis=0)
    var = np.var(x, axis=0, ddof=1)
    train_y = gamma * (x - mu) / np.sqrt(var + epsilon) + beta
    test_y = gamma * (x - moving_mean) / np.sqrt(moving_variance + epsilon) + beta
    if np.allclose(y, train_y, atol=1e-4):
        return True
    elif np.allclose(y, test_y, atol=1e-4):
        return False
    raise ValueError("y matches neither mode")
""",
    ),
    _keras(
        "keras-mlp-default-momentum",
        {"keras-mlp-momentum-ignored"},
        ("keras_mlp_structure",),
        """
def build_mlp(use_bn, activation="sigmoid", momentum=0.99):
    model = keras.Sequential()
    model.add(keras.Input(shape=(64,)))
    for i in range(3):
        if use_bn:
            model.add(keras.layers.Dense(100))
            model.add(keras.layers.BatchNormalization())
            model.add(keras.layers.Activation(activation))
        else:
            model.add(keras.layers.Dense(100, activation=activation))
    model.add(keras.layers.Dense(10, activation="softmax"))
    return model
""",
    ),
    _keras(
        "keras-default-epsilon-and-swapped",
        {"keras-default-epsilon", "keras-gamma-beta-swapped"},
        ("keras_forward_train",),
        """
def make_keras_bn(bn_param, gamma, beta, input_shape, dtype="float64"):
    layer = keras.layers.BatchNormalization(momentum=bn_param["momentum"], dtype=dtype)
    layer.build(input_shape)
    layer.set_weights([beta, gamma, bn_param["running_mean"], bn_param["running_var"]])
    return layer
"""
        + _FORWARD_OK,
    ),
    _keras(
        "keras-forward-without-training-flag",
        {"keras-training-missing"},
        ("keras_forward_train",),
        _MAKE_OK
        + """
def keras_bn_forward(x, gamma, beta, bn_param):
    layer = make_keras_bn(bn_param, gamma, beta, (None,) + x.shape[1:], dtype=x.dtype.name)
    y = layer(x)
    if bn_param["mode"] == "train":
        bn_param["running_mean"] = layer.moving_mean.numpy()
        bn_param["running_var"] = layer.moving_variance.numpy()
    return y.numpy()
""",
    ),
    _keras(
        "keras-layer-frozen-for-safety",
        {"keras-frozen-layer"},
        ("keras_forward_train", "keras_gradients"),
        """
def make_keras_bn(bn_param, gamma, beta, input_shape, dtype="float64"):
    layer = keras.layers.BatchNormalization(momentum=bn_param["momentum"], epsilon=bn_param["eps"],
                                            dtype=dtype)
    layer.build(input_shape)
    layer.set_weights([gamma, beta, bn_param["running_mean"], bn_param["running_var"]])
    layer.trainable = False  # so that nothing changes the weights we set
    return layer
"""
        + _FORWARD_OK
        + """
def keras_bn_backward(x, gamma, beta, bn_param, dout):
    layer = make_keras_bn(bn_param, gamma, beta, (None,) + x.shape[1:], dtype=x.dtype.name)
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(layer(x, training=True) * dout)
    grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
    return tuple(g.numpy() for g in grads)
""",
    ),
    _keras(
        "keras-no-dtype-given",
        {"keras-float32-cast"},
        ("keras_forward_train",),
        """
def make_keras_bn(bn_param, gamma, beta, input_shape, dtype="float64"):
    layer = keras.layers.BatchNormalization(momentum=bn_param["momentum"], epsilon=bn_param["eps"])
    layer.build(input_shape)
    layer.gamma.assign(gamma)
    layer.beta.assign(beta)
    layer.moving_mean.assign(bn_param["running_mean"])
    layer.moving_variance.assign(bn_param["running_var"])
    return layer
"""
        + _FORWARD_OK,
    ),
    _keras(
        "keras-pytorch-momentum",
        {"keras-momentum-reversed"},
        ("keras_moving_stats",),
        """
def make_keras_bn(bn_param, gamma, beta, input_shape, dtype="float64"):
    layer = keras.layers.BatchNormalization(momentum=1 - bn_param["momentum"],
                                            epsilon=bn_param["eps"], dtype=dtype)
    layer.build(input_shape)
    layer.set_weights([gamma, beta, bn_param["running_mean"], bn_param["running_var"]])
    return layer
"""
        + _FORWARD_OK,
    ),
    _keras(
        "keras-detector-exact-equality",
        {"keras-detector-too-strict"},
        ("keras_mode_detector",),
        """
def used_batch_statistics(x, y, gamma, beta, moving_mean, moving_variance, epsilon):
    batch_y = gamma * (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + epsilon) + beta
    moving_y = gamma * (x - moving_mean) / np.sqrt(moving_variance + epsilon) + beta
    if np.array_equal(y, batch_y):
        return True
    if np.array_equal(y, moving_y):
        return False
    raise ValueError("y is neither")
""",
    ),
    _keras(
        "keras-mlp-bn-after-sigmoid",
        {"keras-bn-after-activation"},
        ("keras_mlp_structure",),
        """
def build_mlp(use_bn, activation="sigmoid", momentum=0.99):
    layers = [keras.Input(shape=(64,))]
    for _ in range(3):
        layers.append(keras.layers.Dense(100, activation=activation))
        if use_bn:
            layers.append(keras.layers.BatchNormalization(momentum=momentum))
    layers.append(keras.layers.Dense(10, activation="softmax"))
    return keras.Sequential(layers)
""",
    ),
]

SUBMISSIONS = NUMPY + KERAS


def namespace(submission):
    """The namespace a grade cell sees after the student ran their cells."""
    ns = {"__name__": "__main__", "np": np}
    if submission.notebook == "bn_keras":
        import keras
        import tensorflow as tf

        ns.update(keras=keras, tf=tf)
    exec(compile(submission.code, f"<{submission.name}>", "exec"), ns)
    return ns
