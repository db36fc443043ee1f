"""Run nbgrader commands as subprocesses with the kit's configuration and environment.

A subprocess (rather than nbgrader's in-process API) keeps a crashing or memory-hungry grading
run away from the instructor's command, and lets several run at once.
"""

import re
import resource
import subprocess
import sys

from .errors import KitError
from .paths import KIT_ROOT, tool_env

EXCEPTION_LINE = re.compile(r"^\s*[\w.]*(Error|Exception): ")


def _memory_limiter(limit_bytes):
    """A ``preexec_fn`` capping the address space of nbgrader and the kernels it starts."""

    def apply():
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    return apply


def run_nbgrader(
    args, env_extra=None, log_path=None, check=True, memory_limit_bytes=None, timeout=None
):
    """Run ``nbgrader <args>`` in the kit root.

    Args:
        args: list of str, e.g. ``["generate_assignment", "batchnorm", "--force"]``.
        env_extra: environment variables to add (e.g. a worker's own ``BNKIT_DB_URL``).
        log_path: where to write nbgrader's combined output; kept for the instructor.
        check: raise :class:`KitError` on a non-zero exit.
        memory_limit_bytes: address-space limit inherited by the grading kernels, so that a
            memory bomb ends in a MemoryError instead of taking the machine down.
        timeout: seconds after which the whole command is killed (exit code -9).

    Returns:
        (exit code, combined output text).
    """
    command = [sys.executable, "-m", "nbgrader", *args]
    try:
        result = subprocess.run(
            command,
            cwd=KIT_ROOT,
            env=tool_env(env_extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            preexec_fn=_memory_limiter(memory_limit_bytes) if memory_limit_bytes else None,
            timeout=timeout,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired as expired:
        output = expired.stdout or ""
        output = output.decode(errors="replace") if isinstance(output, bytes) else output
        result = subprocess.CompletedProcess(
            command, -9, output + "\nTimeout: the whole command was killed"
        )
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(result.stdout)
    if check and result.returncode != 0:
        lines = result.stdout.splitlines()
        # The exception line of nbgrader's traceback says what went wrong; its final "ERROR"
        # line only says "see the above traceback".
        causes = [line.strip() for line in lines if EXCEPTION_LINE.match(line)]
        hint = causes[-1] if causes else (lines[-1].strip() if lines else "no output")
        raise KitError(f"nbgrader {args[0]} failed (exit {result.returncode}): {hint}")
    return result.returncode, result.stdout
