"""The one message format between a grading kernel and the grader that asks it questions.

When a notebook is graded, the grader runs outside the kernel and asks the kernel (through
:mod:`bnkit.grading`) to call your functions on inputs it chooses; this module turns the
questions and your answers into bytes and back. Both sides use it; neither trusts the other.

A message is a frame on a Unix socket::

    4 bytes   big-endian length H of the header
    H bytes   header: UTF-8 JSON object, at most MAX_HEADER_BYTES
    blobs     the arrays, one after the other; header["blobs"] lists their sizes

Values inside a header are JSON with these tagged forms (``{"t": ...}``):

=========  ===========================================================================
``nd``     a NumPy array: ``{"t": "nd", "i": k}``, blob ``k`` in ``.npy`` format, read with
           ``np.load(allow_pickle=False)``; dtype bool, int, uint, float or complex only
``sc``     a NumPy scalar (``np.float64(1.5)``, ``np.True_``): like ``nd``, 0-d
``tensor`` a TensorFlow tensor or variable, sent as its ``.numpy()`` array (blob ``k``)
``f``      a float that JSON cannot hold: ``{"t": "f", "v": "nan" | "inf" | "-inf"}``
``tuple``  ``{"t": "tuple", "v": [...]}``; ``list`` likewise; ``dict``: ``{"t": "dict",
           "v": {str key: value}}``
``device`` a TensorFlow physical device: ``{"t": "device", "name": str, "type": str}``,
           rebuilt as ``tf.config.PhysicalDevice`` by the kernel
``obj``    any other object, kept by the side that has it: ``{"t": "obj", "h": int,
           "type": class name}``; sent back as ``{"t": "ref", "h": int}``
=========  ===========================================================================

Plain JSON values (None, bool, int, float, str) stand for themselves. Limits (depth, items,
string and array sizes) are below; anything outside them is a :class:`WireError`, which the
grader turns into a failed item with its message, never a crash.
"""

import io
import json
import math
import struct

import numpy as np

MAX_HEADER_BYTES = 4 * 1024 * 1024
MAX_BLOB_BYTES = 64 * 1024 * 1024  # one array
MAX_FRAME_BLOB_BYTES = 128 * 1024 * 1024  # all arrays of one message
MAX_BLOBS = 512
MAX_DEPTH = 12
MAX_ITEMS = 20_000  # containers' entries in one message, all levels together
MAX_STRING = 100_000
ARRAY_KINDS = "biufc"  # bool, signed and unsigned int, float, complex


class WireError(ValueError):
    """A message that breaks the format or its limits; the text says which rule."""


class Handle:
    """An object that stays on the other side; only its number and class name travel."""

    def __init__(self, number, type_name):
        self.number = int(number)
        self.type_name = str(type_name)[:200]

    def __repr__(self):
        return f"<{self.type_name} object>"


class Tensor:
    """A TensorFlow tensor received as its values: ``.numpy()`` gives them, as TF's does."""

    def __init__(self, array):
        self._array = array
        self.shape = array.shape
        self.dtype = array.dtype

    def numpy(self):
        return self._array

    def __array__(self, dtype=None, copy=None):
        return self._array if dtype is None else self._array.astype(dtype)

    def __repr__(self):
        return f"<Tensor shape={self.shape} dtype={self.dtype}>"


class Device:
    """A physical device as the grader describes it (``tf.config.PhysicalDevice`` fields)."""

    def __init__(self, name, device_type):
        self.name = str(name)
        self.device_type = str(device_type)


# ------------------------------------------------------------------------------ encoding
class Encoder:
    """Turns one value into JSON plus blobs; objects it cannot send become handles.

    Args:
        keep: callable(obj) -> int that stores an unsendable object and returns its number,
            or None to refuse such objects (the grader never sends objects of its own).
    """

    def __init__(self, keep=None):
        self.blobs = []
        self.items = 0
        self._keep = keep

    def _blob(self, array):
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        data = buffer.getvalue()
        if len(data) > MAX_BLOB_BYTES:
            raise WireError(f"an array of {len(data)} bytes is larger than {MAX_BLOB_BYTES}")
        self.blobs.append(data)
        return len(self.blobs) - 1

    def encode(self, value, depth=0):
        if depth > MAX_DEPTH:
            raise WireError(f"values nested deeper than {MAX_DEPTH} levels")
        self.items += 1
        if self.items > MAX_ITEMS:
            raise WireError(f"more than {MAX_ITEMS} values in one message")
        if value is None or type(value) in (bool, int, str):
            if isinstance(value, str) and len(value) > MAX_STRING:
                raise WireError(f"a string of {len(value)} characters (limit {MAX_STRING})")
            if type(value) is int and abs(value) >= 2**63:
                return {"t": "f", "v": repr(float(value))}
            return value
        if type(value) is float:
            return value if math.isfinite(value) else {"t": "f", "v": repr(value)}
        if isinstance(value, np.ndarray) and value.dtype.kind in ARRAY_KINDS:
            return {"t": "nd", "i": self._blob(value)}
        if isinstance(value, np.generic) and np.dtype(type(value)).kind in ARRAY_KINDS:
            return {"t": "sc", "i": self._blob(np.asarray(value))}
        if type(value) in (tuple, list):
            return {"t": type(value).__name__, "v": [self.encode(v, depth + 1) for v in value]}
        if type(value) is dict and all(type(k) is str for k in value):
            return {"t": "dict", "v": {k: self.encode(v, depth + 1) for k, v in value.items()}}
        if isinstance(value, Handle):
            return {"t": "ref", "h": value.number}
        if isinstance(value, Device):
            return {"t": "device", "name": value.name, "type": value.device_type}
        array = _tensor_values(value)
        if array is not None:
            return {"t": "tensor", "i": self._blob(array)}
        if self._keep is None:
            raise WireError(f"cannot send a {type(value).__name__}")
        return {"t": "obj", "h": self._keep(value), "type": type(value).__name__}


def _tensor_values(value):
    """The NumPy values of a TensorFlow tensor or variable, else None (never imports TF)."""
    module = type(value).__module__ or ""
    if not (module.startswith("tensorflow") or module.startswith("keras")):
        return None
    try:
        array = np.asarray(value.numpy())
    except Exception:  # noqa: BLE001  not a tensor after all
        return None
    return array if array.dtype.kind in ARRAY_KINDS else None


# ------------------------------------------------------------------------------ decoding
class Decoder:
    """Turns JSON plus blobs back into values.

    Args:
        blobs: the message's blobs (list of bytes).
        resolve: callable(int) -> object for ``ref`` (the side that keeps objects), or None
            when refs are not acceptable. ``obj`` values always become :class:`Handle`.
        make_device: callable(name, device_type) -> object for ``device`` values, or None
            when they are not acceptable (the grader never receives devices).
    """

    def __init__(self, blobs, resolve=None, make_device=None):
        self.blobs = blobs
        self.items = 0
        self._resolve = resolve
        self._make_device = make_device

    def _array(self, index):
        if type(index) is not int or not 0 <= index < len(self.blobs):
            raise WireError(f"a reference to array {index!r}, which the message does not carry")
        try:
            array = np.load(io.BytesIO(self.blobs[index]), allow_pickle=False)
        except Exception as error:  # noqa: BLE001  every malformed blob is the same failure
            raise WireError(
                f"an array that is not valid .npy data ({type(error).__name__})"
            ) from None
        if not isinstance(array, np.ndarray) or array.dtype.kind not in ARRAY_KINDS:
            raise WireError(f"an array of dtype {getattr(array, 'dtype', '?')}, not numbers")
        if array.dtype.fields is not None or array.dtype.subdtype is not None:
            raise WireError("a structured array, not plain numbers")
        return array

    def decode(self, node, depth=0):
        if depth > MAX_DEPTH:
            raise WireError(f"values nested deeper than {MAX_DEPTH} levels")
        self.items += 1
        if self.items > MAX_ITEMS:
            raise WireError(f"more than {MAX_ITEMS} values in one message")
        if node is None or type(node) in (bool, int, float):
            return node
        if type(node) is str:
            if len(node) > MAX_STRING:
                raise WireError(f"a string of {len(node)} characters (limit {MAX_STRING})")
            return node
        if type(node) is not dict or type(node.get("t")) is not str:
            raise WireError(f"a value of unknown form ({type(node).__name__})")
        tag = node["t"]
        if tag == "nd":
            return self._array(node.get("i"))
        if tag == "sc":
            array = self._array(node.get("i"))
            if array.shape != ():
                raise WireError(f"a scalar of shape {array.shape}")
            return array[()]
        if tag == "tensor":
            return Tensor(self._array(node.get("i")))
        if tag == "f":
            if node.get("v") not in ("nan", "inf", "-inf"):
                raise WireError(f"a float written as {node.get('v')!r}")
            return float(node["v"])
        if tag in ("tuple", "list"):
            values = node.get("v")
            if type(values) is not list:
                raise WireError(f"a {tag} without a list of values")
            items = [self.decode(v, depth + 1) for v in values]
            return tuple(items) if tag == "tuple" else items
        if tag == "dict":
            values = node.get("v")
            if type(values) is not dict:
                raise WireError("a dict without an object of values")
            return {str(k): self.decode(v, depth + 1) for k, v in values.items()}
        if tag == "obj":
            number, type_name = node.get("h"), node.get("type")
            if type(number) is not int or type(type_name) is not str:
                raise WireError("an object handle without a number and a class name")
            return Handle(number, type_name)
        if tag == "device":
            if self._make_device is None:
                raise WireError("a device where none was expected")
            return self._make_device(str(node.get("name"))[:200], str(node.get("type"))[:50])
        if tag == "ref":
            if self._resolve is None:
                raise WireError("a reference to an object this side never sent")
            return self._resolve(node.get("h"))
        raise WireError(f"a value tagged {tag!r}")


# -------------------------------------------------------------------------------- frames
def pack(header, blobs=()):
    """One frame: the header (a JSON-able dict) and its blobs, as bytes."""
    blobs = list(blobs)
    header = dict(header, blobs=[len(b) for b in blobs])
    text = json.dumps(header, allow_nan=False, separators=(",", ":")).encode()
    if len(text) > MAX_HEADER_BYTES:
        raise WireError(f"a header of {len(text)} bytes (limit {MAX_HEADER_BYTES})")
    if sum(len(b) for b in blobs) > MAX_FRAME_BLOB_BYTES:
        raise WireError(f"arrays of more than {MAX_FRAME_BLOB_BYTES} bytes in one message")
    return struct.pack(">I", len(text)) + text + b"".join(blobs)


def _read_exactly(sock, size):
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise EOFError("the other side closed the connection")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def receive(sock):
    """Read one frame from ``sock``; return (header dict, blobs). Raises WireError or EOFError."""
    (size,) = struct.unpack(">I", _read_exactly(sock, 4))
    if size > MAX_HEADER_BYTES:
        raise WireError(f"a header of {size} bytes (limit {MAX_HEADER_BYTES})")
    try:
        header = json.loads(_read_exactly(sock, size))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise WireError("a header that is not JSON") from None
    if type(header) is not dict:
        raise WireError("a header that is not a JSON object")
    sizes = header.get("blobs", [])
    if (
        type(sizes) is not list
        or len(sizes) > MAX_BLOBS
        or not all(type(s) is int and 0 <= s <= MAX_BLOB_BYTES for s in sizes)
        or sum(sizes) > MAX_FRAME_BLOB_BYTES
    ):
        raise WireError("array sizes missing or above the limits")
    return header, [_read_exactly(sock, s) for s in sizes]


def send(sock, header, blobs=()):
    sock.sendall(pack(header, blobs))
