"""Load the kit's nbgrader_config.py for in-process nbgrader classes (e.g. the Validator)."""

from traitlets.config.loader import PyFileConfigLoader

from .paths import KIT_ROOT


def load_nbgrader_config():
    """The traitlets Config defined by ``nbgrader_config.py`` (it also sets grading env vars)."""
    return PyFileConfigLoader("nbgrader_config.py", path=str(KIT_ROOT)).load_config()
