"""Benchmark: NumPy Batch Normalization (forward + backward) against Keras and TF's fused op.

Times, on the CPU in float32, for (N, D) = (256, 1024) and NHWC (64, 32, 32, 64):
- the solution notebook's NumPy functions (batchnorm_forward + batchnorm_backward_alt, and the
  spatial versions), run in float32 as a student's would be;
- the grader's float64 reference (for scale: it always computes in float64);
- Keras 3 BatchNormalization in training mode, forward + GradientTape backward, in tf.function;
- TensorFlow's fused kernel (tf.raw_ops.FusedBatchNormV3 and its gradient), NHWC only.

Prints a table with the median time per forward+backward and an achieved-bandwidth estimate:
the least memory traffic a forward+backward needs (read x, write y; read dout and x, write dx:
five tensors of the input's size) divided by the time. Targets (issue 3): the NumPy version no
slower than Keras on the 2-D case, within 2x of the fused op on the NHWC case.

Usage: .venv/bin/python bench/bench_numpy_vs_keras.py [--repeats 20]
Not a test: timings on a shared machine vary; run it when the machine is quiet.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "autograder"), str(ROOT / "tests")]

from bn_grader import reference  # noqa: E402
from nbcode import namespace_from_notebook  # noqa: E402


def median_ms(function, repeats, warmup=2):
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def bench_shape(shape, solution, tf, repeats_2d, rng):
    """Rows (shape, implementation, ms, GB/s) for one input shape.

    With ``tf`` None only the NumPy rows are timed; otherwise only the TensorFlow rows.
    """
    rows = []
    channels = shape[-1]
    x = rng.normal(size=shape).astype(np.float32)
    dout = rng.normal(size=shape).astype(np.float32)
    gamma, beta = np.ones(channels, np.float32), np.zeros(channels, np.float32)

    def param():
        return {
            "mode": "train",
            "eps": 1e-3,
            "momentum": 0.99,
            "running_mean": np.zeros(channels, np.float32),
            "running_var": np.ones(channels, np.float32),
        }

    two_d = len(shape) == 2
    forward = solution["batchnorm_forward" if two_d else "spatial_batchnorm_forward"]
    backward = solution["batchnorm_backward_alt" if two_d else "spatial_batchnorm_backward"]
    ref_forward = reference.batchnorm_forward if two_d else reference.spatial_batchnorm_forward
    ref_backward = reference.batchnorm_backward if two_d else reference.spatial_batchnorm_backward

    def numpy_solution():
        _, cache = forward(x, gamma, beta, param())
        backward(dout, cache)

    def numpy_reference():
        _, _, _, cache = ref_forward(x, gamma, beta, param())
        ref_backward(dout, cache)

    repeats = repeats_2d if two_d else max(3, repeats_2d // 4)
    traffic = 5 * x.nbytes
    if tf is None:
        entries = [
            ("NumPy (solution, float32)", numpy_solution),
            ("NumPy reference (float64 inside)", numpy_reference),
        ]
        for name, function in entries:
            ms = median_ms(function, repeats)
            rows.append((str(shape), name, ms, traffic / (ms * 1e-3) / 1e9))
        return rows

    layer = tf.keras.layers.BatchNormalization(momentum=0.99, epsilon=1e-3)
    layer.build(shape)
    x_tf, dout_tf = tf.constant(x), tf.constant(dout)

    @tf.function
    def keras_step(inputs, upstream):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = layer(inputs, training=True)
        return tape.gradient(outputs, [inputs, layer.gamma, layer.beta], output_gradients=upstream)

    def keras():
        [t.numpy() for t in keras_step(x_tf, dout_tf)]

    entries = [("Keras 3 in tf.function", keras)]
    if not two_d:
        gamma_tf, beta_tf = tf.constant(gamma), tf.constant(beta)
        empty = tf.constant([], tf.float32)

        @tf.function
        def fused_step(inputs, upstream):
            y, mean, var, reserve1, reserve2, reserve3 = tf.raw_ops.FusedBatchNormV3(
                x=inputs,
                scale=gamma_tf,
                offset=beta_tf,
                mean=empty,
                variance=empty,
                epsilon=1e-3,
                data_format="NHWC",
                is_training=True,
            )
            grads = tf.raw_ops.FusedBatchNormGradV3(
                y_backprop=upstream,
                x=inputs,
                scale=gamma_tf,
                reserve_space_1=reserve1,
                reserve_space_2=reserve2,
                reserve_space_3=reserve3,
                epsilon=1e-3,
                data_format="NHWC",
                is_training=True,
            )
            return y, grads[0], grads[1], grads[2]

        def fused():
            [t.numpy() for t in fused_step(x_tf, dout_tf)]

        entries.append(("TF fused op (FusedBatchNormV3)", fused))
    for name, function in entries:
        ms = median_ms(function, repeats)
        rows.append((str(shape), name, ms, traffic / (ms * 1e-3) / 1e9))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    solution = namespace_from_notebook(
        ROOT / "solutions" / "batchnorm" / "bn_numpy.ipynb",
        cell_ids={
            "batchnorm_forward",
            "batchnorm_backward_alt",
            "spatial_batchnorm_forward",
            "spatial_batchnorm_backward",
        },
    )
    shapes = [(256, 1024), (64, 32, 32, 64)]
    rows_by_shape = {shape: [] for shape in shapes}
    # NumPy first, before TensorFlow is imported: in one run here, the NumPy forward+backward
    # took 0.96 ms before `import tensorflow` and 3.9 ms right after it in the same process,
    # which would compare TensorFlow's start-up with NumPy. A student's NumPy notebook never
    # imports TensorFlow.
    for shape in shapes:
        rows_by_shape[shape] += bench_shape(
            shape, solution, None, args.repeats, np.random.default_rng(0)
        )
    import tensorflow as tf

    for shape in shapes:
        rows_by_shape[shape] += bench_shape(
            shape, solution, tf, args.repeats, np.random.default_rng(0)
        )
    rows = [row for shape in shapes for row in rows_by_shape[shape]]

    print(f"{'shape':18s} {'implementation':34s} {'fwd+bwd (ms)':>12s} {'GB/s':>7s}")
    for shape, name, ms, bandwidth in rows:
        print(f"{shape:18s} {name:34s} {ms:12.2f} {bandwidth:7.1f}")
    by = {(shape, name): ms for shape, name, ms, _ in rows}
    ratio_2d = (
        by[("(256, 1024)", "NumPy (solution, float32)")]
        / by[("(256, 1024)", "Keras 3 in tf.function")]
    )
    ratio_nhwc = (
        by[("(64, 32, 32, 64)", "NumPy (solution, float32)")]
        / by[("(64, 32, 32, 64)", "TF fused op (FusedBatchNormV3)")]
    )
    print(
        f"\n2-D: NumPy / Keras = {ratio_2d:.2f} (target <= 1)   NHWC: NumPy / fused = {ratio_nhwc:.2f} (target <= 2)"
    )


if __name__ == "__main__":
    main()
