"""The graded checks, by id. Each grade cell calls exactly one of them.

A check is a function ``run(ctx)`` that uses a :class:`~bn_grader.runner.CheckContext` to call
the student's functions and record items. Its ``points`` must equal the grade cell's points in
the notebook (tests/test_notebooks.py verifies this).
"""

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class CheckSpec:
    check_id: str
    notebook: str
    points: float
    run: Callable
    description: str


CHECKS: dict[str, CheckSpec] = {}


def register(check_id, notebook, points):
    """Decorator: register ``run(ctx)`` as the check ``check_id`` worth ``points``."""

    def decorate(run):
        if check_id in CHECKS:
            raise ValueError(f"check id {check_id!r} registered twice")
        doc = (run.__doc__ or "").strip().splitlines()
        CHECKS[check_id] = CheckSpec(check_id, notebook, float(points), run, doc[0] if doc else "")
        return run

    return decorate
