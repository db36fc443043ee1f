"""Hidden inputs for the bn_numpy.ipynb checks (grading side only, never released).

Every generator takes the check's seeded ``rng`` and returns fresh arrays, so the values are
unknown to students but reproducible for a given check. The shapes and settings are chosen to
expose the catalogued mistakes (see mistakes.py):

- N != D everywhere, so a statistic or gradient summed over the wrong axis changes shape;
- a small variance next to ``eps`` (std about 0.1, eps 1e-3) where the place of eps changes the
  output by about 4% (FACTS); a large-variance case where it does not;
- per-feature offsets and scales, so a statistic over the wrong axis is visibly wrong;
- running statistics far from 0 and 1 (means about 5, variances from 0.01 to 100), so test mode
  with batch statistics or with the default state cannot pass by accident;
- momentum never 0.5, so swapping momentum and 1 - momentum always changes the result;
- ``eps`` and ``momentum`` are Python floats: a NumPy float64 scalar would promote float32 arrays
  to float64 under NumPy 2's rules and blame a correct student.
"""

import numpy as np


def bn_param(mode, eps, momentum, running_mean, running_var):
    """A fresh ``bn_param`` dict (copies of the arrays, Python floats for the scalars)."""
    return {
        "mode": mode,
        "eps": float(eps),
        "momentum": float(momentum),
        "running_mean": np.array(running_mean, copy=True),
        "running_var": np.array(running_var, copy=True),
    }


def copy_param(param):
    return {
        key: (value.copy() if isinstance(value, np.ndarray) else value)
        for key, value in param.items()
    }


def _features(rng, n, d, offset, scale, dtype=np.float64):
    """(n, d) inputs with a different offset and scale per feature."""
    offsets = offset * rng.uniform(0.5, 1.5, size=d) * rng.choice([-1.0, 1.0], size=d)
    scales = scale * rng.uniform(0.5, 2.0, size=d)
    return (offsets + scales * rng.standard_normal((n, d))).astype(dtype)


def _affine(rng, d, dtype=np.float64):
    gamma = rng.normal(1.0, 0.5, size=d).astype(dtype)
    beta = rng.normal(0.0, 1.0, size=d).astype(dtype)
    return gamma, beta


def _running(rng, d, dtype=np.float64):
    """Running statistics far from the default state (0, 1)."""
    running_mean = rng.normal(5.0, 3.0, size=d).astype(dtype)
    running_var = np.exp(rng.uniform(np.log(0.01), np.log(100.0), size=d)).astype(dtype)
    return running_mean, running_var


def train_cases(rng):
    """Cases for batchnorm_forward in train mode: dicts with x, gamma, beta, bn_param."""
    cases = []
    # (N, D, offset, scale, eps, momentum, constant feature)
    settings = [
        (7, 5, 3.0, 2.0, 1e-5, 0.9, False),  # ordinary
        (16, 3, 1.0, 0.1, 1e-3, 0.99, False),  # std 0.1 vs eps 1e-3: the place of eps matters
        (5, 12, 300.0, 4.0, 1e-4, 0.8, False),  # large per-feature offsets, N < D
        (6, 4, 0.5, 1.0, 1e-3, 0.7, True),  # one constant feature: variance exactly 0
    ]
    for n, d, offset, scale, eps, momentum, constant in settings:
        x = _features(rng, n, d, offset, scale)
        if constant:
            x[:, 1] = 2.5
        gamma, beta = _affine(rng, d)
        running_mean, running_var = _running(rng, d)
        cases.append(
            {
                "x": x,
                "gamma": gamma,
                "beta": beta,
                "bn_param": bn_param("train", eps, momentum, running_mean, running_var),
            }
        )
    return cases


def running_cases(rng):
    """Cases for the running statistics: several consecutive train steps on one state."""
    cases = []
    # (N, D, eps, momentum, steps): batch size 1 makes the batch variance 0 (Keras lets the
    # moving variance decay toward 0); two steps catch statistics that are not written back.
    for n, d, eps, momentum, steps in [
        (9, 4, 1e-3, 0.9, 2),
        (3, 7, 1e-5, 0.99, 2),
        (1, 3, 1e-3, 0.8, 1),
    ]:
        running_mean, running_var = _running(rng, d)
        batches = [_features(rng, n, d, 2.0, 1.5) for _ in range(steps)]
        gamma, beta = _affine(rng, d)
        cases.append(
            {
                "batches": batches,
                "gamma": gamma,
                "beta": beta,
                "bn_param": bn_param("train", eps, momentum, running_mean, running_var),
            }
        )
    return cases


def inference_cases(rng):
    """Cases for batchnorm_forward in test mode (running statistics far from 0 and 1)."""
    cases = []
    # (N, D, eps): batch size 1; N != D; small running variances where eps's place matters.
    for n, d, eps, small_var in [(1, 6, 1e-3, False), (8, 3, 1e-3, True), (4, 10, 1e-5, False)]:
        running_mean, running_var = _running(rng, d)
        if small_var:
            running_var = rng.uniform(0.008, 0.012, size=d)  # std about 0.1 next to eps 1e-3
        x = (
            running_mean
            + np.sqrt(running_var) * rng.standard_normal((n, d))
            + rng.normal(0, 1, size=d)
        )
        gamma, beta = _affine(rng, d)
        cases.append(
            {
                "x": x,
                "gamma": gamma,
                "beta": beta,
                "bn_param": bn_param("test", eps, 0.9, running_mean, running_var),
            }
        )
    return cases


def float32_case(rng, mode):
    """A float32 case (x, gamma, beta and running statistics all float32)."""
    n, d = 10, 6
    x = _features(rng, n, d, 2.0, 1.0, np.float32)
    gamma, beta = _affine(rng, d, np.float32)
    running_mean, running_var = _running(rng, d, np.float32)
    return {
        "x": x,
        "gamma": gamma,
        "beta": beta,
        "bn_param": bn_param(mode, 1e-3, 0.9, running_mean, running_var),
    }


def backward_cases(rng):
    """Cases for the backward passes: x, gamma, beta, bn_param (train) and dout."""
    cases = []
    # (N, D, offset, scale, eps, dtype): the small-variance case makes eps matter in dx too;
    # the float32 case checks that gradients stay float32.
    for n, d, offset, scale, eps, dtype in [
        (6, 4, 2.0, 1.5, 1e-5, np.float64),
        (20, 7, -1.0, 0.1, 1e-3, np.float64),
        (3, 9, 50.0, 3.0, 1e-4, np.float64),
        (12, 5, 1.0, 1.0, 1e-3, np.float32),
    ]:
        x = _features(rng, n, d, offset, scale, dtype)
        gamma, beta = _affine(rng, d, dtype)
        running_mean, running_var = _running(rng, d, dtype)
        dout = rng.normal(0.0, 1.0, size=(n, d)).astype(dtype)
        cases.append(
            {
                "x": x,
                "gamma": gamma,
                "beta": beta,
                "bn_param": bn_param("train", eps, 0.9, running_mean, running_var),
                "dout": dout,
            }
        )
    return cases


def spatial_cases(rng):
    """NHWC cases (H, W and C all different), train and test mode, float64 and float32."""
    cases = []
    for shape, mode, eps, dtype in [
        ((2, 3, 4, 5), "train", 1e-3, np.float64),
        ((3, 5, 2, 4), "test", 1e-3, np.float64),
        ((4, 6, 6, 3), "train", 1e-3, np.float32),
    ]:
        n, h, w, c = shape
        x = _features(rng, n * h * w, c, 1.5, 0.8, dtype).reshape(shape)
        gamma, beta = _affine(rng, c, dtype)
        running_mean, running_var = _running(rng, c, dtype)
        if mode == "train":
            # Running variances of the batch's own size: a running variance 100 times the
            # batch's would hide the batch statistic's share (an unbiased variance, say) below
            # the float32 tolerance for some draws of the hidden seed and not for others.
            batch_var = x.reshape(-1, c).astype(np.float64).var(axis=0)
            running_var = (batch_var * rng.uniform(0.5, 2.0, size=c)).astype(dtype)
        dout = rng.normal(0.0, 1.0, size=shape).astype(dtype)
        cases.append(
            {
                "x": x,
                "gamma": gamma,
                "beta": beta,
                "bn_param": bn_param(mode, eps, 0.9, running_mean, running_var),
                "dout": dout,
            }
        )
    return cases


def layernorm_cases(rng):
    """Layer-norm cases: batch size 1 works (statistics per example); per-example offsets."""
    cases = []
    for n, d, eps, scale in [(1, 7, 1e-5, 2.0), (6, 4, 1e-3, 0.1), (9, 13, 1e-5, 3.0)]:
        x = rng.normal(0.0, 5.0, size=(n, 1)) + scale * rng.standard_normal((n, d))
        gamma, beta = _affine(rng, d)
        dout = rng.normal(0.0, 1.0, size=(n, d))
        cases.append(
            {"x": x, "gamma": gamma, "beta": beta, "ln_param": {"eps": float(eps)}, "dout": dout}
        )
    return cases


def groupnorm_cases(rng):
    """NHWC group-norm cases: x, gamma, beta, G, gn_param, dout.

    H, W and C differ, C is never G squared (C/G groups of G channels would then be right by
    accident), each channel has its own offset and scale (a wrong grouping mixes them) and each
    example its own offset (statistics over the batch axis mix examples). G = C (instance norm)
    with a batch of one, G = 1 (layer norm over H, W, C), a small std next to eps, float32.
    """
    cases = []
    # (shape, G, eps, scale, dtype)
    for shape, groups, eps, scale, dtype in [
        ((2, 3, 4, 6), 3, 1e-5, 1.0, np.float64),
        ((3, 2, 5, 8), 2, 1e-3, 0.1, np.float64),  # std about 0.1 next to eps 1e-3
        ((1, 4, 3, 6), 6, 1e-5, 2.0, np.float64),  # instance norm, a batch of one
        ((4, 3, 2, 5), 1, 1e-3, 1.5, np.float64),  # layer norm over (H, W, C)
        ((3, 4, 4, 12), 4, 1e-3, 1.0, np.float32),
    ]:
        n, h, w, c = shape
        channel_offset = rng.uniform(-3.0, 3.0, size=c)
        channel_scale = scale * rng.uniform(0.5, 2.0, size=c)
        example_offset = rng.normal(0.0, 2.0, size=(n, 1, 1, 1))
        x = example_offset + channel_offset + channel_scale * rng.standard_normal(shape)
        gamma, beta = _affine(rng, c)
        cases.append(
            {
                "x": x.astype(dtype),
                "gamma": gamma.astype(dtype),
                "beta": beta.astype(dtype),
                "G": groups,
                "gn_param": {"eps": float(eps)},
                "dout": rng.normal(0.0, 1.0, size=shape).astype(dtype),
            }
        )
    return cases


def groupnorm_bad_groups_case(rng):
    """A case whose C (6) is not divisible by G (4): the function must raise ValueError."""
    x = rng.normal(0.0, 1.0, size=(2, 3, 5, 6))
    gamma, beta = _affine(rng, 6)
    return {"x": x, "gamma": gamma, "beta": beta, "G": 4, "gn_param": {"eps": 1e-5}}
