"""Fixtures for the JupyterHub tests: a real hub on 127.0.0.1 with real Unix accounts.

One hub runs per test session (the machine has two cores). The fixture

- creates an instructor, a graders' group and students (accounts marked "bnkit hub test",
  homes under a temporary folder), and runs deploy/jupyterhub/setup_course.sh;
- starts JupyterHub with deploy/jupyterhub/jupyterhub_config.py on three free ports it chose;
- stops the hub, the proxy, the single-user servers and every process of the test accounts by
  process id, then deletes the accounts, the group and the temporary folder.

Python here may live under a folder that other users cannot enter (pyenv in /root); the hub
then runs in a private mount namespace where that folder is replaced by an empty one that
shows only what the course environment needs. Nothing changes for the rest of the machine.

The tests skip, saying why, only when a component cannot be had: not root, no JupyterHub in
the venv, no configurable-http-proxy, no mount namespace (run install_test_deps.sh first).
"""

import json
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "jupyterhub"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
VENV = Path(sys.prefix)
COURSE_ID = "bn-course"
ASSIGNMENT = "batchnorm"
ACCOUNT_MARK = "bnkit hub test"
PASSWORD = secrets.token_urlsafe(12)
CHP = DEPLOY / "node" / "node_modules" / ".bin" / "configurable-http-proxy"
TIMINGS: dict[str, float] = {}


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "hub: real JupyterHub on 127.0.0.1 with Unix accounts (needs root)"
    )


def pytest_runtest_logreport(report):
    if "hub" in report.keywords:
        TIMINGS[report.nodeid] = TIMINGS.get(report.nodeid, 0.0) + report.duration


def pytest_sessionfinish(session):
    if TIMINGS:
        ARTIFACTS.mkdir(exist_ok=True)
        rounded = {name: round(seconds, 1) for name, seconds in TIMINGS.items()}
        (ARTIFACTS / "timings.json").write_text(json.dumps(rounded, indent=2) + "\n")


# --- helpers ---------------------------------------------------------------------------------


def _free_ports(count):
    """Ports the kernel hands out on 127.0.0.1, held together so they differ."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _run(argv, **kwargs):
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs)


def _blocked_dirs(paths):
    """{folder others cannot enter: names inside it that the given paths go through}."""
    blocked = {}
    for path in paths:
        path = Path(os.path.realpath(path))
        for parent, child in zip(path.parents[::-1], path.parts[1:], strict=True):
            if not os.stat(parent).st_mode & stat.S_IXOTH:
                blocked.setdefault(str(parent), set()).add(child)
    return blocked


def _namespace_script(blocked, stash):
    """Shell lines that, in a private mount namespace, open each blocked folder."""
    lines = ["set -e"]
    for index, (folder, children) in enumerate(sorted(blocked.items(), key=lambda kv: len(kv[0]))):
        for child in sorted(children):
            keep = f"{stash}/{index}/{child}"
            lines += [f"mkdir -p '{keep}'", f"mount --bind '{folder}/{child}' '{keep}'"]
        lines.append(f"mount -t tmpfs -o mode=755 bnhub-open '{folder}'")
        for child in sorted(children):
            keep = f"{stash}/{index}/{child}"
            lines += [f"mkdir -p '{folder}/{child}'", f"mount --bind '{keep}' '{folder}/{child}'"]
    lines.append('exec "$@"')
    return "\n".join(lines)


def _pids_of_uid(uid):
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("Uid:") and int(line.split()[1]) == uid:
                    pids.append(int(entry.name))
    return pids


def _alive(pid):
    """True while the process exists and is not a zombie waiting to be reaped."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def _stop_pid(pid, grace=10.0):
    """SIGTERM one process, then SIGKILL it if it is still there after `grace` seconds."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.2)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _remove_stale_accounts():
    """Accounts left by an earlier run that was killed (marked with ACCOUNT_MARK)."""
    for line in Path("/etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if len(fields) > 4 and fields[4] == ACCOUNT_MARK and fields[0].startswith("bnh"):
            if not _pids_of_uid(int(fields[2])):
                subprocess.run(["userdel", fields[0]], capture_output=True)
    for line in Path("/etc/group").read_text().splitlines():
        name = line.split(":")[0]
        if name.startswith("bnhgr") and not line.split(":")[3]:
            subprocess.run(["groupdel", name], capture_output=True)


class Hub:
    """A running hub and the accounts made for it."""

    def __init__(self, base, ports, tag):
        import requests

        self.requests = requests
        self.base = base
        self.url = f"http://127.0.0.1:{ports[0]}"
        self.ports = ports
        self.token = secrets.token_hex(32)
        self.instructor = f"bnhins{tag}"
        self.students = [f"bnhst{letter}{tag}" for letter in "abc"]
        self.graders = f"bnhgr{tag}"
        self.exchange = base / "exchange"
        self.course_dir = base / "home" / self.instructor / COURSE_ID
        self.state = base / "state"
        self.process = None
        self.server_pids = {}
        self._user_tokens = {}

    # accounts ---------------------------------------------------------------------------
    def home(self, name):
        return self.base / "home" / name

    def create_accounts(self):
        (self.base / "home").mkdir(mode=0o755)
        for name in [self.instructor, *self.students]:
            _run(
                [
                    "useradd",
                    "--create-home",
                    "--home-dir",
                    str(self.home(name)),
                    "--shell",
                    "/bin/bash",
                    "--comment",
                    ACCOUNT_MARK,
                    "--user-group",
                    name,
                ]
            )
            self.home(name).chmod(0o700)

    def remove_accounts(self):
        for name in [self.instructor, *self.students]:
            try:
                uid = int(_run(["id", "-u", name]).stdout)
            except subprocess.CalledProcessError:
                continue
            for pid in _pids_of_uid(uid):
                _stop_pid(pid, grace=5)
            subprocess.run(["userdel", name], capture_output=True)
        subprocess.run(["groupdel", self.graders], capture_output=True)

    # hub process ------------------------------------------------------------------------
    def start(self):
        self.state.mkdir(mode=0o700)
        env = {
            "PATH": f"{VENV / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.state),
            "LANG": "C.UTF-8",
            "BNHUB_IP": "127.0.0.1",
            "BNHUB_PORT": str(self.ports[0]),
            "BNHUB_HUB_PORT": str(self.ports[1]),
            "BNHUB_PROXY_API_PORT": str(self.ports[2]),
            "BNHUB_STATE_DIR": str(self.state),
            "BNHUB_COURSE_ENV": str(VENV),
            "BNHUB_COURSE_ID": COURSE_ID,
            "BNHUB_EXCHANGE_ROOT": str(self.exchange),
            "BNHUB_COURSE_DIR": str(self.course_dir),
            "BNHUB_INSTRUCTORS": self.instructor,
            "BNHUB_STUDENTS": ",".join(self.students),
            "BNHUB_AUTHENTICATOR": "shared-password",
            "BNHUB_SHARED_PASSWORD": PASSWORD,
            "BNHUB_PROXY_COMMAND": str(CHP),
            "BNHUB_TEST_TOKEN": self.token,
        }
        argv = [
            str(VENV / "bin" / "jupyterhub"),
            "-f",
            str(Path(__file__).parent / "hub_test_config.py"),
        ]
        blocked = _blocked_dirs([VENV / "bin" / "python", VENV, DEPLOY])
        if blocked:
            script = _namespace_script(blocked, self.state / "mounts")
            argv = [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
                "sh",
                *argv,
            ]
        self.log = open(self.state / "hub.log", "w")
        self.process = subprocess.Popen(
            argv,
            env=env,
            cwd=self.state,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"hub exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if self.requests.get(f"{self.url}/hub/api/", timeout=2).status_code == 200:
                    return
            except self.requests.ConnectionError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"hub not answering on {self.url} after 90 s:\n{self.log_tail()}")

    def log_tail(self, lines=40):
        try:
            return "\n".join((self.state / "hub.log").read_text().splitlines()[-lines:])
        except OSError:
            return "(no hub log)"

    def stop(self):
        if self.process is None:
            return
        for name in list(self.server_pids):
            try:
                self.api("DELETE", f"/users/{name}/server", timeout=30)
            except Exception:
                pass
        proxy_pid = None
        try:
            proxy_pid = int((self.state / "jupyterhub-proxy.pid").read_text())
        except (OSError, ValueError):
            pass
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        for pid in [*self.server_pids.values(), proxy_pid]:
            if pid:
                _stop_pid(pid, grace=5)
        self.log.close()
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(self.state / "hub.log", ARTIFACTS / "hub.log")

    # hub API ----------------------------------------------------------------------------
    def api(self, method, path, **kwargs):
        kwargs.setdefault("timeout", 60)
        response = self.requests.request(
            method,
            f"{self.url}/hub/api{path}",
            headers={"Authorization": f"token {self.token}"},
            **kwargs,
        )
        response.raise_for_status()
        return response.json() if response.content else None

    def user_token(self, name):
        if name not in self._user_tokens:
            body = {"note": "bnhub test", "expires_in": 3600}
            self._user_tokens[name] = self.api("POST", f"/users/{name}/tokens", json=body)["token"]
        return self._user_tokens[name]

    def wait_ready(self, name, timeout=180):
        """Wait for the user's default server; remember its pid for the teardown."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            server = self.api("GET", f"/users/{name}").get("servers", {}).get("")
            if server and server.get("ready"):
                self.server_pids[name] = (server.get("state") or {}).get("pid")
                return server
            time.sleep(1)
        raise RuntimeError(f"server of {name} not ready after {timeout} s:\n{self.log_tail()}")

    def stop_server(self, name, timeout=60):
        """Stop the user's default server, if running, and wait until the hub says it is gone."""
        if "" not in self.api("GET", f"/users/{name}").get("servers", {}):
            return
        self.api("DELETE", f"/users/{name}/server", timeout=timeout)
        deadline = time.monotonic() + timeout
        while "" in self.api("GET", f"/users/{name}").get("servers", {}):
            if time.monotonic() > deadline:
                raise RuntimeError(f"server of {name} still running after {timeout} s")
            time.sleep(0.5)

    def start_server(self, name):
        self.server_pids.setdefault(name, None)
        self.api("POST", f"/users/{name}/server", timeout=120)
        return self.wait_ready(name)

    def user_request(self, as_user, method, path, owner=None, **kwargs):
        """HTTP request to `owner`'s server (default: `as_user`'s) with `as_user`'s token."""
        kwargs.setdefault("timeout", 120)
        kwargs.setdefault("allow_redirects", False)
        return self.requests.request(
            method,
            f"{self.url}/user/{owner or as_user}/{path.lstrip('/')}",
            headers={"Authorization": f"token {self.user_token(as_user)}"},
            **kwargs,
        )

    def run_as(self, name, argv, cwd=None, timeout=120):
        """Run a command as `name`, in the hub's mount namespace, with a student's config."""
        env = [
            f"HOME={self.home(name)}",
            f"USER={name}",
            f"PATH={VENV / 'bin'}:/usr/bin:/bin",
            f"JUPYTER_CONFIG_PATH={DEPLOY / 'student'}",
            f"BNHUB_COURSE_ID={COURSE_ID}",
            f"BNHUB_EXCHANGE_ROOT={self.exchange}",
        ]
        workdir = cwd or self.home(name)
        command = [
            "nsenter",
            f"--target={self.process.pid}",
            "--mount",
            f"--wdns={workdir}",
            "--",
            "runuser",
            "-u",
            name,
            "--",
            "env",
            "-i",
            *env,
            *argv,
        ]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def _missing_components():
    if os.geteuid() != 0:
        return "the hub test needs root (it creates Unix accounts and runs JupyterHub)"
    try:
        import jupyterhub  # noqa: F401
        import requests  # noqa: F401
    except ImportError:
        return "jupyterhub is not installed: run deploy/jupyterhub/install_test_deps.sh"
    if not CHP.exists():
        return f"no configurable-http-proxy at {CHP}: run deploy/jupyterhub/install_test_deps.sh"
    for tool in ["useradd", "userdel", "runuser", "unshare", "nsenter"]:
        if not shutil.which(tool):
            return f"{tool} is not installed"
    if _blocked_dirs([VENV / "bin" / "python", VENV, DEPLOY]):
        probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True)
        if probe.returncode != 0:
            return "Python lies where other users cannot read it and mount namespaces are refused"
    if not (REPO / "assignments" / ASSIGNMENT).is_dir():
        return f"assignments/{ASSIGNMENT} does not exist yet"
    return None


@pytest.fixture(scope="session")
def hub():
    """A running course hub with the accounts made and the course set up (not yet released)."""
    reason = _missing_components()
    if reason:
        pytest.skip(reason)
    _remove_stale_accounts()
    base = Path(tempfile.mkdtemp(prefix="bnhub-"))
    base.chmod(0o755)
    hub = Hub(base, _free_ports(3), secrets.token_hex(2))
    try:
        hub.create_accounts()
        _run(
            [
                str(DEPLOY / "setup_course.sh"),
                "--instructor",
                hub.instructor,
                "--graders",
                hub.graders,
                "--exchange-root",
                str(hub.exchange),
                "--course-id",
                COURSE_ID,
                "--course-dir",
                str(hub.course_dir),
                "--kit",
                str(REPO),
                "--course-env",
                str(VENV),
            ]
        )
        hub.start()
        yield hub
    finally:
        try:
            hub.stop()
        finally:
            hub.remove_accounts()
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def released(hub):
    """The instructor's server is up and has generated and released the assignment."""
    hub.start_server(hub.instructor)
    for step in ["assign", "release"]:
        response = hub.user_request(
            hub.instructor, "POST", f"formgrader/api/assignment/{ASSIGNMENT}/{step}"
        )
        assert response.status_code == 200, (step, response.status_code, response.text[:2000])
        result = response.json()
        assert result.get("success"), (step, result.get("log"), result.get("error"))
    outbound = hub.exchange / COURSE_ID / "outbound" / ASSIGNMENT
    assert (outbound / "bn_numpy.ipynb").is_file(), f"nothing released in {outbound}"
    return hub
