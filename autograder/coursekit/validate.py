"""Validate the source notebooks: every grade cell of the solutions must earn full marks.

``nbgrader validate`` exits 0 even when cells fail (FACTS), so this uses nbgrader's
``Validator`` class and turns its result into a list of failures.
"""

import os

from nbgrader.validator import Validator

from .config import load_nbgrader_config
from .paths import NOTEBOOKS, SOURCE_DIR, tool_env
from .preflight import require_course_kernel
from .quiet import stderr_to_log


def validate_solutions(notebooks=NOTEBOOKS, progress=None):
    """Execute each solution notebook and collect the grade cells that did not earn full marks.

    Returns:
        dict notebook name -> list of failure texts (empty lists when everything passed).
    """
    require_course_kernel()
    config = load_nbgrader_config()
    os.environ.update(tool_env())  # kernels inherit PATH/PYTHONPATH from this process
    validator = Validator(config=config)
    validator.ignore_checksums = True  # the source has hidden tests, so checksums differ
    failures = {}
    for name in notebooks:
        with stderr_to_log("validate"):
            result = validator.validate(str(SOURCE_DIR / name))
        failures[name] = [
            cell.get("raw_error") or cell["source"][:200] for cell in result.get("failed", [])
        ]
        if progress:
            progress(name)
    return failures
