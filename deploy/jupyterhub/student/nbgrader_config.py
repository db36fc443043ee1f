"""nbgrader settings for a student's single-user server (fetch, validate, submit only).

JupyterHub puts this folder first on JUPYTER_CONFIG_PATH for every user not in
BNHUB_INSTRUCTORS. Submissions go through ``bnhub_exchange.PrivateSubmit``, which leaves them
readable by the student and the graders' group only.
"""

import os
import sys

c = get_config()  # noqa: F821  (injected by traitlets)

_here = os.path.dirname(os.path.abspath(__file__))
if _here not in sys.path:
    sys.path.insert(0, _here)

c.CourseDirectory.course_id = os.environ.get("BNHUB_COURSE_ID", "bn-course")
c.Exchange.root = os.environ.get("BNHUB_EXCHANGE_ROOT", "/srv/nbgrader/exchange")
c.ExchangeFactory.submit = "bnhub_exchange.PrivateSubmit"
# Validate runs the whole notebook; the Keras training cells take longer than nbgrader's
# default 30 s per cell on a small CPU (the same limit as grading, nbgrader_config.py).
c.Execute.timeout = 300
