"""Write feedback HTML for every autograded submission (hidden tests cleared by the config)."""

from .errors import KitError
from .nbgrader_cli import run_nbgrader
from .paths import ASSIGNMENT, autograded_dir, feedback_dir


def generate_feedback():
    """Run ``nbgrader generate_feedback`` for all autograded students; return the HTML files."""
    if not autograded_dir().is_dir():
        raise KitError(f"nothing autograded yet in {autograded_dir()}: run `make grade` first")
    run_nbgrader(["generate_feedback", ASSIGNMENT, "--force"])
    return sorted(feedback_dir().glob(f"*/{ASSIGNMENT}/*.html"))
