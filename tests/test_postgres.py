"""The gradebook can be a real PostgreSQL server (BNKIT_DB_URL): parallel workers write to it.

The fixture installs PostgreSQL from Debian's packages when it is missing (root only), creates a
throw-away cluster in a temporary folder and starts it on 127.0.0.1 on a free port; it stops the
server by its process id afterwards. It skips, saying why, only where that is impossible.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import auto_points, auto_scores
from corpus.hostile import UNBIASED
from coursekit import status as st
from coursekit.grade import grade
from coursekit.gradebook import cell_scores
from coursekit.release import release
from coursekit.submissions import apply_edits, reference_notebook, write_submission

PG_BIN_ROOT = Path("/usr/lib/postgresql")


def pg_bin():
    versions = sorted(PG_BIN_ROOT.glob("*/bin/initdb")) if PG_BIN_ROOT.exists() else []
    return versions[-1].parent if versions else None


def install_postgres():
    if pg_bin() is not None:
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return (
            "PostgreSQL is not installed and this test cannot install it (needs root and apt-get)"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, capture_output=True)
    result = subprocess.run(
        ["apt-get", "install", "-y", "-qq", "postgresql"], env=env, capture_output=True, text=True
    )
    if result.returncode != 0 or pg_bin() is None:
        return f"apt-get install postgresql failed: {result.stderr.strip()[-300:]}"
    return None


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    problem = install_postgres()
    if problem:
        pytest.skip(problem)
    bin_dir = pg_bin()
    # PostgreSQL refuses to run as root: run it as the 'postgres' account the package creates,
    # in a folder that account owns (pytest's own temporary folders are private to root).
    root = Path(tempfile.mkdtemp(prefix="bnkit-pg-"))
    data = root / "data"
    as_user = []
    if os.geteuid() == 0:
        shutil.chown(root, user="postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*as_user, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "grader"],
        check=True,
        capture_output=True,
    )
    port = free_port()
    log = root / "server.log"
    server = subprocess.Popen(
        [
            *as_user,
            str(bin_dir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-k",
            str(root),
            "-c",
            "listen_addresses=127.0.0.1",
        ],
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(100):
            if (
                subprocess.run(
                    [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                    capture_output=True,
                ).returncode
                == 0
            ):
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"PostgreSQL did not start: {log.read_text()[-500:]}")
        subprocess.run(
            [
                str(bin_dir / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "grader",
                "gradebook",
            ],
            check=True,
        )
        yield f"postgresql://grader@127.0.0.1:{port}/gradebook"
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


def test_parallel_grading_into_postgresql(postgres_url, tmp_path, monkeypatch):
    monkeypatch.setenv("BNKIT_RUNTIME", str(tmp_path / "runtime"))
    monkeypatch.setenv("BNKIT_DB_URL", postgres_url)
    release(release_root=tmp_path / "release")
    write_submission("pg-reference", {"bn_numpy.ipynb": reference_notebook("bn_numpy.ipynb")})
    write_submission(
        "pg-unbiased",
        {
            "bn_numpy.ipynb": apply_edits(
                reference_notebook("bn_numpy.ipynb"), UNBIASED.edits, "pg-unbiased"
            )
        },
    )
    statuses = grade(workers=2, show_progress=False)
    assert {
        (s.student, s.notebook): s.status for s in statuses if s.notebook == "bn_numpy.ipynb"
    } == {
        ("pg-reference", "bn_numpy.ipynb"): st.GRADED,
        ("pg-unbiased", "bn_numpy.ipynb"): st.GRADED,
    }
    points = auto_points("bn_numpy")
    scores = cell_scores(postgres_url)  # read back from the server, not from a local file
    reference = auto_scores(scores, "pg-reference", "bn_numpy")
    assert reference == points
    unbiased = auto_scores(scores, "pg-unbiased", "bn_numpy")
    assert unbiased["test_forward_train"] < points["test_forward_train"]
    assert sum(unbiased.values()) < sum(points.values())
    assert not (tmp_path / "runtime" / "gradebook.db").exists()  # nothing fell back to SQLite
