"""The grading kernel's sandbox: one function that builds the bubblewrap command line.

Read :func:`bwrap_command` as the list of the kernel's rights. The kernel sees the whole system
read-only, with the folders that hold grades, grader code, model answers and other students'
work replaced by empty in-memory folders; it writes only to its own task folder; it has no
network (a private network namespace with nothing but its own loopback), its own PID namespace
(nothing it starts outlives it) and no capabilities. Its environment is built from nothing: no
database URL, runtime path or grader path reaches it.
"""

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

INSTALL_HINT = (
    "bubblewrap (bwrap) is not installed: grading kernels run in its sandbox. Install it "
    "(Debian/Ubuntu: `sudo apt-get install bubblewrap`; Fedora: `sudo dnf install bubblewrap`) "
    "or pass --no-sandbox to grade without it (every notebook is then marked 'unsandboxed')."
)


def bwrap_path():
    """The bwrap executable, or None when bubblewrap is not installed."""
    return shutil.which("bwrap")


@dataclass(frozen=True)
class SandboxRights:
    """What a grading kernel may see and do.

    Attributes:
        task_dir: the only writable folder (the kernel's cwd, HOME and sockets live in it).
        hidden: folders replaced by empty tmpfs mounts (kit root, homes, /tmp, runtime).
        read_only: folders mounted back read-only after hiding (the interpreter, the venv,
            the course data), in this order.
        env: the kernel's whole environment.
    """

    task_dir: Path
    hidden: tuple = ()
    read_only: tuple = ()
    env: dict = field(default_factory=dict)


def bwrap_command(rights, argv, bwrap="bwrap"):
    """The argv that runs ``argv`` inside the sandbox described by ``rights``.

    Args:
        rights: a :class:`SandboxRights`.
        argv: the kernel's own command line (list of str).
        bwrap: path of the bwrap executable.

    Returns:
        list of str.
    """
    command = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    for folder in rights.hidden:
        command += ["--tmpfs", str(folder)]
    for folder in rights.read_only:
        command += ["--ro-bind", str(folder), str(folder)]
    command += ["--bind", str(rights.task_dir), str(rights.task_dir)]
    # Namespaces: user, IPC, PID, network, UTS and cgroup; --die-with-parent and the PID
    # namespace end every process of the task with the kernel's parent.
    command += ["--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    command += ["--clearenv"]
    for name, value in sorted(rights.env.items()):
        command += ["--setenv", name, str(value)]
    command += ["--chdir", str(rights.task_dir / "work"), "--"]
    return command + list(argv)


def _existing(paths):
    seen = []
    for path in paths:
        resolved = Path(path).resolve()
        if resolved.exists() and resolved not in seen:
            seen.append(resolved)
    return seen


def default_rights(task_dir, hide, extra_read_only=()):
    """The rights of a grading kernel whose only writable folder is ``task_dir``.

    Args:
        task_dir: the task's scratch folder (holds ``work/``, ``home/`` and ``ipc/``).
        hide: folders that must not be visible (the kit root, the runtime folder, ...).
        extra_read_only: folders under a hidden one that the kernel needs (e.g. the data).
    """
    task_dir = Path(task_dir).resolve()
    home = Path.home()
    hidden = _existing([*hide, home, "/home", "/root", "/tmp", "/var/tmp", "/run/user"])
    # The interpreter and the course environment may live under a hidden folder (a venv in the
    # kit, pyenv in a home): mount them back read-only, innermost last.
    needed = _existing(
        [sys.base_prefix, sys.prefix, Path(sys.executable).resolve().parent, *extra_read_only]
    )
    needed = [p for p in needed if any(p == h or h in p.parents for h in hidden)]
    needed.sort(key=lambda p: len(p.parts))
    path = os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"])
    env = {
        "HOME": task_dir / "home",
        "IPYTHONDIR": task_dir / "home" / ".ipython",
        "MPLCONFIGDIR": task_dir / "home" / ".matplotlib",
        "PATH": path,
        "LANG": "C.UTF-8",
        "PYTHONNOUSERSITE": "1",
        "MPLBACKEND": "Agg",
        # Scores come from the ledger, so stderr costs no points, but it fails nbgrader's
        # Validate and clutters feedback: keep TensorFlow and Python warnings quiet.
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "TF_ENABLE_ONEDNN_OPTS": "0",
        "PYTHONWARNINGS": "ignore",
        "BNKIT_CHECKER_SOCKET": task_dir / "ipc" / "checker.sock",
        # The kernel's real parent is outside its PID namespace. ipykernel reads "1" as "my
        # parent is init": it skips its parent poller (--die-with-parent ends the kernel with
        # the grader instead) and the "Ctrl-C will not work" banner it would otherwise print
        # on the grader's terminal for every notebook.
        "JPY_PARENT_PID": "1",
    }
    return SandboxRights(task_dir, tuple(hidden), tuple(needed), env)
