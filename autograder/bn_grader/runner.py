"""Runs one check in a grading kernel and shields the student from grader internals.

Everything a student's code could do wrong (raise, print to stderr, warn, return junk) is
caught here and turned into ``[FAIL]`` lines; nothing from this package ever raises into the
notebook, so no grader traceback (which would print hidden lines) reaches feedback.
"""

import contextlib
import sys
import warnings

import numpy as np

from .registry import CHECKS
from .report import Report


class StudentError(Exception):
    """The student's function failed; the message is safe to show."""


class CheckContext:
    """What a check sees: the notebook's namespace, a report and safe calls into it."""

    def __init__(self, namespace, report, rng):
        self.namespace = namespace
        self.report = report
        self.rng = rng

    def function(self, name):
        """The student's function ``name``, or raise :class:`StudentError` saying why not."""
        candidate = self.namespace.get(name)
        if candidate is None:
            raise StudentError(
                f"{name} is not defined: run the cell that defines it, keep its name"
            )
        if not callable(candidate):
            raise StudentError(f"{name} is a {type(candidate).__name__}, not a function")
        return candidate

    def call(self, function, *args):
        """Call a student function; its stderr output goes to stdout, warnings are muted.

        Raises:
            StudentError: with the exception's type and message (no traceback).
        """
        name = getattr(function, "__name__", "function")
        with contextlib.redirect_stderr(sys.stdout), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                with np.errstate(all="ignore"):
                    return function(*args)
            except NotImplementedError:
                raise StudentError(
                    f"{name} is not implemented yet (it raised NotImplementedError)"
                ) from None
            except Exception as error:  # noqa: BLE001  any student failure is reported, not raised
                message = str(error).splitlines()[0][:200] if str(error) else ""
                raise StudentError(f"{name} raised {type(error).__name__}: {message}") from None


def check(check_id, namespace=None):
    """Grade one property of the notebook; print ``[PASS]``/``[FAIL]`` lines; return points.

    Args:
        check_id: a key of :data:`bn_grader.registry.CHECKS`, e.g. ``"bn_forward_train"``.
        namespace: where the student's functions live; defaults to the caller's globals
            (the notebook's user namespace when called from a grade cell).

    Returns:
        float, the points earned (0 <= points <= the cell's maximum). Never raises.
    """
    if namespace is None:
        namespace = sys._getframe(1).f_globals
    guard = sys.modules.get("bn_grader.guard")  # present only in grading kernels
    tampered = guard.restore_grader() if guard else []
    with guard.pristine_numpy() if guard else contextlib.nullcontext([]) as replaced:
        score = _run_check(check_id, namespace)
    if tampered:
        shown = ", ".join(tampered[:5]) + (" ..." if len(tampered) > 5 else "")
        print(f"[FLAG] the notebook changed the grader ({shown}); the grader's own code ran")
    if replaced:
        shown = ", ".join(replaced[:5]) + (" ..." if len(replaced) > 5 else "")
        print(f"[FLAG] the notebook replaced {shown}; the grader used the original NumPy")
    signature = guard.sign(check_id, score) if guard else "unsigned"
    print(f"[grader] {check_id} {score:.4f} {signature}")
    return score


def _run_check(check_id, namespace):
    from . import checks_keras, checks_numpy  # noqa: F401  (registers the checks)

    spec = CHECKS.get(check_id)
    if spec is None:
        print(f"[FAIL] grader: unknown check {check_id!r}; tell your instructor")
        return 0.0
    report = Report(check_id, spec.points)
    context = CheckContext(namespace, report, np.random.default_rng(_seed(check_id)))
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
    print(report.summary())
    return report.score()


def _seed(check_id):
    """A seed per check, fixed so grading is reproducible, unknown to students."""
    return sum(ord(ch) * (i + 1) for i, ch in enumerate(check_id)) + 20261122
