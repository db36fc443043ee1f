"""What a grade cell runs when your notebook is graded: it lets the grader ask questions.

The grader never runs inside your notebook. It runs beside it, chooses hidden inputs, and asks
this module (over a socket it opens for the grading run) to call your functions on them and
send back what they return. It compares the answers with its own and sends back the lines
this module prints under the grade cell. Nothing here computes, compares or stores a score:
changing this module, or anything else in your notebook, cannot change a grade; only correct
answers from your functions can.

When you run the notebook yourself there is no grader, so :func:`check` says so and returns.
"""

import contextlib
import os
import socket
import sys
import warnings

import numpy as np

from . import wire

SOCKET_VARIABLE = "BNKIT_CHECKER_SOCKET"


class _Objects:
    """Objects your functions returned that cannot travel (a cache, a Keras layer)."""

    def __init__(self):
        self._objects = []

    def keep(self, value):
        self._objects.append(value)
        return len(self._objects) - 1

    def get(self, number):
        if type(number) is not int or not 0 <= number < len(self._objects):
            raise wire.WireError(f"no object number {number!r}")
        return self._objects[number]


def check(check_id):
    """Ask the grader to run the hidden check ``check_id`` on this notebook's functions.

    Args:
        check_id: the check this grade cell stands for, e.g. ``"bn_forward_train"``.
    """
    namespace = sys._getframe(1).f_globals
    path = os.environ.get(SOCKET_VARIABLE)
    if not path:
        print("The hidden tests of this cell run when your notebook is graded.")
        return None
    try:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.connect(path)
    except OSError:
        print("The grader could not be reached; this cell is not graded.")
        return None
    with connection:
        wire.send(connection, {"op": "request", "check": str(check_id)})
        _serve(connection, namespace)
    return None


def _serve(connection, namespace):
    objects = _Objects()
    while True:
        try:
            header, blobs = wire.receive(connection)
        except (EOFError, wire.WireError, OSError):
            print("The grader stopped answering; this cell is not graded.")
            return
        op = header.get("op")
        if op in ("done", "refused"):
            for line in header.get("lines", []):
                print(line)
            return
        reply, reply_blobs = _answer(op, header, blobs, namespace, objects)
        wire.send(connection, dict(reply, op="reply", id=header.get("id")), reply_blobs)


def _answer(op, header, blobs, namespace, objects):
    """Carry out one question; return (reply header, blobs)."""
    encoder = wire.Encoder(keep=objects.keep)
    try:
        with _quiet():
            if op == "lookup":
                value = _lookup(namespace, header.get("name"))
            elif op == "get":
                value = namespace.get(str(header.get("name")), None)
            elif op == "call":
                return _call(header, blobs, namespace, objects, encoder)
            elif op == "describe":
                value = _describe(objects.get(header.get("h")), header.get("as"))
            elif op == "device":
                value = _run_on_device(str(header.get("name")))
            else:
                raise wire.WireError(f"unknown question {op!r}")
            return {"value": encoder.encode(value)}, encoder.blobs
    except KeyboardInterrupt:
        raise  # the grading run's timeout: the cell ends here
    except BaseException as error:  # noqa: BLE001  the grader wants the failure, not a crash
        return {"error": _error(error)}, []


def _lookup(namespace, name):
    value = namespace.get(str(name), None)
    return {"defined": value is not None, "callable": callable(value), "type": type(value).__name__}


def _call(header, blobs, namespace, objects, encoder):
    target = header.get("target")
    if isinstance(target, dict) and "h" in target:
        function = objects.get(target["h"])
    else:
        function = namespace.get(str(target))
        if function is None:
            raise NameError(f"{target} is not defined")
    decoder = wire.Decoder(blobs, resolve=objects.get, make_device=_physical_device)
    args = [decoder.decode(node) for node in header.get("args", [])]
    kwargs = {str(k): decoder.decode(v) for k, v in header.get("kwargs", {}).items()}
    before = [arg.copy() if isinstance(arg, np.ndarray) else None for arg in args]
    try:
        with np.errstate(all="ignore"):
            value = function(*args, **kwargs)
    except KeyboardInterrupt:
        raise
    except BaseException as error:  # noqa: BLE001  your function's failure is the answer
        return {"error": _error(error)}, []
    # What the call did to its arguments: dicts (bn_param) always, arrays when they changed.
    after = []
    for arg, copy in zip(args, before, strict=True):
        if isinstance(arg, dict):
            after.append(encoder.encode(arg))
        elif copy is not None and not (
            arg.shape == copy.shape and np.array_equal(arg, copy, equal_nan=True)
        ):
            after.append(encoder.encode(arg))
        else:
            after.append(None)
    return {"value": encoder.encode(value), "after": after}, encoder.blobs


def _physical_device(name, device_type):
    import tensorflow as tf

    return tf.config.PhysicalDevice(name=name, device_type=device_type)


def _error(error):
    message = str(error).splitlines()[0][:300] if str(error) else ""
    return {
        "type": type(error).__name__,
        "mro": [cls.__name__ for cls in type(error).__mro__][:20],
        "message": message,
    }


@contextlib.contextmanager
def _quiet():
    """Any stderr output in a grade cell scores it 0 (nbgrader): send it to stdout instead."""
    with contextlib.redirect_stderr(sys.stdout), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# ------------------------------------------------------------------- Keras descriptions
def _describe(obj, kind):
    if kind == "bn_layer":
        return _describe_bn_layer(obj)
    if kind == "model_layers":
        return _describe_layers(obj)
    raise wire.WireError(f"unknown description {kind!r}")


def _plain(value):
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return repr(value)[:100]


def _describe_bn_layer(layer):
    """A layer's class, settings and state as plain values and arrays."""
    description = {"classes": [cls.__name__ for cls in type(layer).__mro__]}
    for name in ("momentum", "epsilon", "trainable", "axis"):
        description[name] = _plain(getattr(layer, name, None))
    description["dtype"] = str(getattr(layer, "dtype", None))
    weights = {}
    for name in ("gamma", "beta", "moving_mean", "moving_variance"):
        try:
            weights[name] = np.asarray(getattr(layer, name))
        except Exception:  # noqa: BLE001  a layer without this weight
            weights[name] = None
    description["weights"] = weights
    return description


def _describe_layers(model):
    """Layers as tokens: ["dense", units, activation], ["conv", filters, activation],
    ["bn", momentum, axis], ["act", name]; layers without parameters are left out."""
    import keras

    tokens = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):
            tokens.append(["dense", int(layer.units), layer.activation.__name__])
        elif isinstance(layer, keras.layers.Conv2D):
            tokens.append(["conv", int(layer.filters), layer.activation.__name__])
        elif isinstance(layer, keras.layers.BatchNormalization):
            tokens.append(["bn", float(layer.momentum), _plain(layer.axis)])
        elif isinstance(layer, keras.layers.Activation):
            tokens.append(["act", layer.activation.__name__])
        elif isinstance(layer, keras.layers.ReLU):
            tokens.append(["act", "relu"])
        elif isinstance(layer, keras.Model):
            tokens.extend(_describe_layers(layer))
    return tokens


def _run_on_device(name):
    """Where a small product placed with ``tf.device(name)`` really ran."""
    import tensorflow as tf

    with tf.device(name):
        return tf.linalg.matmul(tf.ones((2, 2)), tf.ones((2, 2))).device
