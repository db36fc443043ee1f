"""Use the functions you wrote in another notebook (bn_numpy.ipynb) without copy and paste.

``load_functions("bn_numpy.ipynb", ["batchnorm_forward", ...])`` reads that notebook from disk
(save it first), runs its setup cell and only the *definitions* (``def``, ``class``, ``import``)
found in its solution cells, and hands the functions back. Nothing else from that notebook
runs: no training, no plots, no prints. A function that is missing, unfinished or broken is
replaced by a stand-in that raises :class:`MissingFunction` with the reason, so a comparison
with your NumPy code simply says why it was skipped.
"""

import ast
import json
import os
from pathlib import Path

GRADER_SOCKET_VARIABLE = "BNKIT_CHECKER_SOCKET"  # set only while a notebook is being graded


class MissingFunction(Exception):
    """A function from the other notebook is not available (the message says why)."""


class NotebookFunctions:
    """The functions loaded from a notebook: ``funcs.batchnorm_forward(...)`` or ``funcs["..."]``.

    Attributes:
        path: the notebook that was read.
        problems: list of strings, one per thing that went wrong while loading.
    """

    def __init__(self, path, functions, problems):
        self.path = path
        self._functions = functions
        self.problems = problems

    def __getitem__(self, name):
        return self._functions[name]

    def __getattr__(self, name):
        functions = self.__dict__.get("_functions", {})
        if name in functions:
            return functions[name]
        raise AttributeError(name)

    def available(self, name):
        """True when ``name`` was found and defined (it may still be unfinished)."""
        function = self._functions.get(name)
        return function is not None and not getattr(function, "is_missing", False)

    def summary(self):
        """One line per function: found or why not, then the loading problems."""
        lines = [f"functions from {self.path}:"]
        for name, function in self._functions.items():
            if getattr(function, "is_missing", False):
                lines.append(f"  {name}: not available ({function.reason})")
            else:
                lines.append(f"  {name}: loaded")
        lines += [f"  note: {problem}" for problem in self.problems]
        return "\n".join(lines)


def _missing(name, reason):
    def stand_in(*args, **kwargs):
        raise MissingFunction(f"{name} is not available: {reason}")

    stand_in.__name__ = name
    stand_in.is_missing = True
    stand_in.reason = reason
    return stand_in


def _source(cell):
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _definitions_only(source, stubs):
    """The top-level def/class/import statements of a cell, as a compiled module (or None).

    Adds to ``stubs`` the names of the functions that are still the release's stub: a body
    that only raises NotImplementedError (after an optional docstring).
    """
    tree = ast.parse(source)
    keep = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)
    tree.body = [node for node in tree.body if isinstance(node, keep)]
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _is_stub(node):
            stubs.add(node.name)
    if not tree.body:
        return None
    return compile(tree, "<notebook cell>", "exec")


def _is_stub(function):
    body = list(function.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    body = [node for node in body if not isinstance(node, ast.Pass)]
    if len(body) != 1 or not isinstance(body[0], ast.Raise) or body[0].exc is None:
        return False
    raised = body[0].exc.func if isinstance(body[0].exc, ast.Call) else body[0].exc
    return isinstance(raised, ast.Name) and raised.id == "NotImplementedError"


def _unreadable(path, error):
    """Why the notebook could not be read, in plain words."""
    if isinstance(error, FileNotFoundError):
        if os.environ.get(GRADER_SOCKET_VARIABLE):
            return f"{path.name} was not submitted"
        return f"{path.name} is not in this folder (save it next to this notebook)"
    if isinstance(error, ValueError):
        return f"{path.name} is not a readable notebook (invalid JSON)"
    return f"could not read {path} ({type(error).__name__})"


def load_functions(path, names, setup_grade_id="setup"):
    """Load the functions ``names`` defined in the notebook at ``path``.

    Args:
        path: the notebook file, e.g. "bn_numpy.ipynb" (relative to the current folder, which
            is the notebook's folder in Jupyter).
        names: the function names to return, e.g. ["batchnorm_forward", "batchnorm_backward"].
        setup_grade_id: nbgrader grade_id of the notebook's setup (import) cell, run in full.

    Returns:
        NotebookFunctions. Never raises: a missing file, a syntax error or an unfinished
        function become stand-ins that raise MissingFunction when called.
    """
    path = Path(path)
    namespace = {"__name__": f"notebook_{path.stem}"}
    problems = []
    stubs = set()
    try:
        notebook = json.loads(path.read_text(encoding="utf-8"))
        cells = [cell for cell in notebook.get("cells", []) if cell.get("cell_type") == "code"]
    except (OSError, ValueError) as error:
        reason = _unreadable(path, error)
        return NotebookFunctions(path, {name: _missing(name, reason) for name in names}, [reason])

    for cell in cells:
        nbgrader = cell.get("metadata", {}).get("nbgrader", {})
        is_setup = nbgrader.get("grade_id") == setup_grade_id
        if not (is_setup or nbgrader.get("solution", False)):
            continue
        label = nbgrader.get("grade_id", "a solution cell")
        try:
            code = (
                compile(_source(cell), "<notebook cell>", "exec")
                if is_setup
                else _definitions_only(_source(cell), stubs)
            )
        except SyntaxError as error:
            problems.append(
                f"cell {label} has a syntax error (line {error.lineno}); its definitions were skipped"
            )
            continue
        if code is None:
            continue
        try:
            exec(code, namespace)  # noqa: S102  the student's own code, run on request
        except Exception as error:  # noqa: BLE001  an unfinished notebook must not break this one
            problems.append(f"cell {label} raised {type(error).__name__}: {str(error)[:120]}")

    functions = {}
    for name in names:
        candidate = namespace.get(name)
        if candidate is None:
            functions[name] = _missing(name, f"no cell of {path} defines it")
        elif not callable(candidate):
            functions[name] = _missing(name, f"it is a {type(candidate).__name__}, not a function")
        elif name in stubs:
            functions[name] = _missing(
                name, "not implemented yet (it still raises NotImplementedError)"
            )
        else:
            functions[name] = candidate
    return NotebookFunctions(path, functions, problems)
