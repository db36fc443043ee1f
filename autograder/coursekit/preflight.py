"""Checks run before a command starts work, each failing with a one-line fix."""

import tempfile

from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

from .errors import KitError
from .paths import runtime_dir

COURSE_KERNEL = "bn-course"


def require_course_kernel():
    """Grading executes every notebook with the course kernel: it must be installed."""
    try:
        KernelSpecManager().get_kernel_spec(COURSE_KERNEL)
    except NoSuchKernel:
        raise KitError(
            f"the Jupyter kernel {COURSE_KERNEL!r} is not installed: run `make venv`, or "
            f"`python -m ipykernel install --sys-prefix --name {COURSE_KERNEL}` in the course environment"
        ) from None


def require_writable_runtime():
    """nbgrader writes submissions, grades and feedback here; fail early if it cannot."""
    folder = runtime_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise KitError(
            f"cannot write to the runtime folder {folder} ({error.strerror}): fix its permissions "
            "or point BNKIT_RUNTIME at a writable folder"
        ) from None
