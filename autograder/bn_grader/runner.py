"""Runs one check in the grader's own process against a kernel that answers questions.

A check never touches student code directly: :class:`CheckContext` turns each of its calls into
a question to the kernel (:mod:`bn_grader.channel`) and hands back the decoded answer. Every
way a student's answer can go wrong (an exception, a malformed reply, a timeout) becomes a
``[FAIL]`` line; nothing from the grader ever reaches the notebook but those lines.
"""

import hashlib
import hmac
import socket
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from bnkit import wire

from .channel import KernelError, ProtocolError, RemoteKernel
from .registry import CHECKS
from .report import Report


class StudentError(Exception):
    """The student's function failed; the message is safe to show."""


class StudentFunction:
    """A function defined in the notebook, known to the grader by its name only."""

    def __init__(self, name):
        self.__name__ = name

    def __repr__(self):
        return f"<function {self.__name__}>"


class CheckContext:
    """What a check sees: questions to the kernel, a report and the check's hidden seed."""

    def __init__(self, kernel, report, rng):
        self.kernel = kernel
        self.report = report
        self.rng = rng

    def _ask(self, op, **fields):
        try:
            return self.kernel.ask(op, **fields)
        except ProtocolError as error:
            raise StudentError(str(error)) from None

    def function(self, name):
        """The notebook's function ``name``, or raise :class:`StudentError` saying why not."""
        found, _ = self._ask("lookup", name=name)
        if not isinstance(found, dict) or not found.get("defined"):
            raise StudentError(
                f"{name} is not defined: run the cell that defines it, keep its name"
            )
        if not found.get("callable"):
            raise StudentError(f"{name} is a {found.get('type')}, not a function")
        return StudentFunction(name)

    def _call(self, function, args, kwargs):
        if isinstance(function, StudentFunction):
            target = function.__name__
        elif isinstance(function, wire.Handle):
            target = {"h": function.number}
        else:
            raise StudentError(
                f"expected a function, model or layer, got {type(function).__name__}"
            )
        value, after = self._ask("call", target=target, args=list(args), kwargs=kwargs)
        if not isinstance(value, KernelError):
            _apply_changes(args, after)
        return value

    def call(self, function, *args, **kwargs):
        """Call a notebook function (or a returned object, e.g. a layer) on ``args``.

        The arguments are sent as values; what the call did to dicts and arrays among them
        (``bn_param`` updated, an input modified) is applied to the caller's objects, as if
        the call had happened here.

        Raises:
            StudentError: the function raised (type and message, no traceback).
        """
        name = getattr(function, "__name__", None) or getattr(function, "type_name", "function")
        value = self._call(function, args, kwargs)
        if isinstance(value, KernelError):
            if value.is_a("NotImplementedError"):
                raise StudentError(f"{name} is not implemented yet (it raised NotImplementedError)")
            raise StudentError(f"{name} raised {value.type_name}: {value.message}")
        return value

    def raised(self, function, *args, **kwargs):
        """Call ``function``; return the :class:`KernelError` it raised, or None."""
        value = self._call(function, args, kwargs)
        return value if isinstance(value, KernelError) else None

    def value(self, name):
        """The notebook's global ``name`` (None when not defined)."""
        value, _ = self._ask("get", name=name)
        return value

    def describe(self, handle, kind):
        """A description the kernel builds of a returned object (``bn_layer``, ``model_layers``)."""
        if not isinstance(handle, wire.Handle):
            raise StudentError(f"expected an object, got {type(handle).__name__}")
        value, _ = self._ask("describe", h=handle.number, **{"as": kind})
        if isinstance(value, KernelError):
            raise StudentError(f"describing the {handle.type_name} failed: {value.message}")
        return value

    def device(self, name):
        """Where the kernel's TensorFlow ran a small product placed on ``name``."""
        value, _ = self._ask("device", name=name)
        if isinstance(value, KernelError):
            raise StudentError(f"tf.device({name!r}) raised {value.type_name}")
        return value


def _apply_changes(args, after):
    """Mirror on the caller's dicts and arrays what the call did to the kernel's copies."""
    if not isinstance(after, list) or len(after) != len(args):
        return
    for arg, changed in zip(args, after, strict=True):
        if changed is None:
            continue
        if isinstance(arg, dict) and isinstance(changed, dict):
            arg.clear()
            arg.update(changed)
        elif isinstance(arg, np.ndarray):
            if isinstance(changed, np.ndarray) and changed.shape == arg.shape:
                arg[...] = changed
            else:
                arg[...] = np.nan  # reshaped in place: certainly not the input any more


@dataclass
class CheckResult:
    """What the ledger keeps of one check run.

    ``lines`` are what the grade cell prints (no ids in them); ``mistakes`` are the catalogue
    ids any failed item named (sorted, each once) and ``items`` each item's label, outcome and
    ids (:meth:`bn_grader.report.Item.as_record`): the instructor's side reads mistakes from
    here, never from the printed lines.
    """

    check_id: str
    score: float
    points: float
    lines: list = field(default_factory=list)
    mistakes: list = field(default_factory=list)
    passed: int = 0
    total: int = 0
    items: list = field(default_factory=list)


def check_seed(secret, label, check_id):
    """The hidden seed of one check for one task: secret to students, stable across re-grades.

    Args:
        secret: the course's grading secret (bytes, kept outside every kernel).
        label: what identifies the task, e.g. ``"student/bn_numpy"``.
    """
    digest = hmac.new(secret, f"{label}|{check_id}".encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big")


def run_check(check_id, kernel, seed):
    """Run the check ``check_id`` against ``kernel``; never raises.

    Returns:
        :class:`CheckResult` (score 0 for an unknown id).
    """
    from . import checks_groupnorm, checks_keras, checks_numpy  # noqa: F401  (registers the checks)

    spec = CHECKS.get(check_id)
    if spec is None:
        return CheckResult(check_id, 0.0, 0.0, [f"[FAIL] unknown check {check_id!r}"])
    report = Report(check_id, spec.points)
    context = CheckContext(kernel, report, np.random.default_rng(seed))
    try:
        spec.run(context)
    except StudentError as error:
        report.failed(spec.description or check_id, str(error))
    except Exception as error:  # noqa: BLE001  a grader bug must not show a traceback either
        report.failed(
            spec.description or check_id,
            f"the grader could not finish this check ({type(error).__name__}); "
            "tell your instructor",
        )
    lines = [*report.lines, report.summary()]
    passed = sum(item.passed for item in report.items)
    return CheckResult(
        check_id,
        report.score(),
        spec.points,
        lines,
        report.mistakes,
        passed,
        len(report.items),
        [item.as_record() for item in report.items],
    )


TEST_SECRET = b"bn-kit unit tests"


def check(check_id, namespace, seed=None):
    """Grade ``namespace``'s functions in this process, through the real stub and protocol.

    For tests and tools: the kernel side (``bnkit.grading``) runs in a thread on one end of a
    socket pair. Prints the lines a grade cell would show; returns the score.
    """
    return check_result(check_id, namespace, seed).score


def check_result(check_id, namespace, seed=None):
    """:func:`check`, returning the whole :class:`CheckResult` (the ledger's record, with the
    mistake ids of each item) after the stub printed its lines."""
    from bnkit import grading

    grader_end, kernel_end = socket.socketpair()
    server = threading.Thread(target=grading._serve, args=(kernel_end, namespace), daemon=True)
    server.start()
    kernel = RemoteKernel(grader_end, time.monotonic() + 600)
    result = run_check(
        check_id, kernel, check_seed(TEST_SECRET, "test", check_id) if seed is None else seed
    )
    kernel.finish("done", result.lines)
    server.join(timeout=30)
    grader_end.close()
    kernel_end.close()
    return result
