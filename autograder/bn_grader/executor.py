"""nbgrader's Execute step with the kernel in a sandbox and the hidden checks run here.

:class:`SandboxedExecute` replaces nbgrader's ``Execute`` in the autograde pipeline
(nbgrader_config.py), so every route that autogrades (``coursekit grade``, a bare
``nbgrader autograde``, the formgrader's Autograde button) runs it:

1. the notebook's kernel starts inside bubblewrap (:mod:`bn_grader.sandbox`) with a fresh task
   folder as its only writable place; it talks to this process over ipc sockets in that folder;
2. this process listens on one more socket there, the checker socket. A grade cell's hidden
   part (``bnkit.grading.check("<id>")``) connects and asks for its check;
3. the request counts only while the grade cell whose source (from the trusted source
   notebook) names that check id is executing, and only once per cell. The check then runs
   here (:func:`bn_grader.runner.run_check`), drawing hidden inputs from a secret seed, and its
   result goes into the ledger; the kernel gets the feedback lines to print. Every other request
   is refused and flagged;
4. the ledger travels in nbgrader's ``resources`` to :class:`bn_grader.ledger.LedgerScores`,
   which writes the auto scores into the gradebook from it alone.
"""

import re
import secrets
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat
from jupyter_client.manager import AsyncKernelManager
from nbgrader.preprocessors import Execute
from traitlets import Any, Bool, Integer, List, Unicode

from bnkit import wire

from .channel import RemoteKernel
from .runner import check_seed, run_check
from .sandbox import INSTALL_HINT, bwrap_command, bwrap_path, default_rights

CHECK_CALL = re.compile(r"""check\(\s*["']([A-Za-z0-9_]+)["']\s*\)""")
RESOURCE_KEY = "bnkit"
REQUEST_TIMEOUT = 10  # seconds for a connected kernel to say which check it wants


def expected_checks(source_notebook):
    """{grade_id: check id} of the grade cells of a trusted source notebook."""
    notebook = nbformat.read(str(source_notebook), as_version=4)
    found = {}
    for cell in notebook.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("grade"):
            match = CHECK_CALL.search(cell.source)
            found[meta["grade_id"]] = match.group(1) if match else None
    return found


def load_secret(path):
    """The course's grading secret (32 random bytes), created on first use, mode 600."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(secrets.token_bytes(32))
        path.chmod(0o600)
    return path.read_bytes()


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel command runs inside bubblewrap (when ``rights`` is set)."""

    rights = Any(None, allow_none=True)

    def format_kernel_cmd(self, extra_arguments=None):
        command = super().format_kernel_cmd(extra_arguments)
        if self.rights is None:
            return command
        return bwrap_command(self.rights, command, bwrap_path() or "bwrap")


@dataclass
class _RunningCell:
    index: int
    grade_id: str | None
    check_id: str | None
    closed: threading.Event = field(default_factory=threading.Event)
    asked: bool = False


class SandboxedExecute(Execute):
    """Execute a notebook in a sandboxed kernel, answering its grade cells' check requests."""

    sandbox = Bool(True, help="Run kernels in bubblewrap; False grades unsandboxed.").tag(
        config=True
    )
    hidden_paths = List(Unicode(), help="Folders the kernel must not see.").tag(config=True)
    source_notebooks = Unicode(
        help="Folder of the trusted source notebooks, which say each grade cell's check id."
    ).tag(config=True)
    secret_file = Unicode(help="File holding the course's grading secret.").tag(config=True)
    check_timeout = Integer(
        0, help="Seconds one check may take in all; 0 means the cell timeout."
    ).tag(config=True)
    companion_notebooks = List(
        Unicode(),
        ["bn_numpy.ipynb"],
        help="The student's submitted notebooks that the graded one may read (read-only copy).",
    ).tag(config=True)

    def preprocess(self, nb, resources=None, km=None):
        if self.sandbox and not bwrap_path():
            raise RuntimeError(INSTALL_HINT)
        nbgrader = resources.get("nbgrader", {}) if resources else {}
        notebook_id = nbgrader.get("notebook", "")
        label = f"{nbgrader.get('student', '')}/{notebook_id}"
        self._expected = expected_checks(Path(self.source_notebooks) / f"{notebook_id}.ipynb")
        self._secret = load_secret(self.secret_file)
        self._label = label
        self._ledger, self._flags = {}, []
        self._lock = threading.Lock()
        self._current = None
        self._threads = []
        self._task_dir = Path(tempfile.mkdtemp(prefix="bnkit-task-"))
        try:
            self._prepare_task_folder(resources)
            self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._listener.bind(str(self._task_dir / "ipc" / "checker.sock"))
            self._listener.listen(8)
            accept = threading.Thread(target=self._accept_loop, daemon=True)
            accept.start()
            try:
                nb, resources = super().preprocess(nb, resources, km)
            finally:
                self._listener.close()
                for thread in self._threads:
                    thread.join(timeout=5)
        finally:
            shutil.rmtree(self._task_dir, ignore_errors=True)
        resources[RESOURCE_KEY] = {
            "ledger": {grade_id: asdict(result) for grade_id, result in self._ledger.items()},
            "expected": self._expected,
            "flags": list(self._flags),
            "sandboxed": bool(self.sandbox),
        }
        return nb, resources

    # ---------------------------------------------------------------- the kernel's world
    def _prepare_task_folder(self, resources):
        """work/ (a copy of the notebook's folder), home/ and ipc/, all owned by the task."""
        source = Path(resources.get("metadata", {}).get("path") or ".")
        work = self._task_dir / "work"
        shutil.copytree(source, work, symlinks=False, ignore=shutil.ignore_patterns("*.db"))
        self._copy_companions(resources, work)
        (self._task_dir / "home").mkdir()
        (self._task_dir / "ipc").mkdir()
        rights = default_rights(self._task_dir, hide=self.hidden_paths)
        self._rights = rights if self.sandbox else None
        self._kernel_env = {key: str(value) for key, value in rights.env.items()}

    def _copy_companions(self, resources, work):
        """The student's other notebooks the graded one reads (bn_keras reads bn_numpy).

        nbgrader copies no notebook but the graded one into the autograded folder, so they
        come from the student's submitted folder, read-only.
        """
        nbgrader = resources.get("nbgrader", {})
        if not nbgrader.get("student") or not nbgrader.get("assignment"):
            return
        from nbgrader.coursedir import CourseDirectory

        coursedir = CourseDirectory(config=self.config)
        submitted = Path(
            coursedir.format_path(
                coursedir.submitted_directory, nbgrader["student"], nbgrader["assignment"]
            )
        )
        for name in self.companion_notebooks:
            if name != f"{nbgrader.get('notebook')}.ipynb" and (submitted / name).is_file():
                shutil.copyfile(submitted / name, work / name)
                (work / name).chmod(0o444)

    def create_kernel_manager(self):
        ipc = self._task_dir / "ipc"
        self.km = SandboxedKernelManager(
            kernel_name=self.kernel_name,
            config=self.config,
            transport="ipc",
            ip=str(ipc / "kernel"),
            connection_file=str(ipc / "kernel.json"),
            rights=self._rights,
        )
        # jupyter_client would interrupt a timed-out cell with SIGINT to its child, which is
        # bwrap, not the kernel; an interrupt_request message reaches the kernel itself.
        self.km.kernel_spec.interrupt_mode = "message"
        return self.km

    def start_new_kernel(self, **kwargs):
        # nbconvert's preprocess calls this synchronous wrapper (nbclient binds it to the base
        # class's coroutine), so the kernel's environment and folder are set here. In the
        # sandbox bwrap sets them again; without it this is all that keeps the grader's
        # environment (database URL, runtime path) away from the kernel.
        kwargs["env"] = dict(self._kernel_env)
        kwargs["cwd"] = str(self._task_dir / "work")
        return super().start_new_kernel(**kwargs)

    # ------------------------------------------------------------------ cells and checks
    def preprocess_cell(self, cell, resources, index):
        meta = cell.metadata.get("nbgrader", {})
        grade_id = meta.get("grade_id") if meta.get("grade") else None
        running = _RunningCell(index, grade_id, self._expected.get(grade_id))
        with self._lock:
            self._current = running
        try:
            return super().preprocess_cell(cell, resources, index)
        finally:
            with self._lock:
                running.closed.set()
                self._current = None
            if running.check_id is not None and grade_id not in self._ledger:
                self._flag(f"{grade_id}: no check ran while the cell executed")

    def _flag(self, text):
        with self._lock:
            if text not in self._flags:
                self._flags.append(text)

    def _accept_loop(self):
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return  # the listener was closed: the notebook is done
            thread = threading.Thread(target=self._converse, args=(connection,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _converse(self, connection):
        with connection:
            try:
                connection.settimeout(REQUEST_TIMEOUT)
                header, _ = wire.receive(connection)
            except (EOFError, OSError, wire.WireError) as error:
                self._flag(f"a malformed request to the grader ({error})")
                return
            requested = header.get("check") if header.get("op") == "request" else None
            with self._lock:
                running = self._current
                refusal = _refusal(running, requested)
                if refusal is None:
                    running.asked = True
            if refusal is not None:
                where = f"cell {running.grade_id or running.index}" if running else "no cell"
                self._flag(
                    f"request for check {str(requested)[:40]!r} refused ({where}): {refusal}"
                )
                line = f"[FLAG] the grader refused this request: {refusal}; it scores nothing."
                RemoteKernel(connection, time.monotonic() + 5).finish("refused", [line])
                return
            budget = self.check_timeout or self.timeout or 300
            kernel = RemoteKernel(connection, time.monotonic() + budget, running.closed)
            seed = check_seed(self._secret, self._label, requested)
            result = run_check(requested, kernel, seed)
            for problem in kernel.problems:
                self._flag(f"{running.grade_id}: {problem}")
            with self._lock:
                if not running.closed.is_set():
                    self._ledger[running.grade_id] = result
            kernel.finish("done", result.lines)


def _refusal(running, requested):
    """Why a check request does not count, or None when it does."""
    if running is None:
        return "no cell was executing"
    if running.grade_id is None:
        return "it did not come from a grade cell"
    if running.check_id is None:
        return "this grade cell has no hidden check"
    if requested != running.check_id:
        return "the executing grade cell stands for another check"
    if running.asked:
        return "this grade cell already ran its check"
    return None
