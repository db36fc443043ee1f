"""What grading tells the instructor beyond scores: the executor's flags and plagiarism hints.

Flags never change a score (scores come from the checks' ledger alone). They come from:

- the executor (``bn_grader.executor``): check requests refused (wrong cell, wrong id, asked
  twice), protocol violations in the kernel's answers, grade cells whose check never ran;
- a static reading of the student's own cells: a ``bn_numpy`` solution cell that imports
  TensorFlow, Keras, PyTorch or JAX to do the work the exercise asks for in NumPy.
"""

import ast

import nbformat

from bn_grader.ledger import METADATA_KEY

FRAMEWORKS = ("tensorflow", "keras", "torch", "jax", "flax")


def grading_record(notebook):
    """The executor's record in an autograded notebook's metadata, or None."""
    return notebook.metadata.get(METADATA_KEY)


def framework_imports(source):
    """Top-level names of deep-learning frameworks that ``source`` imports (sorted)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__":
            names = [a.value for a in node.args[:1] if isinstance(a, ast.Constant)]
        found.update(str(n).split(".")[0] for n in names if str(n).split(".")[0] in FRAMEWORKS)
    return sorted(found)


def notebook_flags(path, notebook_name):
    """Flags of one autograded notebook (list of str; empty when there is nothing to read)."""
    notebook = nbformat.read(path, as_version=4)
    record = grading_record(notebook) or {}
    flags = list(record.get("flags", []))
    if notebook_name == "bn_numpy.ipynb":
        for cell in notebook.cells:
            meta = cell.metadata.get("nbgrader", {})
            if cell.cell_type == "code" and meta.get("solution"):
                used = framework_imports(cell.source)
                if used:
                    flags.append(
                        f"{meta.get('grade_id')} imports {', '.join(used)} in a NumPy task "
                        "(read it: the exercise asks for NumPy)"
                    )
    return flags
