"""nbgrader settings for the instructor's single-user server (formgrader on).

JupyterHub puts this folder first on JUPYTER_CONFIG_PATH for users in BNHUB_INSTRUCTORS. The
course's own nbgrader_config.py (course id, folders, gradebook, grading kernel, grader-only code
on PYTHONPATH) is loaded from the course directory; only the exchange is set here.
"""

import os

c = get_config()  # noqa: F821  (injected by traitlets)

_course_dir = os.environ.get("BNKIT_COURSE_DIR")
if _course_dir and os.path.exists(os.path.join(_course_dir, "nbgrader_config.py")):
    load_subconfig(os.path.join(_course_dir, "nbgrader_config.py"))  # noqa: F821

c.CourseDirectory.course_id = os.environ.get("BNHUB_COURSE_ID", "bn-course")
c.Exchange.root = os.environ.get("BNHUB_EXCHANGE_ROOT", "/srv/nbgrader/exchange")
# Grading kernels must not read the exchange (every student's submission lives there).
c.SandboxedExecute.hidden_paths = list(c.SandboxedExecute.get("hidden_paths", [])) + [
    c.Exchange.root
]
