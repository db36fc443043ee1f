"""JupyterHub configuration for a BatchNorm course hub on one machine.

Every user is a real Unix account; JupyterHub starts each single-user server as that account
(LocalProcessSpawner), so Unix permissions are what keep students out of the instructor's
course directory, the gradebook, the grader-only code and each other's submissions.

Roles: users named in ``BNHUB_INSTRUCTORS`` get the instructor's Jupyter config
(``instructor/``: formgrader on, the course directory of ``BNHUB_COURSE_DIR``); everyone else
gets the student config (``student/``: formgrader, course list and assignment creation off).
The per-role folder is put first on ``JUPYTER_CONFIG_PATH`` and the user's own
``~/.jupyter`` is ignored (``disable_user_config``), so a student cannot switch the formgrader
back on.

Settings come from environment variables so that one file serves production and the loopback
test (``tests/hub``); see docs/jupyterhub.md.

BNHUB_IP, BNHUB_PORT         public address of the proxy (default 127.0.0.1:8000; put TLS
                             in front, e.g. nginx, before opening it to a network)
BNHUB_HUB_PORT               hub's internal API port on 127.0.0.1 (default 8081)
BNHUB_PROXY_API_PORT         proxy's REST API port on 127.0.0.1 (default 8001)
BNHUB_STATE_DIR              hub database, cookie secret, proxy pid file (/srv/jupyterhub)
BNHUB_COURSE_ENV             Python environment with the course requirements and the
                             "bn-course" kernel (default: the one running the hub)
BNHUB_COURSE_ID              nbgrader course id (default "bn-course")
BNHUB_EXCHANGE_ROOT          nbgrader exchange (default /srv/nbgrader/exchange)
BNHUB_COURSE_DIR             instructor's course directory; "~" is the instructor's home
                             (default ~/bn-course)
BNHUB_INSTRUCTORS            comma-separated user names with the formgrader
BNHUB_STUDENTS               comma-separated user names allowed to log in as students
BNHUB_AUTHENTICATOR          "pam" (default; the Unix password) or "shared-password" (tests
                             only; the password is BNHUB_SHARED_PASSWORD)
BNHUB_PROXY_COMMAND          configurable-http-proxy executable (default: the project-local
                             install from install_test_deps.sh, else the one on PATH)
"""

import os
import shutil
import sys
from pathlib import Path

c = get_config()  # noqa: F821  (injected by traitlets when JupyterHub loads this file)

HERE = Path(__file__).resolve().parent


def _env_list(name):
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


IP = os.environ.get("BNHUB_IP", "127.0.0.1")
PORT = int(os.environ.get("BNHUB_PORT", "8000"))
HUB_PORT = int(os.environ.get("BNHUB_HUB_PORT", "8081"))
PROXY_API_PORT = int(os.environ.get("BNHUB_PROXY_API_PORT", "8001"))
STATE_DIR = Path(os.environ.get("BNHUB_STATE_DIR", "/srv/jupyterhub"))
COURSE_ENV = Path(os.environ.get("BNHUB_COURSE_ENV", sys.prefix))
COURSE_ID = os.environ.get("BNHUB_COURSE_ID", "bn-course")
EXCHANGE_ROOT = os.environ.get("BNHUB_EXCHANGE_ROOT", "/srv/nbgrader/exchange")
COURSE_DIR = os.environ.get("BNHUB_COURSE_DIR", "~/bn-course")
INSTRUCTORS = _env_list("BNHUB_INSTRUCTORS")
STUDENTS = _env_list("BNHUB_STUDENTS")

# --- network: only the proxy listens publicly; hub and proxy API stay on loopback ---------
c.JupyterHub.bind_url = f"http://{IP}:{PORT}"
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{HUB_PORT}"
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{PROXY_API_PORT}"
_local_proxy = HERE / "node" / "node_modules" / ".bin" / "configurable-http-proxy"
_proxy = os.environ.get("BNHUB_PROXY_COMMAND") or (
    str(_local_proxy) if _local_proxy.exists() else shutil.which("configurable-http-proxy")
)
if _proxy:
    c.ConfigurableHTTPProxy.command = [_proxy]
c.ConfigurableHTTPProxy.pid_file = str(STATE_DIR / "jupyterhub-proxy.pid")

# --- state -----------------------------------------------------------------------------
c.JupyterHub.db_url = f"sqlite:///{STATE_DIR / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(STATE_DIR / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(STATE_DIR / "jupyterhub.pid")
# Stop the single-user servers and the proxy when the hub stops.
c.JupyterHub.cleanup_servers = True
c.JupyterHub.cleanup_proxy = True

# --- who may log in ----------------------------------------------------------------------
authenticator = os.environ.get("BNHUB_AUTHENTICATOR", "pam")
if authenticator == "shared-password":
    # For the loopback test only: one password for every allowed user.
    c.JupyterHub.authenticator_class = "shared-password"
    c.SharedPasswordAuthenticator.user_password = os.environ["BNHUB_SHARED_PASSWORD"]
else:
    c.JupyterHub.authenticator_class = "pam"
c.Authenticator.allowed_users = set(INSTRUCTORS) | set(STUDENTS)
c.JupyterHub.load_groups = {
    "instructors": {"users": INSTRUCTORS},
    "students": {"users": STUDENTS},
}

# --- single-user servers -------------------------------------------------------------------
c.JupyterHub.spawner_class = "localprocess"
c.Spawner.cmd = [str(COURSE_ENV / "bin" / "jupyterhub-singleuser")]
c.Spawner.ip = "127.0.0.1"
c.Spawner.default_url = "/lab"
# The user's ~/.jupyter (and other config under $HOME) is ignored: server extensions and
# nbgrader settings come only from the course environment and the role folder below.
c.Spawner.disable_user_config = True
# Nothing from the hub's own environment leaks into users' servers but the locale.
c.Spawner.env_keep = ["LANG", "LC_ALL"]
c.Spawner.http_timeout = 120
c.Spawner.start_timeout = 180


def _role_environment(spawner):
    """Give each server the Jupyter config of its user's role."""
    name = spawner.user.name
    role = "instructor" if name in INSTRUCTORS else "student"
    environment = {
        "PATH": f"{COURSE_ENV / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        # First on the search path, so it wins over the course environment's own config.
        "JUPYTER_CONFIG_PATH": str(HERE / role),
        "BNHUB_COURSE_ID": COURSE_ID,
        "BNHUB_EXCHANGE_ROOT": EXCHANGE_ROOT,
    }
    if role == "instructor":
        home = Path(os.path.expanduser(f"~{name}"))
        course_dir = (
            COURSE_DIR.replace("~", str(home), 1) if COURSE_DIR.startswith("~") else COURSE_DIR
        )
        environment["BNKIT_COURSE_DIR"] = course_dir
    # A new dict: the configured one is shared by every spawner.
    spawner.environment = {**spawner.environment, **environment}


c.Spawner.pre_spawn_hook = _role_environment
