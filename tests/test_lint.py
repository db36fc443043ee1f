"""ruff is clean over the whole repository (code, tests and notebooks), as CI requires."""

import subprocess
import sys
from pathlib import Path

from conftest import KIT_ROOT

RUFF = Path(sys.executable).parent / "ruff"


def run_ruff(*args):
    return subprocess.run([str(RUFF), *args], cwd=KIT_ROOT, capture_output=True, text=True)


def test_ruff_check_is_clean():
    result = run_ruff("check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean():
    result = run_ruff("format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr
