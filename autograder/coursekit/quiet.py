"""Send the C-level stderr of grading kernels to a log file instead of the instructor's terminal.

Kernels inherit file descriptor 2 from the process that starts them; TensorFlow's start-up
lines and Jupyter's connection warnings written there would bury the progress bar. They are
kept in ``<runtime>/logs/`` for when a kernel misbehaves.
"""

import contextlib
import os

from .paths import runtime_dir


def stderr_log_path(name):
    folder = runtime_dir() / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}.stderr.log"


def redirect_stderr_to_log(name):
    """Point this process's file descriptor 2 at a log file for good (worker processes)."""
    log = open(stderr_log_path(name), "a")  # noqa: SIM115  kept open for the process's life
    os.dup2(log.fileno(), 2)


@contextlib.contextmanager
def stderr_to_log(name):
    """Within the block, file descriptor 2 writes to a log file; restored afterwards."""
    saved = os.dup(2)
    try:
        with open(stderr_log_path(name), "a") as log:
            os.dup2(log.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
