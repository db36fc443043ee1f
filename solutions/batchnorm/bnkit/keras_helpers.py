"""Helpers for bn_keras.ipynb: device report, NumPy comparisons, digits data, training, plots.

TensorFlow is imported inside the functions, so the notebook's setup cell can set the
``TF_*`` environment variables before TensorFlow is first imported.
"""

import contextlib
import io
import os
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from .nbimport import MissingFunction

CHANCE_ACCURACY = 0.1  # ten balanced digit classes


@dataclass(frozen=True)
class TensorFlowStartup:
    """What TensorFlow printed while it was imported, kept out of the notebook's stderr.

    Attributes:
        text: everything it wrote to stderr while importing (C++ and Python).
        device_line: one line for people: which device TensorFlow found, and why not a GPU.
    """

    text: str
    device_line: str


def import_tensorflow_quietly():
    """Import TensorFlow and Keras with their start-up messages captured instead of shown.

    TensorFlow's C++ start-up lines ("Could not find cuda drivers on your machine, GPU will
    not be used.") are written to the process's stderr before ``TF_CPP_MIN_LOG_LEVEL`` applies;
    in a notebook they show as red blocks. This import sends stderr (the file descriptor and
    ``sys.stderr``) to a temporary file, then turns what was written into one device line.

    Returns:
        TensorFlowStartup.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        python_side = io.StringIO()
        os.dup2(capture.fileno(), 2)
        try:
            with contextlib.redirect_stderr(python_side):
                import keras  # noqa: F401  imported for its start-up messages
                import tensorflow as tf
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        text = capture.read().decode("utf-8", errors="replace") + python_side.getvalue()
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        line = f"Device: {len(gpus)} GPU(s) found; TensorFlow can run on /GPU:0."
    elif "cuda drivers" in text.lower():
        line = "Device: no CUDA driver found, so no GPU: everything runs on the CPU."
    else:
        line = (
            "Device: no GPU found (CPU-only TensorFlow or no driver): everything runs on the CPU."
        )
    return TensorFlowStartup(text=text, device_line=line)


def show_device(device):
    """Run a small matrix product on ``device`` and print where TensorFlow actually ran it.

    Args:
        device: a device name such as "/GPU:0" or "/CPU:0".

    Returns:
        The full device name of the result, e.g. "/job:localhost/replica:0/task:0/device:CPU:0".
    """
    import tensorflow as tf

    with tf.device(device):
        product = tf.linalg.matmul(tf.ones((64, 64)), tf.ones((64, 64)))
    gpus = tf.config.list_physical_devices("GPU")
    print(f"GPUs found: {len(gpus)}; asked for {device}; the product ran on {product.device}")
    return product.device


def max_difference(a, b):
    """Largest absolute difference between two arrays of the same shape (a float)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} and {b.shape}")
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def compare_with_numpy(label, keras_values, numpy_call):
    """Print how far Keras results are from your NumPy results; skip if NumPy is unavailable.

    Args:
        label: what is compared, e.g. "forward, train mode".
        keras_values: dict name -> array computed with Keras.
        numpy_call: function of no arguments returning a dict name -> array with the same keys,
            computed with your functions from bn_numpy.ipynb.

    Returns:
        dict name -> largest absolute difference, or None when the comparison was skipped.
    """
    try:
        numpy_values = numpy_call()
    except (MissingFunction, NotImplementedError) as error:
        reason = str(error) or "it raised NotImplementedError (not finished yet)"
        print(f"{label}: skipped, your NumPy code is not available ({reason})")
        return None
    except Exception as error:  # noqa: BLE001  the NumPy notebook may be unfinished or buggy
        print(f"{label}: skipped, your NumPy code raised {type(error).__name__}: {error}")
        return None
    differences = {}
    for name, value in keras_values.items():
        try:
            differences[name] = max_difference(value, numpy_values[name])
        except (KeyError, ValueError) as error:
            print(f"{label}: {name}: cannot compare ({error})")
            continue
        print(f"{label}: {name}: largest |Keras - NumPy| = {differences[name]:.2e}")
    return differences


def load_digits_data():
    """The 8x8 digits bundled with scikit-learn, with the kit's fixed split (bnkit.data).

    Returns:
        dict with float32 pixels scaled to [0, 1] and int64 labels:
        x_train (1437, 64), x_val (360, 64), images_train (1437, 8, 8, 1),
        images_val (360, 8, 8, 1), y_train (1437,), y_val (360,).
    """
    from .data import load_digits

    digits = load_digits()
    return {
        "x_train": digits.x_train,
        "x_val": digits.x_val,
        "images_train": digits.x_train.reshape(-1, 8, 8, 1),
        "images_val": digits.x_val.reshape(-1, 8, 8, 1),
        "y_train": digits.y_train,
        "y_val": digits.y_val,
    }


def train(
    build_model, data, learning_rate, epochs=15, batch_size=64, images=False, device=None, seed=0
):
    """Seed, build, compile and fit a classifier on the digits with plain SGD.

    Args:
        build_model: function of no arguments returning an uncompiled keras.Model.
        data: dict from :func:`load_digits_data`.
        learning_rate: SGD learning rate.
        epochs, batch_size: training length and mini-batch size.
        images: feed (N, 8, 8, 1) images instead of (N, 64) vectors.
        device: device name to train on ("/GPU:0", "/CPU:0"); None lets TensorFlow choose.
        seed: seeds weight initialisation and shuffling (keras.utils.set_random_seed).

    Returns:
        dict metric -> list of floats, one per epoch: loss, accuracy, val_loss, val_accuracy.
    """
    import contextlib

    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    where = tf.device(device) if device else contextlib.nullcontext()
    x_key = "images" if images else "x"
    start = time.perf_counter()
    with where:
        model = build_model()
        model.compile(
            optimizer=keras.optimizers.SGD(learning_rate=learning_rate),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        history = model.fit(
            data[f"{x_key}_train"],
            data["y_train"],
            batch_size=batch_size,
            epochs=epochs,
            validation_data=(data[f"{x_key}_val"], data["y_val"]),
            verbose=0,
        )
    seconds = time.perf_counter() - start
    curves = {name: [float(value) for value in values] for name, values in history.history.items()}
    ran_on = (
        getattr(getattr(model.weights[0], "value", None), "device", "?") if model.weights else "?"
    )
    print(
        f"lr {learning_rate:g}, {epochs} epochs: validation accuracy {curves['val_accuracy'][-1]:.2f} "
        f"after the last epoch ({seconds:.1f} s; weights on {ran_on})"
    )
    return curves


def plot_histories(ax, histories, names, metric="val_accuracy", title=""):
    """Draw one curve per run: ``metric`` against the epoch, with the chance level for accuracy.

    Args:
        ax: a matplotlib Axes.
        histories: dict run name -> dict from :func:`train`.
        names: the runs to draw, in order (missing runs are noted in the legend).
        metric: "val_accuracy", "accuracy", "loss" or "val_loss".
        title: the question the plot answers.
    """
    for name in names:
        curve = histories.get(name, {}).get(metric)
        if curve:
            ax.plot(np.arange(1, len(curve) + 1), curve, marker="o", markersize=3, label=name)
        else:
            ax.plot([], [], label=f"{name} (not run)")
    if "accuracy" in metric:
        ax.axhline(CHANCE_ACCURACY, color="grey", linestyle=":", label="chance (0.1)")
        ax.set_ylim(0, 1.02)
        ax.set_ylabel(metric.replace("_", " ") + " (fraction correct)")
    else:
        ax.set_ylabel(metric.replace("_", " ") + " (cross-entropy, nats)")
    ax.set_xlabel("epoch")
    ax.set_title(title)
    ax.legend(fontsize=8)


# Scenarios of the "predict, then verify" part: name -> what it runs.
MODE_SCENARIOS = (
    "layer(x)",
    "layer(x, training=True)",
    "model(x)",
    "model(x, training=True)",
    "model.predict(x)",
    "model.fit(x, y)",
    "frozen: layer(x, training=True)",
    "frozen: model.fit(x, y) moving statistics",
)


def observe_modes(used_batch_statistics, seed=0):
    """Run every scenario of MODE_SCENARIOS on a fresh layer and report what really happened.

    Each layer starts with moving statistics far from the batch statistics, so the two modes
    give clearly different outputs. Outputs are classified with your ``used_batch_statistics``;
    ``model.fit`` is classified by whether the moving statistics moved.

    Args:
        used_batch_statistics: your function (x, y, gamma, beta, moving_mean, moving_variance,
            epsilon) -> bool.

    Returns:
        dict scenario -> "training", "inference", "updated", "unchanged" or "cannot tell (...)".
    """
    import keras

    rng = np.random.default_rng(seed)
    features = 4
    x = rng.normal(0.0, 1.0, size=(32, features))
    targets = np.zeros_like(x)

    def fresh_layer(frozen=False):
        layer = keras.layers.BatchNormalization(momentum=0.5, epsilon=1e-3, dtype="float64")
        layer.build((None, features))
        layer.gamma.assign(rng.uniform(0.5, 2.0, size=features))
        layer.beta.assign(rng.normal(0.0, 1.0, size=features))
        layer.moving_mean.assign(np.full(features, 5.0))
        layer.moving_variance.assign(np.full(features, 4.0))
        layer.trainable = not frozen
        return layer

    def in_model(layer):
        return keras.Sequential([keras.Input((features,), dtype="float64"), layer])

    def classify(layer, run):
        state = [
            np.array(w) for w in (layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance)
        ]
        output = np.asarray(run())
        try:
            used = used_batch_statistics(x, output, *state, layer.epsilon)
        except Exception as error:  # noqa: BLE001  the student's detector may be unfinished
            return f"cannot tell ({type(error).__name__}: {str(error)[:80]})"
        return "training" if used else "inference"

    def moved_by_fit(layer):
        model = in_model(layer)
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="mse")
        before = np.array(layer.moving_mean)
        model.fit(x, targets, batch_size=len(x), epochs=1, verbose=0)
        return not np.allclose(before, np.array(layer.moving_mean))

    observed = {}
    layer = fresh_layer()
    observed["layer(x)"] = classify(layer, lambda: layer(x))
    layer = fresh_layer()
    observed["layer(x, training=True)"] = classify(layer, lambda: layer(x, training=True))
    layer = fresh_layer()
    observed["model(x)"] = classify(layer, lambda: in_model(layer)(x))
    layer = fresh_layer()
    observed["model(x, training=True)"] = classify(layer, lambda: in_model(layer)(x, training=True))
    layer = fresh_layer()
    observed["model.predict(x)"] = classify(layer, lambda: in_model(layer).predict(x, verbose=0))
    observed["model.fit(x, y)"] = "training" if moved_by_fit(fresh_layer()) else "inference"
    layer = fresh_layer(frozen=True)
    observed["frozen: layer(x, training=True)"] = classify(layer, lambda: layer(x, training=True))
    observed["frozen: model.fit(x, y) moving statistics"] = (
        "updated" if moved_by_fit(fresh_layer(frozen=True)) else "unchanged"
    )
    return observed
