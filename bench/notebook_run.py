"""Shared by the notebook timing scripts: execute a notebook on the course kernel, cell times."""

import time
from datetime import datetime

import nbformat
from nbclient import NotebookClient


def cell_seconds(execution):
    """Seconds a cell ran, from the timing metadata nbclient records (``execution``)."""
    start = datetime.fromisoformat(execution["iopub.execute_input"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(execution["shell.execute_reply"].replace("Z", "+00:00"))
    return (end - start).total_seconds()


def execute_notebook(path):
    """Execute ``path`` top to bottom on the course kernel, in its folder.

    Returns:
        (wall seconds including kernel start, the executed notebook).
    """
    notebook = nbformat.read(str(path), as_version=4)
    client = NotebookClient(
        notebook,
        kernel_name="bn-course",
        timeout=300,
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.perf_counter()
    client.execute()
    return time.perf_counter() - start, notebook
