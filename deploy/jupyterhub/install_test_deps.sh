#!/usr/bin/env bash
# Install what the JupyterHub recipe and its loopback tests (tests/hub) need, idempotently:
#   - the pins of requirements-hub.txt into the course venv ($1, default .venv),
#   - configurable-http-proxy from npm into deploy/jupyterhub/node (project-local),
#   - Debian's chromium for the browser check, when running as root and it is missing.
# Whatever cannot be installed is reported and skipped: the tests then skip with the reason.
# Exit status is 0 whatever happens: CI goes on and the tests report what is missing.
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV="${1:-.venv}"
case "$VENV" in /*) ;; *) VENV="$REPO/$VENV" ;; esac
CHP_VERSION="5.3.0"
say() { printf 'install_test_deps: %s\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
    say "WARNING: no Python venv at $VENV (run make venv first); nothing installed, the hub tests will skip"
    exit 0
fi

# 1. Python packages (pip does nothing when the pins are already installed).
if "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$HERE/requirements-hub.txt"; then
    say "requirements-hub.txt installed in $VENV"
else
    say "WARNING: pip could not install requirements-hub.txt; the hub tests will skip"
fi

# 2. configurable-http-proxy, pinned, into a project-local npm prefix.
CHP="$HERE/node/node_modules/.bin/configurable-http-proxy"
if [ -x "$CHP" ] && [ "$("$CHP" --version 2>/dev/null)" = "$CHP_VERSION" ]; then
    say "configurable-http-proxy $CHP_VERSION already in $HERE/node"
elif command -v npm >/dev/null 2>&1; then
    mkdir -p "$HERE/node"
    if npm install --prefix "$HERE/node" --no-audit --no-fund --loglevel=error \
        "configurable-http-proxy@$CHP_VERSION" >/dev/null; then
        say "configurable-http-proxy $CHP_VERSION installed in $HERE/node"
    else
        say "WARNING: npm could not install configurable-http-proxy; the hub tests will skip"
    fi
else
    say "WARNING: npm not found; cannot install configurable-http-proxy; the hub tests will skip"
fi

# 3. Chromium for the browser check (Debian's package; Playwright's own download is not used).
if [ -x /usr/bin/chromium ]; then
    say "chromium present: $(/usr/bin/chromium --version 2>/dev/null)"
elif [ "$(id -u)" -ne 0 ]; then
    say "WARNING: not root, cannot apt-get install chromium; the browser check will skip"
elif ! command -v apt-get >/dev/null 2>&1; then
    say "WARNING: no apt-get on this machine; the browser check will skip"
else
    export DEBIAN_FRONTEND=noninteractive
    if apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null; then
        say "chromium installed: $(/usr/bin/chromium --version 2>/dev/null)"
    else
        say "WARNING: apt-get could not install chromium; the browser check will skip"
    fi
fi
exit 0
