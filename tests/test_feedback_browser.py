"""Feedback HTML in a real browser: it reads on a 13-inch laptop without scrolling sideways.

One failing bn_numpy submission (a catalogued mistake, plus a student's long lines: a long
comment, an unbroken token and a long printed line) is graded and turned into feedback by the
kit's own pipeline (``coursekit grade``, ``coursekit feedback``). The page is opened in headless
Chromium (Debian's, driven by Playwright, as in tests/hub/test_browser.py) at 1280x800:

- the document does not scroll horizontally, and no preformatted block is wider than its box
  (wrapped, not clipped out of sight);
- each grade cell's one-line summary sits above the first line of its detail.

A control renders the same page with the kit's wrapping CSS taken out and expects it to scroll:
the long lines are long enough to show the difference. Skips, saying so, when /usr/bin/chromium
or Playwright is missing (deploy/jupyterhub/install_test_deps.sh installs both; CI runs it).
"""

import nbformat
import pytest
from chromium import headless_chromium

from bn_grader.samples_numpy import SAMPLES
from conftest import runtime_env
from coursekit.feedback import WRAP_CSS, generate_feedback
from coursekit.grade import grade
from coursekit.paths import feedback_dir
from coursekit.release import release
from coursekit.submissions import apply_edits, reference_notebook, write_submission

LAPTOP = {"width": 1280, "height": 800}  # a 13-inch laptop's browser viewport
NOTEBOOK = "bn_numpy.ipynb"
STUDENT = "fb-long-lines"
MISTAKE = next(sample for sample in SAMPLES if sample.mistake_id == "unbiased-variance")
# What students paste: a sentence-long comment, a path-like token with no place to break, and a
# printed rule far wider than the page.
LONG_LINES = (
    "\n# "
    + "I kept the running statistics in bn_param because the notes said so, " * 6
    + "\n# see_"
    + "very_long_identifier_" * 20
    + '\nprint("-" * 400)\n'
)


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """{"kit": the feedback page, "unwrapped": the same page without the kit's wrapping CSS}."""
    runtime = tmp_path_factory.mktemp("feedback_browser") / "runtime"
    with pytest.MonkeyPatch.context() as monkeypatch:
        runtime_env(monkeypatch, runtime)
        release(release_root=runtime.parent / "release")
        notebook = apply_edits(reference_notebook(NOTEBOOK), MISTAKE.edits, STUDENT)
        cell = next(
            cell
            for cell in notebook.cells
            if cell.metadata.get("nbgrader", {}).get("grade_id") == "batchnorm_forward"
        )
        cell.source += LONG_LINES
        write_submission(STUDENT, {NOTEBOOK: notebook})
        grade(workers=1, show_progress=False)
        generate_feedback()
        page = feedback_dir() / STUDENT / "batchnorm" / "bn_numpy.html"
        html = page.read_text()
        graded = nbformat.read(runtime / "autograded" / STUDENT / "batchnorm" / NOTEBOOK, 4)
    # A failing page, styled by the kit, on which the student's long line was really printed.
    assert WRAP_CSS.strip() in html and "[FAIL]" in html
    assert any("-" * 400 in str(cell.get("outputs", "")) for cell in graded.cells)
    unwrapped = page.with_name("unwrapped.html")
    unwrapped.write_text(html.replace(WRAP_CSS.strip(), ""))
    return {"kit": page, "unwrapped": unwrapped}


@pytest.fixture(scope="module")
def browser():
    with headless_chromium() as browser:
        yield browser


def _open(browser, path):
    """A laptop-sized page showing ``path``; the network is cut (the page's MathJax is remote)."""
    context = browser.new_context(viewport=LAPTOP)
    context.route("http*://**", lambda route: route.abort())
    page = context.new_page()
    page.goto(path.as_uri(), wait_until="domcontentloaded")
    page.wait_for_selector(".bnkit-cell-summary")
    return context, page


SCROLL = """() => {
  const root = document.scrollingElement;
  return {scrollWidth: root.scrollWidth, clientWidth: root.clientWidth};
}"""

# Preformatted blocks wider than their own box: hidden overflow would pass the page-level
# check while cutting the student's lines off.
CLIPPED = """() => Array.from(document.querySelectorAll("pre"))
  .filter(pre => pre.scrollWidth > pre.clientWidth + 1)
  .map(pre => pre.textContent.slice(0, 80))"""

# For each grade cell (nbgrader's anchor named after it): its summary line and its first
# [PASS]/[FAIL] line, with their vertical positions on the page.
ORDER = """() => Array.from(document.querySelectorAll("a[name^='test_']")).map(anchor => {
  const cell = anchor.closest("div.cell");
  const summary = cell && cell.querySelector(".bnkit-cell-summary");
  const detail = cell && Array.from(cell.querySelectorAll(".output_area pre"))
    .find(pre => /\\[(PASS|FAIL)\\]/.test(pre.textContent));
  const top = el => el ? el.getBoundingClientRect().top + window.scrollY : null;
  return {
    cell: anchor.name,
    summary: summary ? summary.textContent.trim() : null,
    summaryBottom: summary ? summary.getBoundingClientRect().bottom + window.scrollY : null,
    detailTop: top(detail),
  };
})"""


def test_feedback_does_not_scroll_sideways_on_a_laptop(pages, browser):
    context, page = _open(browser, pages["kit"])
    try:
        size = page.evaluate(SCROLL)
        assert size["scrollWidth"] <= size["clientWidth"], size
        assert page.evaluate(CLIPPED) == []
    finally:
        context.close()


def test_without_the_wrapping_css_the_same_page_scrolls(pages, browser):
    """The control: the long lines do overflow a laptop screen unless the kit wraps them."""
    context, page = _open(browser, pages["unwrapped"])
    try:
        size = page.evaluate(SCROLL)
        overflowing = size["scrollWidth"] > size["clientWidth"] or page.evaluate(CLIPPED)
        assert overflowing, size
    finally:
        context.close()


def test_each_grade_cell_shows_its_summary_before_its_detail(pages, browser):
    context, page = _open(browser, pages["kit"])
    try:
        cells = page.evaluate(ORDER)
    finally:
        context.close()
    assert len(cells) >= 10  # every bn_numpy grade cell, not a page that lost them
    with_detail = [cell for cell in cells if cell["detailTop"] is not None]
    assert any(cell["summary"].startswith(("Failed", "Partly passed")) for cell in cells)
    assert with_detail
    for cell in cells:
        assert cell["summary"], cell["cell"]
        assert cell["summary"].split(":")[0] in ("Passed", "Failed", "Partly passed"), cell
    for cell in with_detail:
        assert cell["summaryBottom"] <= cell["detailTop"], cell
