"""Debian's Chromium, headless, driven by Playwright: the browser of the browser tests.

Playwright is given Chromium's own executable path, so its browser download is never used.
:func:`headless_chromium` skips the test, saying what to install, when /usr/bin/chromium or
Playwright is missing (deploy/jupyterhub/install_test_deps.sh installs both; CI runs it).
"""

import contextlib
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextlib.contextmanager
def headless_chromium():
    """Yield a Playwright ``Browser`` on Debian's Chromium, closed afterwards."""
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: run deploy/jupyterhub/install_test_deps.sh as root")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: run deploy/jupyterhub/install_test_deps.sh")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()
