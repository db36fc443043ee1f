"""How a graded notebook's status is decided from what grading left behind."""

import nbformat

from coursekit import status as st

DIED_LOG = "[ERROR] Kernel died while waiting for execute reply.\nDeadKernelError: Kernel died"


def write_notebook(path, error_name=None):
    cell = nbformat.v4.new_code_cell("x = 1")
    if error_name:
        cell.outputs = [nbformat.v4.new_output("error", ename=error_name, evalue="", traceback=[])]
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), path)
    return path


def test_clean_run_is_graded(tmp_path):
    assert st.classify(0, "", write_notebook(tmp_path / "nb.ipynb"))[0] == st.GRADED


def test_memory_error_in_a_cell_is_out_of_memory(tmp_path):
    path = write_notebook(tmp_path / "nb.ipynb", "MemoryError")
    assert st.classify(0, "", path)[0] == st.OUT_OF_MEMORY


def test_cell_timeout_is_timed_out(tmp_path):
    path = write_notebook(tmp_path / "nb.ipynb", "CellTimeoutError")
    assert st.classify(0, "", path)[0] == st.TIMED_OUT


def test_interrupted_after_a_timeout_is_timed_out(tmp_path):
    path = write_notebook(tmp_path / "nb.ipynb", "KeyboardInterrupt")
    log = "[ERROR] Timeout waiting for execute reply (20s)."
    assert st.classify(0, log, path)[0] == st.TIMED_OUT


def test_dead_kernel_is_kernel_died(tmp_path):
    assert st.classify(1, DIED_LOG, tmp_path / "missing.ipynb")[0] == st.KERNEL_DIED


def test_dead_kernel_near_the_memory_limit_is_out_of_memory(tmp_path):
    status, detail = st.classify(1, DIED_LOG, tmp_path / "missing.ipynb", "", True)
    assert status == st.OUT_OF_MEMORY and "memory limit" in detail


def test_dead_kernel_that_said_bad_alloc_is_out_of_memory(tmp_path):
    stderr = "terminate called after throwing an instance of 'std::bad_alloc'"
    assert st.classify(1, DIED_LOG, tmp_path / "missing.ipynb", stderr)[0] == st.OUT_OF_MEMORY


def test_nbgrader_failure_without_a_dead_kernel_is_grading_failed(tmp_path):
    log = "[ERROR] ValueError: partial credit cannot be greater than maximum points for cell"
    status, detail = st.classify(1, log, tmp_path / "missing.ipynb")
    assert status == st.GRADER_FAILED and "partial credit" in detail


def test_the_readme_lists_every_status():
    """The README's list of grading statuses is the one the grader writes, no more, no less."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    paragraph = readme.split("Grading statuses (")[1].split("A zero is never silent")[0]
    listed = set(re.findall(r"`([a-z ]+)`", paragraph)) - {"status", "flags", "grade"}
    written = {st.GRADED, st.UNSANDBOXED, *st.PROBLEMS}
    assert listed == written
