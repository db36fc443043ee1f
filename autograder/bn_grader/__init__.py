"""Grading side of the BatchNorm kit: reference implementation, hidden checks, mistakes,
and the executor that runs them outside the student's kernel.

Never released to students and never visible inside a grading kernel. ``check(check_id,
namespace)`` grades a namespace in this process through the real protocol (tests, tools).
"""

import sys
from pathlib import Path

# The message format (bnkit.wire) is shared with the kernel's stub: the grader imports the
# kit's own copy from the source folder, never a student's.
_SOURCE = str(Path(__file__).resolve().parents[2] / "solutions" / "batchnorm")
if _SOURCE not in sys.path:
    sys.path.insert(0, _SOURCE)

from .runner import check  # noqa: E402

__all__ = ["check"]
