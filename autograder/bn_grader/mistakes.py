"""The catalogue of classic Batch Normalization mistakes (grading side only).

Each mistake is written once, as data:

- an id and the sentence a student reads when their result shows it;
- for the classic ones, the switches that turn the float64 variant implementations below into
  that mistake (``bn`` for the BN forward pass, 2-D and NHWC; ``spatial_axes`` for NHWC
  statistics over the wrong axes; ``backward`` for the BN backward passes; ``ln``/``ln_backward``
  for layer norm);
- sample submissions: text edits of the solution notebook's code that make exactly this mistake,
  with the grade cells they must cost points on (samples_numpy.py turns them into
  ``bn_grader.samples.Sample`` objects for the pipeline tests and the demo).

When a student's array misses the reference, :func:`diagnosis` first looks at its structure
(None, shape, dtype), then asks :mod:`bn_grader.diagnose` which combination of choices (the
statistics used, where eps sits, gamma and beta in each role, the terms of the backward pass)
reproduces it; it names a mistake only when every simplest explanation contains it. The variant
implementations remain the fallback for NHWC statistics over the wrong axes, and the tests use
them to check that each catalogued mistake really changes the result.
"""

from dataclasses import dataclass, field

import numpy as np

from . import diagnose as structure
from .compare import matches


@dataclass(frozen=True)
class SampleSpec:
    """A sample submission with one mistake: edits of the solution code, cells it must fail."""

    name: str
    edits: tuple
    affected_cells: frozenset


@dataclass(frozen=True)
class Mistake:
    mistake_id: str
    cause: str
    bn: dict | None = None
    spatial_axes: tuple | None = None
    backward: dict | None = None
    ln: dict | None = None
    ln_backward: dict | None = None
    # Group norm (NHWC): switches of gn_forward_variant, and wrong groupings of the elements.
    gn: dict | None = None
    gn_groupings: tuple = ()
    # Part C's derivation pieces (dx_hat, dvar, dmean): switches of pieces_variant.
    pieces: dict | None = None
    samples: tuple = field(default=())
    # For running statistics: some mistakes show in them identically (the unbiased variance
    # everywhere, or only in the running variance); the student's output tells them apart.
    # True: only when the output was right; False: only when it was wrong; None: always.
    out_correct: bool | None = None


# ---------------------------------------------------------------- variant implementations
def bn_forward_variant(
    x,
    gamma,
    beta,
    bn_param,
    *,
    ddof=0,
    running_ddof=None,
    momentum_swapped=False,
    write_back=True,
    test_uses_batch=False,
    test_updates_running=False,
    eps_place="inside",
    scale_shift=True,
    axis=0,
):
    """BN forward in float64 with switchable mistakes; returns out, running_mean, running_var.

    Statistics over ``axis=1`` give per-example statistics (running values are then ``None``:
    they have no meaningful (D,) shape).
    """
    x = np.asarray(x, dtype=np.float64)
    gamma = np.asarray(gamma, dtype=np.float64)
    beta = np.asarray(beta, dtype=np.float64)
    eps = float(bn_param["eps"])
    momentum = float(bn_param["momentum"])
    old_mean = np.asarray(bn_param["running_mean"], dtype=np.float64)
    old_var = np.asarray(bn_param["running_var"], dtype=np.float64)
    train = bn_param["mode"] == "train"
    with np.errstate(all="ignore"):
        if train or test_uses_batch:
            mean = x.mean(axis=axis, keepdims=True)
            var = (
                x.var(axis=axis, ddof=ddof, keepdims=True)
                if x.shape[axis] > ddof
                else np.full_like(mean, np.nan)
            )
        else:
            mean, var = old_mean, old_var
        if eps_place == "inside":
            std = np.sqrt(var + eps)
        elif eps_place == "outside":
            std = np.sqrt(var) + eps
        else:  # missing
            std = np.sqrt(var)
        x_hat = (x - mean) / std
        out = gamma * x_hat + beta if scale_shift else x_hat
        new_mean, new_var = old_mean, old_var
        if (train and write_back) or (not train and test_updates_running):
            if axis != 0:
                return {"out": out, "running_mean": None, "running_var": None}
            batch_mean = x.mean(axis=0)
            r_ddof = ddof if running_ddof is None else running_ddof
            batch_var = (
                x.var(axis=0, ddof=r_ddof)
                if x.shape[0] > r_ddof
                else np.full_like(batch_mean, np.nan)
            )
            keep = (1.0 - momentum) if momentum_swapped else momentum
            new_mean = keep * old_mean + (1.0 - keep) * batch_mean
            new_var = keep * old_var + (1.0 - keep) * batch_var
    return {"out": out, "running_mean": new_mean, "running_var": new_var}


def spatial_forward_variant(x, gamma, beta, bn_param, axes=None, **flags):
    """NHWC forward with switchable mistakes.

    ``axes`` given means statistics over those axes (a wrong-axis mistake); ``axes="nchw"`` is
    the channels-first recipe (transpose to NCHW, then reshape to (-1, C)) applied to NHWC data,
    which mixes channels and positions.
    """
    x = np.asarray(x, dtype=np.float64)
    if axes == "nchw":
        n, h, w, c = x.shape
        result = bn_forward_variant(
            x.transpose(0, 3, 1, 2).reshape(-1, c), gamma, beta, bn_param, **flags
        )
        result["out"] = result["out"].reshape(n, c, h, w).transpose(0, 2, 3, 1)
        return result
    if axes is None:
        channels = x.shape[-1]
        result = bn_forward_variant(x.reshape(-1, channels), gamma, beta, bn_param, **flags)
        result["out"] = result["out"].reshape(x.shape)
        return result
    with np.errstate(all="ignore"):
        mean = x.mean(axis=axes, keepdims=True)
        var = x.var(axis=axes, keepdims=True)
        out = gamma * (x - mean) / np.sqrt(var + float(bn_param["eps"])) + beta
    return {"out": out, "running_mean": None, "running_var": None}


def bn_backward_variant(x, gamma, eps, dout, *, mean_path=True, var_path=True, swap=False):
    """Staged BN backward (train mode) in float64 with paths that can be left out."""
    x = np.asarray(x, dtype=np.float64)
    gamma = np.asarray(gamma, dtype=np.float64)
    dout = np.asarray(dout, dtype=np.float64)
    n = x.shape[0]
    with np.errstate(all="ignore"):
        mean = x.mean(axis=0)
        centered = x - mean
        var = (centered**2).mean(axis=0)
        std = np.sqrt(var + eps)
        x_hat = centered / std
        dbeta = dout.sum(axis=0)
        dgamma = (dout * x_hat).sum(axis=0)
        dx_hat = dout * gamma
        dcentered = dx_hat / std
        if var_path:
            dvar = -0.5 * (dx_hat * centered).sum(axis=0) / std**3
            dcentered = dcentered + dvar * 2.0 * centered / n
        dx = dcentered - dcentered.mean(axis=0) if mean_path else dcentered
    if swap:
        dgamma, dbeta = dbeta, dgamma
    return {"dx": dx, "dgamma": dgamma, "dbeta": dbeta}


def spatial_backward_variant(x, gamma, eps, dout, **flags):
    x = np.asarray(x, dtype=np.float64)
    channels = x.shape[-1]
    result = bn_backward_variant(
        x.reshape(-1, channels), gamma, eps, np.asarray(dout).reshape(-1, channels), **flags
    )
    result["dx"] = result["dx"].reshape(x.shape)
    return result


def ln_forward_variant(
    x, gamma, beta, ln_param, *, axis=1, ddof=0, eps_place="inside", scale_shift=True
):
    x = np.asarray(x, dtype=np.float64)
    eps = float(ln_param["eps"])
    with np.errstate(all="ignore"):
        mean = x.mean(axis=axis, keepdims=True)
        var = (
            x.var(axis=axis, ddof=ddof, keepdims=True)
            if x.shape[axis] > ddof
            else np.full_like(mean, np.nan)
        )
        std = np.sqrt(var + eps) if eps_place == "inside" else np.sqrt(var) + eps
        x_hat = (x - mean) / std
        out = gamma * x_hat + beta if scale_shift else x_hat
    return {"out": out}


def ln_backward_variant(x, gamma, eps, dout, *, mean_path=True, var_path=True, swap=False, axis=1):
    """Layer-norm backward: BN's backward applied to the transpose (``axis=0`` is plain BN)."""
    x = np.asarray(x, dtype=np.float64)
    dout = np.asarray(dout, dtype=np.float64)
    gamma = np.asarray(gamma, dtype=np.float64)
    if axis == 0:
        return bn_backward_variant(
            x, gamma, eps, dout, mean_path=mean_path, var_path=var_path, swap=swap
        )
    # Normalise each row: BN backward on x.T with gamma folded into dout.
    ones = np.ones(x.shape[0])
    inner = bn_backward_variant(
        x.T, ones, eps, (dout * gamma).T, mean_path=mean_path, var_path=var_path
    )
    with np.errstate(all="ignore"):
        mean = x.mean(axis=1, keepdims=True)
        x_hat = (x - mean) / np.sqrt(x.var(axis=1, keepdims=True) + eps)
        dgamma = (dout * x_hat).sum(axis=0)
    dbeta = dout.sum(axis=0)
    if swap:
        dgamma, dbeta = dbeta, dgamma
    return {"dx": inner["dx"].T, "dgamma": dgamma, "dbeta": dbeta}


# ---------------------------------------------------------------- the catalogue
_A = "test_forward_train"
_R = "test_forward_running"
_T = "test_forward_test"
_H = "test_forward_properties"
_DX = "test_backward_dx"
_DP = "test_backward_dgamma_dbeta"
_ALT = "test_backward_alt"
_SF = "test_spatial_forward"
_SB = "test_spatial_backward"
_LF = "test_layernorm_forward"
_LB = "test_layernorm_backward"


def _sample(name, edits, *cells):
    return SampleSpec(name, tuple(edits), frozenset(cells))


_RUNNING_MEAN = (
    'bn_param["running_mean"] = momentum * bn_param["running_mean"] + (1 - momentum) * mean'
)
_RUNNING_VAR = 'bn_param["running_var"] = momentum * bn_param["running_var"] + (1 - momentum) * var'
_TEST_XHAT = 'x_hat = (x - bn_param["running_mean"]) / np.sqrt(bn_param["running_var"] + eps)'
_F = "batchnorm_forward"
_B = "batchnorm_backward"

MISTAKES = [
    Mistake(
        "unbiased-variance",
        "Keras normalises with the biased batch variance: divide by N, not N - 1 "
        "(x.var(axis=0), not ddof=1; with a batch of one, N - 1 = 0 gives NaN).",
        bn={"ddof": 1},
        ln={"ddof": 1},
        out_correct=False,
        samples=(
            _sample(
                "np-unbiased-var",
                [(_F, "var = x.var(axis=0)", "var = x.var(axis=0, ddof=1)")],
                _A,
                _R,
                _DX,
                _DP,
                _ALT,
                _SF,
                _SB,
            ),
        ),
    ),
    Mistake(
        "pytorch-running-var",
        "Only the moving variance uses the unbiased variance (PyTorch's rule); Keras updates it "
        "with the same biased variance it normalised with.",
        bn={"running_ddof": 1},
        out_correct=True,
        samples=(
            _sample(
                "np-pytorch-running-var",
                [(_F, _RUNNING_VAR, _RUNNING_VAR.replace("* var", "* x.var(axis=0, ddof=1)"))],
                _R,
                _SF,
            ),
        ),
    ),
    Mistake(
        "momentum-swapped",
        "In Keras momentum weights the OLD running value: running = momentum * running + "
        "(1 - momentum) * batch_stat (PyTorch's momentum weights the new batch instead).",
        bn={"momentum_swapped": True},
        samples=(
            _sample(
                "np-momentum-swapped",
                [
                    (
                        _F,
                        _RUNNING_MEAN,
                        'bn_param["running_mean"] = (1 - momentum) * bn_param["running_mean"] + momentum * mean',
                    ),
                    (
                        _F,
                        _RUNNING_VAR,
                        'bn_param["running_var"] = (1 - momentum) * bn_param["running_var"] + momentum * var',
                    ),
                ],
                _R,
                _SF,
            ),
        ),
    ),
    Mistake(
        "running-not-written-back",
        "The updated running statistics must be stored in bn_param['running_mean'] and "
        "bn_param['running_var']: assigning to a local variable does not change the caller's dict.",
        bn={"write_back": False},
        samples=(
            _sample(
                "np-running-not-written-back",
                [
                    (
                        _F,
                        _RUNNING_MEAN,
                        _RUNNING_MEAN.replace('bn_param["running_mean"] =', "running_mean ="),
                    ),
                    (
                        _F,
                        _RUNNING_VAR,
                        _RUNNING_VAR.replace('bn_param["running_var"] =', "running_var ="),
                    ),
                ],
                _R,
                _SF,
            ),
        ),
    ),
    Mistake(
        "test-uses-batch-stats",
        "Test mode must normalise with the running statistics in bn_param, not with the batch's "
        "own mean and variance (with a batch of one that gives out = beta).",
        bn={"test_uses_batch": True},
        samples=(
            _sample(
                "np-test-batch-stats",
                [(_F, _TEST_XHAT, "x_hat = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + eps)")],
                _T,
                _SF,
            ),
        ),
    ),
    Mistake(
        "test-updates-running",
        "Test mode must leave bn_param['running_mean'] and bn_param['running_var'] unchanged.",
        bn={"test_updates_running": True},
        samples=(
            _sample(
                "np-test-updates-running",
                [
                    (
                        _F,
                        '    elif mode == "test":\n',
                        '    elif mode == "test":\n'
                        '        bn_param["running_mean"] = momentum * bn_param["running_mean"] + (1 - momentum) * x.mean(axis=0)\n'
                        '        bn_param["running_var"] = momentum * bn_param["running_var"] + (1 - momentum) * x.var(axis=0)\n',
                    )
                ],
                _T,
                _SF,
            ),
        ),
    ),
    Mistake(
        "eps-outside-sqrt",
        "eps belongs inside the square root, in train and in test mode: (x - mean) / sqrt(var + eps), "
        "not / (sqrt(var) + eps).",
        bn={"eps_place": "outside"},
        ln={"eps_place": "outside"},
        samples=(
            _sample(
                "np-eps-outside-sqrt",
                [
                    (_F, "std = np.sqrt(var + eps)", "std = np.sqrt(var) + eps"),
                    (
                        _F,
                        _TEST_XHAT,
                        _TEST_XHAT.replace(
                            'np.sqrt(bn_param["running_var"] + eps)',
                            '(np.sqrt(bn_param["running_var"]) + eps)',
                        ),
                    ),
                ],
                _A,
                _T,
                _DX,
                _DP,
                _ALT,
                _SF,
                _SB,
            ),
            _sample(
                "np-eps-outside-test-only",
                [
                    (
                        _F,
                        _TEST_XHAT,
                        _TEST_XHAT.replace(
                            'np.sqrt(bn_param["running_var"] + eps)',
                            '(np.sqrt(bn_param["running_var"]) + eps)',
                        ),
                    ),
                ],
                _T,
                _SF,
            ),
        ),
    ),
    Mistake(
        "eps-missing",
        "eps is missing: divide by sqrt(var + eps), which also keeps a zero-variance feature finite.",
        bn={"eps_place": "missing"},
        ln={"eps_place": "missing"},
    ),
    Mistake(
        "gamma-beta-missing",
        "The normalised values must be scaled and shifted: out = gamma * x_hat + beta.",
        bn={"scale_shift": False},
        ln={"scale_shift": False},
        samples=(
            _sample(
                "np-gamma-beta-missing",
                [(_F, "out = gamma * x_hat + beta", "out = x_hat")],
                _A,
                _T,
                _SF,
            ),
        ),
    ),
    Mistake(
        "wrong-axis",
        "Statistics over the wrong axis: batch norm averages over the batch (axis 0; axes N, H, W "
        "for NHWC, one statistic per channel), layer norm over the features of each example (axis 1).",
        bn={"axis": 1},
        spatial_axes=("nchw", (0,), (1, 2), (0, 1, 2, 3)),
        ln={"axis": 0},
        ln_backward={"axis": 0},
        samples=(
            _sample(
                "np-layernorm-wrong-axis",
                [
                    (
                        "layernorm_forward",
                        "mean = x.mean(axis=1, keepdims=True)",
                        "mean = x.mean(axis=0, keepdims=True)",
                    ),
                    (
                        "layernorm_forward",
                        "var = x.var(axis=1, keepdims=True)",
                        "var = x.var(axis=0, keepdims=True)",
                    ),
                ],
                _LF,
                _LB,
            ),
            _sample(
                "np-spatial-nchw-recipe",
                [
                    (
                        "spatial_batchnorm_forward",
                        "x.reshape(-1, c)",
                        "x.transpose(0, 3, 1, 2).reshape(-1, c)",
                    ),
                    (
                        "spatial_batchnorm_forward",
                        "out.reshape(n, h, w, c)",
                        "out.reshape(n, c, h, w).transpose(0, 2, 3, 1)",
                    ),
                ],
                _SF,
                _SB,
            ),
        ),
    ),
    Mistake(
        "mutates-input",
        "Your function changed the caller's array in place (for example x -= mean): compute into a "
        "new array instead, the caller may still need x.",
        samples=(
            _sample(
                "np-mutates-input",
                [
                    (
                        _F,
                        _TEST_XHAT,
                        'x -= bn_param["running_mean"]\n        x_hat = x / np.sqrt(bn_param["running_var"] + eps)',
                    )
                ],
                _H,
            ),
        ),
    ),
    Mistake(
        "backward-missing-mean-path",
        "dx misses the path through the batch mean: every x_i also moves the mean, which subtracts "
        "the batch average of the gradient (the dmean term).",
        backward={"mean_path": False},
        ln_backward={"mean_path": False},
        samples=(
            _sample(
                "np-backward-no-mean-path",
                [(_B, "dx = dx_centered + dmean / n", "dx = dx_centered")],
                _DX,
            ),
        ),
    ),
    Mistake(
        "backward-missing-var-path",
        "dx misses the path through the batch variance: every x_i also moves the variance "
        "(the dvar term, 2 * (x - mean) / N * dvar).",
        backward={"var_path": False},
        ln_backward={"var_path": False},
        samples=(
            _sample(
                "np-backward-no-var-path",
                [
                    (
                        _B,
                        "dx_centered = dx_hat / std + dvar * 2 * x_centered / n",
                        "dx_centered = dx_hat / std",
                    ),
                ],
                _DX,
            ),
        ),
    ),
    Mistake(
        "params-swapped",
        "dgamma and dbeta are swapped: dbeta = sum of dout, dgamma = sum of dout * x_hat "
        "(over the batch axis).",
        backward={"swap": True},
        ln_backward={"swap": True},
        samples=(
            _sample(
                "np-params-swapped",
                [(_B, "return dx, dgamma, dbeta", "return dx, dbeta, dgamma")],
                _DP,
            ),
        ),
    ),
    Mistake(
        "params-wrong-axis",
        "dgamma and dbeta must be summed over the batch axis (axis 0; N, H, W for NHWC), giving one "
        "value per feature, shape (D,).",
        samples=(
            _sample(
                "np-params-wrong-axis",
                [
                    (_B, "dbeta = dout.sum(axis=0)", "dbeta = dout.sum(axis=1)"),
                    (
                        _B,
                        "dgamma = (dout * x_hat).sum(axis=0)",
                        "dgamma = (dout * x_hat).sum(axis=1)",
                    ),
                ],
                _DP,
            ),
        ),
    ),
    Mistake(
        "wrong-shape",
        "Return exactly the documented shape, e.g. (D,) and not (1, D): np.allclose would broadcast "
        "the difference away, Keras and the grader do not. Drop keepdims=True or use .reshape(-1).",
        samples=(
            _sample(
                "np-running-shape-1xD",
                [(_F, "mean = x.mean(axis=0)", "mean = x.mean(axis=0, keepdims=True)")],
                _R,
                _SF,
            ),
            _sample(
                "np-grad-shape-1xD",
                [(_B, "dbeta = dout.sum(axis=0)", "dbeta = dout.sum(axis=0, keepdims=True)")],
                _DP,
            ),
        ),
    ),
    Mistake(
        "nan-or-inf",
        "NaN or inf in the result: a feature with zero variance makes sqrt(var) zero and the "
        "division 0 / 0; eps inside the square root keeps it finite: sqrt(var + eps).",
        samples=(
            _sample(
                "np-eps-missing-nan",
                [(_F, "std = np.sqrt(var + eps)", "std = np.sqrt(var)")],
                _A,
                _DX,
                _DP,
                _ALT,
                _SF,
                _SB,
            ),
        ),
    ),
    Mistake(
        "float32-promoted",
        "float32 inputs must give float32 results, as in Keras: something promoted the computation "
        "to float64 (x.astype(float), a float64 array or a np.float64 constant).",
        samples=(
            _sample(
                "np-float32-promoted",
                [
                    (
                        _F,
                        '    mode = bn_param["mode"]\n',
                        '    x = x.astype(float)\n    mode = bn_param["mode"]\n',
                    )
                ],
                _H,
                _DX,
                _ALT,
                _SB,
            ),
        ),
    ),
]

# Mistakes found by the structural diagnosis (diagnose.py); they need no variant of their own.
MISTAKES += [
    Mistake(
        "stats-over-all-elements",
        "The mean and variance must be per feature, over the batch: x.mean(axis=0) and "
        "x.var(axis=0) give one value per column; x.mean() without an axis averages every "
        "element of x into one number.",
    ),
    Mistake(
        "shift-divided-by-std",
        "Only x - mean is divided by the standard deviation; beta is added afterwards: "
        "out = gamma * (x - mean) / sqrt(var + eps) + beta (check the parentheses).",
    ),
    Mistake(
        "gamma-beta-swapped",
        "gamma and beta are swapped: gamma scales the normalised values and beta shifts them, "
        "out = gamma * x_hat + beta.",
    ),
    Mistake(
        "var-not-centred",
        "The variance is the mean of the squared deviations from the mean: "
        "((x - mean) ** 2).mean(axis=0); (x ** 2).mean(axis=0) alone is not a variance.",
    ),
    Mistake(
        "returns-none",
        "The function returned None here: a function without a return statement (or with a "
        "value left as None) gives None; return the computed array.",
    ),
    Mistake(
        "sqrt-missing",
        "Divide by the standard deviation sqrt(var + eps), not by the variance var + eps.",
    ),
    Mistake(
        "mean-not-subtracted",
        "The mean is not subtracted before dividing: x_hat = (x - mean) / sqrt(var + eps).",
    ),
    Mistake(
        "train-uses-running",
        "Train mode must normalise with the batch's own mean and variance; the running "
        "statistics are only used in test mode.",
    ),
    Mistake(
        "running-replaced",
        "The running statistics were replaced by the batch statistics: they are a moving "
        "average, running = momentum * running + (1 - momentum) * batch_stat.",
    ),
    Mistake(
        "running-var-is-std",
        "The running variance must be updated with the batch variance, not with the standard "
        "deviation (x.var(axis=0), not x.std(axis=0)).",
    ),
    Mistake(
        "eps-missing-backward",
        "The backward pass divides by sqrt(var) without eps: use the same std = sqrt(var + eps) as "
        "the forward pass (keep it in the cache instead of recomputing it).",
    ),
    Mistake(
        "backward-gamma-missing",
        "dx misses the factor gamma: the gradient that reaches x_hat is dx_hat = dout * gamma.",
    ),
    Mistake(
        "backward-term-weight",
        "A term of dx has the wrong factor (the weights above): compare each path with the staged "
        "derivation, dx = dx_hat / std + dmean / N + dvar * 2 * (x - mean) / N.",
    ),
    Mistake(
        "ln-gamma-outside-sums",
        "In layer norm gamma varies along the normalised axis, so it cannot be taken out of the "
        "sums as in Part C: with dx_hat = dout * gamma, dx = (D * dx_hat - sum(dx_hat) - x_hat * "
        "sum(dx_hat * x_hat)) / (D * std), sums over axis 1.",
    ),
    Mistake(
        "dgamma-uses-x",
        "dgamma = sum of dout * x_hat (the normalised input) over the batch, not dout * x.",
    ),
    Mistake(
        "params-mean-not-sum",
        "dgamma and dbeta are sums over the batch, not means: dbeta = dout.sum(axis=0), "
        "dgamma = (dout * x_hat).sum(axis=0).",
    ),
]


# ---------------------------------------------------------------- group normalization (NHWC)
# Variants of group norm are one engine: a *grouping* says which elements share a mean and a
# variance (the rows of a matrix); normalising the rows, scaling per channel and mapping back
# is the same for all of them. Each catalogued grouping mistake is one more grouping.
def _gn_rows_index(shape, groups, grouping):
    """Flat indices of an NHWC tensor arranged as rows that share statistics."""
    n, h, w, c = shape
    k = c // groups
    index = np.arange(n * h * w * c).reshape(shape)
    if grouping == "contiguous":  # right: channels [g*k, (g+1)*k) per example
        return index.reshape(n, h, w, groups, k).transpose(0, 3, 1, 2, 4).reshape(n * groups, -1)
    if grouping == "batch":  # statistics shared by the whole batch
        return index.reshape(n, h, w, groups, k).transpose(3, 0, 1, 2, 4).reshape(groups, -1)
    if grouping == "strided":  # channel c in group c % G
        return index.reshape(n, h, w, k, groups).transpose(0, 4, 1, 2, 3).reshape(n * groups, -1)
    if grouping == "swapped":  # C / G groups of G channels
        return index.reshape(n, h, w, k, groups).transpose(0, 3, 1, 2, 4).reshape(n * k, -1)
    if grouping == "channels-first":  # x.reshape(N, G, -1) on NHWC memory
        return index.reshape(n * groups, -1)
    raise ValueError(f"unknown grouping {grouping!r}")


def _gn_gamma(gamma, groups, channels, per_group):
    gamma = np.asarray(gamma, dtype=np.float64)
    return np.repeat(gamma[:groups], channels // groups) if per_group else gamma


def gn_forward_variant(
    x,
    gamma,
    beta,
    groups,
    gn_param,
    *,
    grouping="contiguous",
    gamma_per_group=False,
    ddof=0,
    eps_place="inside",
):
    """Group-norm forward in float64 with switchable mistakes; returns {"out": ...}."""
    x = np.asarray(x, dtype=np.float64)
    c = x.shape[-1]
    eps = float(gn_param["eps"])
    index = _gn_rows_index(x.shape, groups, grouping)
    rows = x.reshape(-1)[index]
    with np.errstate(all="ignore"):
        mean = rows.mean(axis=1, keepdims=True)
        var = rows.var(axis=1, ddof=ddof, keepdims=True)
        std = {"inside": np.sqrt(var + eps), "outside": np.sqrt(var) + eps}.get(
            eps_place, np.sqrt(var)
        )
        x_hat = np.empty(x.size)
        x_hat[index.reshape(-1)] = ((rows - mean) / std).reshape(-1)
    x_hat = x_hat.reshape(x.shape)
    out = _gn_gamma(gamma, groups, c, gamma_per_group) * x_hat + _gn_gamma(
        beta, groups, c, gamma_per_group
    )
    return {"out": out}


def gn_backward_variant(
    x,
    gamma,
    groups,
    eps,
    dout,
    *,
    grouping="contiguous",
    gamma_per_group=False,
    mean_path=True,
    var_path=True,
    swap=False,
):
    """Group-norm backward in float64 (layer norm's backward per row) with switchable mistakes."""
    x = np.asarray(x, dtype=np.float64)
    dout = np.asarray(dout, dtype=np.float64)
    c = x.shape[-1]
    index = _gn_rows_index(x.shape, groups, grouping)
    flat_index = index.reshape(-1)
    rows = x.reshape(-1)[index]
    gamma_c = _gn_gamma(gamma, groups, c, gamma_per_group)
    with np.errstate(all="ignore"):
        mean = rows.mean(axis=1, keepdims=True)
        std = np.sqrt(rows.var(axis=1, keepdims=True) + float(eps))
        rows_hat = (rows - mean) / std
        g = (dout * gamma_c).reshape(-1)[index]
        drows = g
        if mean_path:
            drows = drows - g.mean(axis=1, keepdims=True)
        if var_path:
            drows = drows - rows_hat * (g * rows_hat).mean(axis=1, keepdims=True)
        drows = drows / std
    dx = np.empty(x.size)
    dx[flat_index] = drows.reshape(-1)
    x_hat = np.empty(x.size)
    x_hat[flat_index] = rows_hat.reshape(-1)
    dbeta = dout.sum(axis=(0, 1, 2))
    dgamma = (dout * x_hat.reshape(x.shape)).sum(axis=(0, 1, 2))
    if swap:
        dgamma, dbeta = dbeta, dgamma
    return {"dx": dx.reshape(x.shape), "dgamma": dgamma, "dbeta": dbeta}


_GF = "test_groupnorm_forward"
_GB = "test_groupnorm_backward"
_GNF = "groupnorm_forward"
_GNB = "groupnorm_backward"
_GN_MEAN = "mean = x_groups.mean(axis=(1, 2, 4), keepdims=True)"
_GN_VAR = "var = x_groups.var(axis=(1, 2, 4), keepdims=True)"
_GN_RESHAPE = "x_groups = x.reshape(n, h, w, G, c // G)"

MISTAKES += [
    Mistake(
        "gn-stats-over-batch",
        "Group norm's statistics are per example: average over H, W and the C/G channels of each "
        "group, never over the batch axis N (that is batch norm again, and it breaks with a "
        "batch of one).",
        gn={"grouping": "batch"},
        samples=(
            _sample(
                "np-gn-stats-over-batch",
                [
                    (_GNF, _GN_MEAN, _GN_MEAN.replace("(1, 2, 4)", "(0, 1, 2, 4)")),
                    (_GNF, _GN_VAR, _GN_VAR.replace("(1, 2, 4)", "(0, 1, 2, 4)")),
                ],
                _GF,
                _GB,
            ),
        ),
    ),
    Mistake(
        "gn-wrong-grouping",
        "Wrong channels grouped: group g holds the C/G consecutive channels g*C/G ... "
        "(g+1)*C/G - 1, as in Keras's GroupNormalization; reshape the channel axis to (G, C // G), "
        "not (C // G, G).",
        gn_groupings=("strided", "swapped"),
        samples=(
            _sample(
                "np-gn-strided-groups",
                [
                    (_GNF, _GN_RESHAPE, _GN_RESHAPE.replace("G, c // G", "c // G, G")),
                    (_GNF, _GN_MEAN, _GN_MEAN.replace("(1, 2, 4)", "(1, 2, 3)")),
                    (_GNF, _GN_VAR, _GN_VAR.replace("(1, 2, 4)", "(1, 2, 3)")),
                ],
                _GF,
                _GB,
            ),
        ),
    ),
    Mistake(
        "gn-channels-first-reshape",
        "x.reshape(N, G, -1) is the channels-first (NCHW) recipe; on NHWC data it cuts the "
        "memory of each example into G runs of pixels, mixing channels and positions. Split the "
        "last axis instead: x.reshape(N, H, W, G, C // G), statistics over axes (1, 2, 4).",
        gn_groupings=("channels-first",),
        samples=(
            _sample(
                "np-gn-channels-first-reshape",
                [
                    (_GNF, _GN_RESHAPE, "x_groups = x.reshape(n, G, -1)"),
                    (_GNF, _GN_MEAN, _GN_MEAN.replace("(1, 2, 4)", "2")),
                    (_GNF, _GN_VAR, _GN_VAR.replace("(1, 2, 4)", "2")),
                ],
                _GF,
                _GB,
            ),
        ),
    ),
    Mistake(
        "gn-gamma-per-group",
        "gamma and beta are per channel, shape (C,), as in batch norm; only the statistics are "
        "per group. Scale each channel by its own gamma, and sum dgamma and dbeta over N, H and "
        "W only (one value per channel).",
        gn={"gamma_per_group": True},
        samples=(
            _sample(
                "np-gn-gamma-per-group",
                [
                    (
                        _GNF,
                        "out = gamma * x_hat + beta",
                        "x_hat_groups = x_hat.reshape(n, h, w, G, c // G)\n"
                        "    out = x_hat_groups * gamma[:G, None] + beta[:G, None]\n"
                        "    out = out.reshape(n, h, w, c)",
                    )
                ],
                _GF,
            ),
            _sample(
                "np-gn-dgamma-per-group",
                [
                    (
                        _GNB,
                        "dbeta = dout.sum(axis=(0, 1, 2))",
                        "dbeta = dout.reshape(n, h, w, G, c // G).sum(axis=(0, 1, 2, 4))",
                    ),
                    (
                        _GNB,
                        "dgamma = (dout * x_hat).sum(axis=(0, 1, 2))",
                        "dgamma = (dout * x_hat).reshape(n, h, w, G, c // G).sum(axis=(0, 1, 2, 4))",
                    ),
                ],
                _GB,
            ),
        ),
    ),
    Mistake(
        "gn-groups-unchecked",
        "When C is not divisible by G, raise a ValueError that names C and G before computing "
        "anything (e.g. 'C=6 channels cannot be split into G=4 groups'); NumPy's reshape error "
        "does not tell the caller what to change.",
        samples=(
            _sample(
                "np-gn-groups-unchecked",
                [
                    (
                        _GNF,
                        "    if c % G != 0:\n",
                        "    if False:\n",
                    )
                ],
                _GF,
            ),
        ),
    ),
]


# ---------------------------------------------------------------- Part C: the derivation's pieces
def pieces_variant(
    x,
    gamma,
    dout,
    eps,
    *,
    use_gamma=True,
    dvar_sum=True,
    dvar_power=3,
    dmean_sign=-1.0,
    dmean_centred=True,
):
    """dL/dx_hat, dL/dvar and dL/dmean of Part C in float64, with switchable mistakes.

    Args:
        x, dout: (N, D). gamma: (D,). eps: the constant inside the square root.
        use_gamma: False leaves gamma out of dx_hat = gamma * dout (and so of the other two).
        dvar_sum: False averages over the batch where dvar sums.
        dvar_power: the power of std that dvar divides by (3 is right: d/dvar of
            (var + eps) ** (-1/2) is -1/2 (var + eps) ** (-3/2)).
        dmean_sign: the sign of the direct path -sum(dx_hat) / std.
        dmean_centred: False takes dvar/dmean as -2 * mean(x) instead of -2 * mean(x - mean)
            (which is zero).

    Returns:
        dict with "dx_hat" (N, D), "dvar" (D,) and "dmean" (D,).
    """
    x = np.asarray(x, dtype=np.float64)
    dout = np.asarray(dout, dtype=np.float64)
    gamma = np.asarray(gamma, dtype=np.float64)
    mean = x.mean(axis=0)
    centred = x - mean
    std = np.sqrt(x.var(axis=0) + float(eps))
    dx_hat = dout * gamma if use_gamma else dout.copy()
    reduce = np.sum if dvar_sum else np.mean
    dvar = -0.5 * reduce(dx_hat * centred, axis=0) / std**dvar_power
    dvar_dmean = -2.0 * (centred if dmean_centred else x).mean(axis=0)
    dmean = dmean_sign * dx_hat.sum(axis=0) / std + dvar * dvar_dmean
    return {"dx_hat": dx_hat, "dvar": dvar, "dmean": dmean}


# Three of the five have a sample submission (each one costs a whole graded submission in
# `make demo`); tests/test_mistakes_numpy.py makes the other two by editing the solution.
_P = "backward_pieces"
_PC = "test_backward_pieces"
_PIECES_DVAR = "dvar = -0.5 * (dx_hat * x_centered).sum(axis=0) / std**3"
_PIECES_DMEAN = "dmean = -dx_hat.sum(axis=0) / std + dvar * (-2.0 * x_centered.mean(axis=0))"

MISTAKES += [
    Mistake(
        "pieces-gamma-missing",
        "dL/dx_hat is g = gamma * dout: the output is y = gamma * x_hat + beta, so the upstream "
        "gradient reaches x_hat multiplied by gamma (and dvar and dmean, built from g, carry "
        "that factor too).",
        pieces={"use_gamma": False},
        samples=(
            _sample(
                "np-pieces-gamma-missing", [(_P, "dx_hat = dout * gamma", "dx_hat = dout")], _PC
            ),
        ),
    ),
    Mistake(
        "pieces-dvar-mean-not-sum",
        "dL/dvar is a sum over the batch, not a mean: every x_hat_j depends on the one variance, "
        "so dvar = sum over j of g_j * (x_j - mean) * (-1/2) * (var + eps) ** (-3/2) (sum over "
        "axis 0; the 1/N belongs to dvar/dx_i = 2 (x_i - mean) / N, step 1).",
        pieces={"dvar_sum": False},
    ),
    Mistake(
        "pieces-dvar-exponent",
        "d/dvar of (var + eps) ** (-1/2) is -1/2 * (var + eps) ** (-3/2): dvar divides by "
        "std ** 3, not by std (the power rule lowers the exponent by one).",
        pieces={"dvar_power": 1},
        samples=(
            _sample(
                "np-pieces-dvar-exponent",
                [(_P, _PIECES_DVAR, _PIECES_DVAR.replace("std**3", "std"))],
                _PC,
            ),
        ),
    ),
    Mistake(
        "pieces-dmean-sign",
        "The direct path of dL/dmean has a minus sign: d x_hat_j / d mean = -1 / s, so it is "
        "-sum over j of g_j / s.",
        pieces={"dmean_sign": 1.0},
        samples=(
            _sample(
                "np-pieces-dmean-sign",
                [(_P, _PIECES_DMEAN, _PIECES_DMEAN.replace("dmean = -dx_hat", "dmean = dx_hat"))],
                _PC,
            ),
        ),
    ),
    Mistake(
        "pieces-dmean-var-path",
        "The variance path of dL/dmean is dL/dvar * dvar/dmean with dvar/dmean = -2/N * sum of "
        "(x_j - mean), which is 0 because the deviations from the mean sum to zero; "
        "-2/N * sum of x_j = -2 * mean is not it (step 3's hint).",
        pieces={"dmean_centred": False},
    ),
]


def pieces_diagnosis(name, got, ref, case):
    """The mistake that explains piece ``name`` ("dx_hat", "dvar" or "dmean") of Part C, or None.

    Structural findings first (None returned, wrong shape); then the one catalogued variant of
    :func:`pieces_variant` that ``got`` matches while differing from the reference. Two variants
    that both match name nothing (better a plain expected/got than a wrong name).

    Args:
        case: the inputs given to the student: x (N, D), gamma (D,), dout (N, D), bn_param["eps"].
    """
    ref = np.asarray(ref, dtype=np.float64)
    if got is None:
        return "returns-none"
    if not isinstance(got, np.ndarray) or not np.issubdtype(got.dtype, np.number):
        return None
    if got.shape != ref.shape:
        return "wrong-shape" if got.size == ref.size else None
    found = []
    for mistake in MISTAKES:
        if mistake.pieces is None:
            continue
        variant = pieces_variant(
            case["x"], case["gamma"], case["dout"], case["bn_param"]["eps"], **mistake.pieces
        )[name]
        if not matches(variant, ref) and matches(got, variant):
            found.append(mistake.mistake_id)
    return found[0] if len(found) == 1 else None


BY_ID = {mistake.mistake_id: mistake for mistake in MISTAKES}


def cause(mistake_id):
    """The sentence shown to a student for ``mistake_id``."""
    return BY_ID[mistake_id].cause


# ---------------------------------------------------------------- diagnosis
def structural(got, ref, quantity, expect_dtype=None):
    """A mistake visible from the array's shape, values or dtype alone, else ``None``."""
    if not isinstance(got, np.ndarray):
        return None
    if got.shape != ref.shape:
        if got.size == ref.size:
            return "wrong-shape"
        if quantity in ("dgamma", "dbeta"):
            return "params-wrong-axis"
        if quantity in ("running_mean", "running_var"):
            return "wrong-axis"
        return None
    if np.issubdtype(got.dtype, np.number) and not np.isfinite(got).all():
        return "nan-or-inf"
    if expect_dtype is not None and got.dtype != np.dtype(expect_dtype) and got.dtype == np.float64:
        return "float32-promoted"
    return None


def _variant_values(mistake, kind, case):
    """Yield each variant result (a dict of quantities) this mistake has for ``kind``."""
    x, gamma = case["x"], case["gamma"]
    if kind == "bn_forward" and mistake.bn is not None:
        yield bn_forward_variant(x, gamma, case["beta"], case["bn_param"], **mistake.bn)
    elif kind == "spatial_forward":
        if mistake.bn is not None and "axis" not in mistake.bn:
            yield spatial_forward_variant(x, gamma, case["beta"], case["bn_param"], **mistake.bn)
        for axes in mistake.spatial_axes or ():
            yield spatial_forward_variant(x, gamma, case["beta"], case["bn_param"], axes=axes)
    elif kind == "bn_backward" and mistake.backward is not None:
        yield bn_backward_variant(
            x, gamma, case["bn_param"]["eps"], case["dout"], **mistake.backward
        )
    elif kind == "spatial_backward" and mistake.backward is not None:
        yield spatial_backward_variant(
            x, gamma, case["bn_param"]["eps"], case["dout"], **mistake.backward
        )
    elif kind == "ln_forward" and mistake.ln is not None:
        yield ln_forward_variant(x, gamma, case["beta"], case["ln_param"], **mistake.ln)
    elif kind == "ln_backward" and mistake.ln_backward is not None:
        yield ln_backward_variant(
            x, gamma, case["ln_param"]["eps"], case["dout"], **mistake.ln_backward
        )


def _legacy(kind, quantity, got, ref, case, dtype):
    """The first catalogued variant ``got`` matches (only where the structural search has no
    model: NHWC statistics over the wrong axes)."""
    for mistake in MISTAKES:
        if (
            mistake.out_correct is not None
            and case.get("out_correct", mistake.out_correct) != mistake.out_correct
        ):
            continue
        for values in _variant_values(mistake, kind, case):
            variant = values.get(quantity)
            if variant is None or matches(variant, ref, dtype):
                continue
            if matches(got, variant, dtype):
                return mistake.mistake_id
    return None


def _from_values(kind, quantity, got, ref, case, dtype):
    """The structural finding for an array of the right shape, else None."""
    if quantity == "out":
        found = structure.forward_finding(kind.replace("_backward", "_forward"), got, case, dtype)
    elif quantity in ("running_mean", "running_var"):
        found = structure.running_finding(quantity, got, case, dtype)
    elif quantity == "dx":
        found = structure.dx_finding(kind, got, case, dtype)
    else:
        found = structure.params_finding(kind, quantity, got, case, dtype)
    if found is None and kind == "spatial_forward":
        legacy = _legacy(kind, quantity, got, ref, case, dtype)
        found = structure.Finding((legacy,)) if legacy else None
    if found is not None and "eps-missing" in found.ids and not np.isfinite(got).all():
        # A zero-variance feature divided by sqrt(0): the NaN is what the student sees.
        found = structure.Finding(
            tuple("nan-or-inf" if i == "eps-missing" else i for i in found.ids), found.computed
        )
    return found


def diagnosis(kind, quantity, got, ref, case, dtype=np.float64, expect_dtype=None):
    """What explains ``got``: a :class:`~bn_grader.diagnose.Finding`, or None when unsure.

    Args:
        kind: "bn_forward", "spatial_forward", "bn_backward", "spatial_backward",
            "ln_forward" or "ln_backward".
        quantity: "out", "running_mean", "running_var", "dx", "dgamma" or "dbeta".
        got: the student's value; ref: the float64 reference value.
        case: the inputs (x, gamma, beta, bn_param or ln_param, dout) as given to the student.
        dtype: the inputs' dtype (selects the tolerance).
    """
    ref = np.asarray(ref, dtype=np.float64)
    if got is None:
        return structure.Finding(("returns-none",))
    if not isinstance(got, np.ndarray) or not np.issubdtype(got.dtype, np.number):
        return None
    if got.shape != ref.shape:
        found = structural(got, ref, quantity)
        if found == "wrong-shape":
            inner = got.reshape(ref.shape)
            if matches(inner, ref, dtype):
                return structure.Finding(("wrong-shape",))
            rest = _from_values(kind, quantity, inner, ref, case, dtype)
            return structure.Finding(("wrong-shape", *(rest.ids if rest else ())))
        if found == "wrong-axis" and got.size == 1:
            found = "stats-over-all-elements"
        return structure.Finding((found,)) if found else None
    if expect_dtype is not None and got.dtype != np.dtype(expect_dtype) and got.dtype == np.float64:
        return structure.Finding(("float32-promoted",))
    return _from_values(kind, quantity, got, ref, case, dtype)


def diagnose(kind, quantity, got, ref, case, dtype=np.float64, expect_dtype=None):
    """The id of the most important mistake :func:`diagnosis` finds, or None."""
    found = diagnosis(kind, quantity, got, ref, case, dtype, expect_dtype)
    return found.ids[0] if found else None


def explain(reason, mistake_id):
    """The detail of a failed item: the comparison, then the named mistake and its cause."""
    if mistake_id is None:
        return reason
    return f"{reason}. Likely mistake [{mistake_id}]: {cause(mistake_id)}"


def explain_finding(reason, finding, fallback=""):
    """The detail of a failed item from a :class:`~bn_grader.diagnose.Finding` (or None).

    Each named mistake reads ``Likely mistake [id]: cause`` (the tag the class report counts);
    without a finding, ``fallback`` says which property of the result differs.
    """
    if finding is None or not finding.ids:
        return f"{reason}; {fallback}" if fallback else reason
    text = reason
    if finding.computed:
        text += f". Your result matches {finding.computed}"
    if len(finding.ids) > 1:
        text += f". {len(finding.ids)} mistakes at once"
    for mistake_id in finding.ids:
        text += f". Likely mistake [{mistake_id}]: {cause(mistake_id)}"
    return text.replace(".. ", ". ")


# ---------------------------------------------------------------- group-norm diagnosis
_GN_FORWARD_KEYS = {"ddof", "eps_place"}
_GN_BACKWARD_KEYS = {"mean_path", "var_path", "swap"}


def _gn_variants(mistake, quantity, case):
    """Yield this mistake's group-norm variant results (dicts of quantities) on ``case``."""
    x, gamma, groups = case["x"], case["gamma"], case["G"]
    eps = case["gn_param"]["eps"]
    switches = []
    if mistake.gn is not None:
        switches.append(dict(mistake.gn))
    switches += [{"grouping": grouping} for grouping in mistake.gn_groupings]
    if mistake.ln is not None and set(mistake.ln) <= _GN_FORWARD_KEYS:
        switches.append(dict(mistake.ln))
    if quantity == "out":
        for flags in switches:
            yield gn_forward_variant(x, gamma, case["beta"], groups, case["gn_param"], **flags)
        return
    if mistake.backward is not None and set(mistake.backward) <= _GN_BACKWARD_KEYS:
        switches.append(dict(mistake.backward))
    for flags in switches:
        if set(flags) <= {"grouping", "gamma_per_group", *_GN_BACKWARD_KEYS}:
            yield gn_backward_variant(x, gamma, groups, eps, case["dout"], **flags)


def gn_diagnosis(quantity, got, ref, case, dtype=np.float64, expect_dtype=None):
    """The mistake id that explains a group-norm result ``got``, or None when unsure.

    Args:
        quantity: "out", "dx", "dgamma" or "dbeta".
        case: the inputs as given to the student (x, gamma, beta, G, gn_param, dout).
    """
    ref = np.asarray(ref, dtype=np.float64)
    if got is None:
        return "returns-none"
    if not isinstance(got, np.ndarray) or not np.issubdtype(got.dtype, np.number):
        return None
    groups, channels = case["G"], case["x"].shape[-1]
    if got.shape != ref.shape:
        if quantity in ("dgamma", "dbeta") and got.shape == (groups,) and groups != channels:
            return "gn-gamma-per-group"
        return structural(got, ref, quantity)
    if not np.isfinite(got).all():
        return "nan-or-inf"
    if expect_dtype is not None and got.dtype != np.dtype(expect_dtype) and got.dtype == np.float64:
        return "float32-promoted"
    for mistake in MISTAKES:
        for values in _gn_variants(mistake, quantity, case):
            variant = values.get(quantity)
            if variant is None or matches(variant, ref, dtype):
                continue
            if matches(got, variant, dtype):
                return mistake.mistake_id
    return None
