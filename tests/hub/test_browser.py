"""Browser check: a student logs in, fetches `batchnorm` in JupyterLab and opens bn_numpy.ipynb.

Debian's Chromium, driven by Playwright with Chromium's own executable path (Playwright's
browser download is never used). Skips, saying so, when /usr/bin/chromium or Playwright is
missing (deploy/jupyterhub/install_test_deps.sh installs both).
"""

import os
import re

import pytest
from chromium import headless_chromium

from .conftest import ARTIFACTS, ASSIGNMENT, PASSWORD

pytestmark = pytest.mark.hub

SCREENSHOT = ARTIFACTS / "browser_bn_numpy.png"
LIST_SCREENSHOT = ARTIFACTS / "browser_assignment_list.png"


@pytest.fixture(scope="module")
def chromium():
    with headless_chromium() as browser:
        yield browser


def test_student_fetches_and_opens_notebook_in_jupyterlab(released, chromium):
    hub = released
    student = hub.students[-1]
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        page.goto(f"{hub.url}/hub/login")
        page.fill("#username_input", student)
        page.fill("#password_input", PASSWORD)
        page.click("#login_submit")
        # The hub starts the server and sends the browser on to JupyterLab.
        page.wait_for_url(re.compile(rf"/user/{student}/lab"), timeout=180_000)
        hub.wait_ready(student)
        page.wait_for_selector("#jp-main-dock-panel", timeout=120_000)

        # Nbgrader > Assignment List, then Fetch on the released assignment.
        page.get_by_role("menuitem", name="Nbgrader").click()
        assignment_list = page.get_by_role("menuitem", name="Assignment List")
        assignment_list.wait_for()
        # The student's menu has no formgrader, course list or "create assignment".
        for hidden in ("Formgrader", "Course List", "Create assignment"):
            assert page.get_by_role("menuitem", name=hidden).count() == 0, hidden
        assignment_list.click()
        released_list = page.locator("#released_assignments_list")
        released_list.get_by_text(ASSIGNMENT).wait_for()
        released_list.get_by_role("button", name="Fetch").click()

        # The fetched assignment lists its notebooks; open bn_numpy.ipynb from there.
        fetched = page.locator("#fetched_assignments_list")
        fetched.get_by_text(ASSIGNMENT).first.wait_for()
        notebook_link = fetched.get_by_text("bn_numpy", exact=False)
        if not notebook_link.first.is_visible():
            fetched.locator(".assignment-notebooks-link").first.click()
        notebook_link.first.wait_for(state="visible")
        page.screenshot(path=str(LIST_SCREENSHOT))
        notebook_link.first.click()
        page.get_by_role("tab", name=re.compile(r"bn_numpy\.ipynb")).wait_for()
        notebook = page.locator(".jp-NotebookPanel:visible")
        notebook.locator(".jp-MarkdownOutput").first.wait_for(state="visible")
        # The course kernel starts for the student and settles.
        page.wait_for_function(
            "() => /BatchNorm course\\)\\s*\\|\\s*Idle/.test("
            "document.querySelector('#jp-main-statusbar')?.innerText || '')",
            timeout=120_000,
        )
        no_news = page.get_by_role("button", name="No", exact=True)
        if no_news.count():
            no_news.first.click()
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=False)
        context.close()

    assert (hub.home(student) / ASSIGNMENT / "bn_numpy.ipynb").is_file()
    assert SCREENSHOT.stat().st_size > 10_000
    print(f"\nscreenshots: {os.path.relpath(SCREENSHOT)}, {os.path.relpath(LIST_SCREENSHOT)}")
