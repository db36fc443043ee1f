"""Run one-off nbgrader commands (generate_assignment, generate_feedback) as subprocesses.

Grading itself goes through :mod:`coursekit.worker`; the commands here run once per pipeline
step, so a fresh process with the kit's environment is the simple, robust choice.
"""

import re
import subprocess
import sys

from .errors import KitError
from .paths import KIT_ROOT, tool_env

EXCEPTION_LINE = re.compile(r"^\s*[\w.]*(Error|Exception): ")


def run_nbgrader(args, env_extra=None, check=True):
    """Run ``nbgrader <args>`` in the kit root.

    Args:
        args: list of str, e.g. ``["generate_assignment", "batchnorm", "--force"]``.
        env_extra: environment variables to add (e.g. a private ``BNKIT_DB_URL``).
        check: raise :class:`KitError` on a non-zero exit, naming nbgrader's exception.

    Returns:
        (exit code, combined output text).
    """
    result = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args],
        cwd=KIT_ROOT,
        env=tool_env(env_extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    if check and result.returncode != 0:
        lines = result.stdout.splitlines()
        # The exception line of nbgrader's traceback says what went wrong; its final "ERROR"
        # line only says "see the above traceback".
        causes = [line.strip() for line in lines if EXCEPTION_LINE.match(line)]
        hint = causes[-1] if causes else (lines[-1].strip() if lines else "no output")
        raise KitError(f"nbgrader {args[0]} failed (exit {result.returncode}): {hint}")
    return result.returncode, result.stdout
