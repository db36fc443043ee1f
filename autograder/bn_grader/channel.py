"""The grader's end of a conversation with one grading kernel (trusted side).

The kernel's stub (``bnkit.grading``) answers questions; this module asks them and checks
every answer against the message format (``bnkit.wire``): a reply must carry the id of the
question just asked, come before the deadline, stay inside the size limits and decode without
pickle. Anything else raises :class:`ProtocolError`, which a check turns into a failed item
with a plain reason, and which the executor records as a flag.
"""

import secrets
import threading
import time

from bnkit import wire


class ProtocolError(Exception):
    """The kernel's reply broke the protocol; the message says how (safe to show)."""


class KernelError(Exception):
    """A student function raised: its exception's class name, class names above it, message."""

    def __init__(self, type_name, mro, message):
        super().__init__(message)
        self.type_name = type_name
        self.mro = tuple(mro)
        self.message = message

    def is_a(self, name):
        return name in self.mro


class RemoteKernel:
    """Questions to the kernel over a connected socket.

    Args:
        sock: a connected stream socket whose other end runs ``bnkit.grading``.
        deadline: ``time.monotonic()`` value after which a missing reply is an error.
        closed: an Event set when the grade cell has ended; questions then stop.
    """

    def __init__(self, sock, deadline, closed=None):
        self._sock = sock
        self._deadline = deadline
        self._closed = closed or threading.Event()
        self.questions = 0
        self.problems = []  # every protocol violation, for the executor's flags

    def ask(self, op, **fields):
        """Send one question; return the decoded ``value`` and, for calls, ``after``.

        Raises:
            ProtocolError: the reply broke the protocol (also recorded in ``problems``).
        """
        try:
            return self._ask(op, fields)
        except ProtocolError as error:
            self.problems.append(str(error))
            raise

    def _ask(self, op, fields):
        if self._closed.is_set():
            raise ProtocolError("the grade cell ended before the check finished")
        question_id = secrets.randbits(62)
        encoder = wire.Encoder()
        for key in ("args",):
            if key in fields:
                fields[key] = [encoder.encode(v) for v in fields[key]]
        if "kwargs" in fields:
            fields["kwargs"] = {k: encoder.encode(v) for k, v in fields["kwargs"].items()}
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise ProtocolError("the notebook took too long to answer the grader")
        self._sock.settimeout(remaining)
        self.questions += 1
        try:
            wire.send(self._sock, dict(fields, op=op, id=question_id), encoder.blobs)
            header, blobs = wire.receive(self._sock)
        except TimeoutError:
            raise ProtocolError("the notebook took too long to answer the grader") from None
        except (EOFError, OSError):
            raise ProtocolError("the notebook stopped answering the grader") from None
        except wire.WireError as error:
            raise ProtocolError(f"the notebook's answer was malformed: {error}") from None
        if self._closed.is_set():
            raise ProtocolError("the answer came after the grade cell ended")
        if header.get("op") != "reply" or header.get("id") != question_id:
            raise ProtocolError("the notebook sent an answer to a question the grader did not ask")
        decoder = wire.Decoder(blobs)
        try:
            if "error" in header:
                error = header["error"]
                if not isinstance(error, dict):
                    raise wire.WireError("an error that is not an object")
                mro = error.get("mro")
                return KernelError(
                    str(error.get("type"))[:100],
                    [str(n)[:100] for n in mro] if isinstance(mro, list) else [],
                    str(error.get("message", ""))[:300],
                ), None
            value = decoder.decode(header.get("value"))
            after = header.get("after")
            if after is not None:
                if not isinstance(after, list):
                    raise wire.WireError("'after' is not a list")
                after = [None if node is None else decoder.decode(node) for node in after]
            return value, after
        except wire.WireError as error:
            raise ProtocolError(f"the notebook's answer was malformed: {error}") from None

    def finish(self, op, lines):
        """Send the closing message (``done`` or ``refused``) with the lines to print."""
        try:
            self._sock.settimeout(5)
            wire.send(self._sock, {"op": op, "lines": list(lines)})
        except OSError:
            pass  # the cell already ended; the ledger has what counts
