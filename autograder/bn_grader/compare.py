"""Array comparisons that say exactly what differs (shape, dtype, NaN, largest error).

Tolerances are absolute and scale with the reference: ``|got - ref| <= atol_rel * max|ref| +
rtol * |ref|``. A plain ``np.allclose`` would accept a (1, D) array where (D,) is expected,
because it broadcasts; shapes are therefore compared exactly first.
"""

from dataclasses import dataclass

import numpy as np

# Tolerances by the dtype the student computed in. float64: the reference and a correct
# float64 implementation agree to about 1e-13 relative (FACTS); 1e-7 leaves room for other
# correct orders of summation and still catches every catalogued mistake (the smallest of
# which, eps outside the root with std 0.1 and eps 1e-3, changes outputs by about 4e-2).
# float32: error grows with |mean|/std and tensor size; 1e-4 * max|ref| passed a 64x32x32x64
# NHWC case where fixed atol=1e-5 failed (FACTS). A correct float32 implementation lands near
# 1e-6 relative on the hidden float32 inputs (offsets at most a few std, at most 1e3 values per
# statistic); the catalogued mistakes there change results by 1e-2 or more.
TOLERANCES = {np.dtype(np.float64): (1e-7, 1e-7), np.dtype(np.float32): (1e-4, 1e-4)}


@dataclass
class Mismatch:
    """Why an array did not match; ``None`` fields mean not applicable."""

    reason: str


def describe_shape(value):
    shape = getattr(value, "shape", None)
    return str(tuple(shape)) if shape is not None else type(value).__name__


def mismatch(got, ref, dtype=np.float64, expect_dtype=None):
    """Compare ``got`` with the float64 reference ``ref``.

    Args:
        got: what the student returned (anything).
        ref: float64 ndarray, the expected values.
        dtype: the dtype the inputs had; selects the tolerance.
        expect_dtype: if given, ``got`` must have exactly this dtype.

    Returns:
        ``None`` when they match, else a one-line reason that names expected and received
        values without printing the arrays.
    """
    if not isinstance(got, np.ndarray):
        return f"expected a NumPy array of shape {describe_shape(ref)}, got {type(got).__name__}"
    if got.shape != ref.shape:
        return f"expected shape {describe_shape(ref)}, got {describe_shape(got)}"
    if expect_dtype is not None and got.dtype != np.dtype(expect_dtype):
        return f"expected dtype {np.dtype(expect_dtype).name}, got {got.dtype.name}"
    if not np.issubdtype(got.dtype, np.number) or np.iscomplexobj(got):
        return f"expected real numbers, got dtype {got.dtype}"
    values = got.astype(np.float64)
    finite = np.isfinite(values)
    if not finite.all():
        bad = int((~finite).sum())
        return f"{bad} of {values.size} values are NaN or inf"
    atol_rel, rtol = TOLERANCES.get(np.dtype(dtype), TOLERANCES[np.dtype(np.float64)])
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    atol = atol_rel * max(scale, 1.0)
    error = np.abs(values - ref)
    allowed = atol + rtol * np.abs(ref)
    if (error <= allowed).all():
        return None
    worst = np.unravel_index(int(np.argmax(error - allowed)), ref.shape)
    return (
        f"largest error {float(error[worst]):.3g} (tolerance {float(allowed[worst]):.2g}) at index "
        f"{tuple(int(i) for i in worst)}: expected {float(ref[worst]):.6g}, got {float(values[worst]):.6g}"
    )


def matches(got, ref, dtype=np.float64):
    """True when ``got`` matches ``ref`` within the tolerance for ``dtype`` (any type)."""
    try:
        return mismatch(got, ref, dtype) is None
    except Exception:  # noqa: BLE001  a student's odd object simply does not match
        return False
