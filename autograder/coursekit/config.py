"""The kit's nbgrader_config.py, read in-process: nbgrader's settings and the kit's own.

nbgrader_config.py is the course's one configuration file. Besides nbgrader's classes it sets
the kit's own section, ``c.CourseKit`` (:class:`CourseKit`), which nbgrader ignores.
"""

import os

from traitlets import TraitError, Unicode
from traitlets.config import Configurable
from traitlets.config.loader import PyFileConfigLoader

from . import paths
from .errors import KitError

SCHEDULER_ENV = "BNKIT_SCHEDULER"


def load_nbgrader_config(root=None):
    """The traitlets Config defined by ``<root>/nbgrader_config.py`` (default: this kit's).

    Loading it also sets the grading environment variables the file sets.
    """
    return PyFileConfigLoader("nbgrader_config.py", path=str(root or paths.KIT_ROOT)).load_config()


class CourseKit(Configurable):
    """The kit's settings in nbgrader_config.py (``c.CourseKit.<name> = ...``)."""

    scheduler = Unicode(
        "",
        help="Dask scheduler `coursekit grade` sends its tasks to (tcp://HOST:PORT) when "
        "neither --scheduler nor BNKIT_SCHEDULER is given; empty: the local worker pool.",
    ).tag(config=True)


def course_kit_settings(config=None):
    """:class:`CourseKit` from ``config`` (default: the kit's nbgrader_config.py).

    Raises:
        KitError: a ``c.CourseKit`` value of the wrong type, saying which and what it must be.
    """
    config = load_nbgrader_config() if config is None else config
    try:
        return CourseKit(config=config)
    except TraitError as error:
        raise KitError(f"nbgrader_config.py, c.CourseKit: {error}") from None


def resolve_scheduler(flag=None, environ=None, config=None):
    """Which Dask scheduler to grade on: the flag, else $BNKIT_SCHEDULER, else the config.

    Args:
        flag: ``--scheduler``'s value (None when not given). environ: the environment
            (default ``os.environ``). config: a traitlets Config (default: the kit's
            nbgrader_config.py, read only when neither flag nor variable says).

    Returns:
        (address, where it came from) such as ``("tcp://h:8786", "--scheduler")``, or
        ``(None, None)``: grade in the local pool. Blank values count as not given.
    """
    environ = os.environ if environ is None else environ
    if flag is not None and flag.strip():
        return flag.strip(), "--scheduler"
    if environ.get(SCHEDULER_ENV, "").strip():
        return environ[SCHEDULER_ENV].strip(), SCHEDULER_ENV
    address = course_kit_settings(config).scheduler.strip()
    if address:
        return address, "c.CourseKit.scheduler in nbgrader_config.py"
    return None, None
