"""Safety properties of the grader-kernel protocol (bnkit.wire, bn_grader.channel, executor).

Each test plays a hostile kernel on one end of a socket pair and checks that the grader's end
turns the bad reply into a ProtocolError (a failed item with a plain reason, recorded for the
flags), never a crash, a pickle load or a score.
"""

import io
import pickle
import socket
import struct
import sys
import threading
import time

import numpy as np
import pytest

from bn_grader.channel import ProtocolError, RemoteKernel
from bn_grader.executor import _refusal, _RunningCell
from bn_grader.runner import run_check
from bnkit import wire


def _kernel_pair(reply_with, deadline=5.0, closed=None):
    """A RemoteKernel whose other end answers each question with ``reply_with(header)``.

    ``reply_with`` returns raw bytes to send (one or more frames), or None to stay silent.
    """
    grader_end, kernel_end = socket.socketpair()

    def serve():
        with kernel_end:
            while True:
                try:
                    header, _ = wire.receive(kernel_end)
                except (EOFError, OSError, wire.WireError):
                    return
                if header.get("op") in ("done", "refused"):
                    return
                data = reply_with(header)
                try:
                    if data:
                        kernel_end.sendall(data)
                except OSError:
                    return  # the grader already hung up

    threading.Thread(target=serve, daemon=True).start()
    return RemoteKernel(grader_end, time.monotonic() + deadline, closed), grader_end


def _reply(header, **fields):
    return wire.pack(dict(fields, op="reply", id=header["id"]))


def test_a_well_formed_reply_decodes():
    array = np.arange(6.0).reshape(2, 3)

    def reply(header):
        encoder = wire.Encoder()
        value = encoder.encode((array, {"mode": "train"}, np.float32(1.5)))
        return wire.pack({"op": "reply", "id": header["id"], "value": value}, encoder.blobs)

    kernel, _ = _kernel_pair(reply)
    (got, param, scalar), _ = kernel.ask("get", name="x")
    np.testing.assert_array_equal(got, array)
    assert param == {"mode": "train"} and scalar.dtype == np.float32
    assert kernel.problems == []


def test_oversized_reply_is_refused_before_reading_it():
    def reply(header):
        text = b'{"op": "reply"}'
        too_big = wire.MAX_BLOB_BYTES + 1
        head = f'{{"op":"reply","id":{header["id"]},"value":null,"blobs":[{too_big}]}}'.encode()
        return struct.pack(">I", len(head)) + head + text

    kernel, _ = _kernel_pair(reply)
    with pytest.raises(ProtocolError, match="limits"):
        kernel.ask("get", name="x")
    assert kernel.problems


def test_oversized_header_is_refused():
    def reply(header):
        return struct.pack(">I", wire.MAX_HEADER_BYTES + 1) + b"{"

    kernel, _ = _kernel_pair(reply)
    with pytest.raises(ProtocolError, match="header"):
        kernel.ask("get", name="x")


def test_pickle_bytes_are_never_unpickled():
    class Bomb:
        def __reduce__(self):
            return (exec, ("import sys; sys.modules['__bomb__'] = True",))

    def reply(header):
        blob = pickle.dumps(Bomb())
        return wire.pack({"op": "reply", "id": header["id"], "value": {"t": "nd", "i": 0}}, [blob])

    kernel, _ = _kernel_pair(reply)
    with pytest.raises(ProtocolError, match="npy"):
        kernel.ask("get", name="x")
    assert "__bomb__" not in sys.modules


def test_object_arrays_in_npy_are_refused():
    def reply(header):
        buffer = io.BytesIO()
        np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        return wire.pack(
            {"op": "reply", "id": header["id"], "value": {"t": "nd", "i": 0}}, [buffer.getvalue()]
        )

    kernel, _ = _kernel_pair(reply)
    with pytest.raises(ProtocolError):
        kernel.ask("get", name="x")


def test_wrong_dtype_and_structured_arrays_are_refused():
    for array in (np.array(["a", "b"]), np.zeros(2, dtype=[("a", "f8"), ("b", "i4")])):
        encoded = io.BytesIO()
        np.save(encoded, array, allow_pickle=False)
        with pytest.raises(wire.WireError):
            wire.Decoder([encoded.getvalue()]).decode({"t": "nd", "i": 0})


def test_reference_to_a_missing_array_is_refused():
    with pytest.raises(wire.WireError, match="does not carry"):
        wire.Decoder([]).decode({"t": "nd", "i": 3})
    with pytest.raises(wire.WireError, match="scalar"):
        buffer = io.BytesIO()
        np.save(buffer, np.zeros(3))
        wire.Decoder([buffer.getvalue()]).decode({"t": "sc", "i": 0})


def test_deep_nesting_is_refused():
    node = 1
    for _ in range(wire.MAX_DEPTH + 3):
        node = {"t": "list", "v": [node]}
    with pytest.raises(wire.WireError, match="deeper"):
        wire.Decoder([]).decode(node)


def test_reply_to_a_question_never_asked():
    kernel, _ = _kernel_pair(lambda header: wire.pack({"op": "reply", "id": 12345, "value": 1}))
    with pytest.raises(ProtocolError, match="did not ask"):
        kernel.ask("get", name="x")
    assert kernel.problems


def test_a_second_reply_is_not_taken_for_the_next_answer():
    def reply(header):
        return _reply(header, value=1) + _reply(header, value=2)

    kernel, _ = _kernel_pair(reply)
    assert kernel.ask("get", name="x") == (1, None)
    with pytest.raises(ProtocolError, match="did not ask"):
        kernel.ask("get", name="y")


def test_a_silent_kernel_times_out():
    kernel, _ = _kernel_pair(lambda header: None, deadline=0.5)
    with pytest.raises(ProtocolError, match="too long"):
        kernel.ask("get", name="x")


def test_a_reply_after_the_cell_ended_counts_for_nothing():
    closed = threading.Event()

    def reply(header):
        closed.set()  # the grade cell ends while the kernel is still answering
        return _reply(header, value=1)

    kernel, _ = _kernel_pair(reply, closed=closed)
    with pytest.raises(ProtocolError, match="after the grade cell ended"):
        kernel.ask("get", name="x")
    with pytest.raises(ProtocolError, match="ended before"):
        kernel.ask("get", name="y")


def test_a_malformed_reply_is_a_failed_item_and_no_points():
    """A whole check against a kernel that answers garbage: 0 points, no exception."""
    kernel, _ = _kernel_pair(lambda header: struct.pack(">I", 5) + b"nope!")
    result = run_check("bn_forward_train", kernel, seed=1)
    assert result.score == 0.0
    assert any("malformed" in line for line in result.lines)
    assert kernel.problems


def test_a_request_counts_only_in_its_own_grade_cell_once():
    cell = _RunningCell(index=6, grade_id="test_forward_train", check_id="bn_forward_train")
    assert _refusal(cell, "bn_forward_train") is None
    assert "another check" in _refusal(cell, "bn_forward_properties")
    assert _refusal(None, "bn_forward_train") == "no cell was executing"
    assert "grade cell" in _refusal(_RunningCell(3, None, None), "bn_forward_train")
    cell.asked = True
    assert "already" in _refusal(cell, "bn_forward_train")
