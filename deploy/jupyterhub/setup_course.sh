#!/usr/bin/env bash
# Prepare one machine for the course hub (run as root, after the Unix accounts exist):
#   - the graders' group, with the instructor in it;
#   - the nbgrader exchange: root folder 1777 (nbgrader insists on rwx for all; the sticky bit
#     stops anyone renaming another user's folder) and the course folder owned by the
#     instructor and the graders' group, set-group-ID, so that submissions belong to that group;
#   - the instructor's course directory, copied from the kit (without runtime files) when it
#     does not exist yet, closed to other users (it holds solutions, the gradebook and the
#     grader-only code in autograder/);
#   - a check that every user can run the course environment and that it has the course kernel.
#
# Usage: setup_course.sh --instructor NAME [--graders GROUP] [--exchange-root DIR]
#                        [--course-id ID] [--course-dir DIR] [--kit DIR] [--course-env DIR]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
INSTRUCTOR=""
GRADERS="bn-graders"
EXCHANGE_ROOT="/srv/nbgrader/exchange"
COURSE_ID="bn-course"
COURSE_DIR=""
KIT="$(cd "$HERE/../.." && pwd)"
COURSE_ENV="$KIT/.venv"
while [ $# -gt 0 ]; do
    case "$1" in
        --instructor) INSTRUCTOR="$2"; shift 2 ;;
        --graders) GRADERS="$2"; shift 2 ;;
        --exchange-root) EXCHANGE_ROOT="$2"; shift 2 ;;
        --course-id) COURSE_ID="$2"; shift 2 ;;
        --course-dir) COURSE_DIR="$2"; shift 2 ;;
        --kit) KIT="$2"; shift 2 ;;
        --course-env) COURSE_ENV="$2"; shift 2 ;;
        *) echo "setup_course: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -n "$INSTRUCTOR" ] || { echo "setup_course: --instructor NAME is required" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "setup_course: run as root" >&2; exit 2; }
id "$INSTRUCTOR" >/dev/null || { echo "setup_course: no user $INSTRUCTOR" >&2; exit 2; }
HOME_DIR="$(getent passwd "$INSTRUCTOR" | cut -d: -f6)"
COURSE_DIR="${COURSE_DIR:-$HOME_DIR/$COURSE_ID}"

getent group "$GRADERS" >/dev/null || groupadd "$GRADERS"
usermod -a -G "$GRADERS" "$INSTRUCTOR"

install -d -m 1777 -o root -g root "$EXCHANGE_ROOT"
install -d -m 2755 -o "$INSTRUCTOR" -g "$GRADERS" "$EXCHANGE_ROOT/$COURSE_ID"

if [ ! -e "$COURSE_DIR" ]; then
    mkdir -p "$COURSE_DIR"
    for item in nbgrader_config.py solutions assignments autograder; do
        cp -a "$KIT/$item" "$COURSE_DIR/"
    done
    rm -rf "$COURSE_DIR/autograder/runtime"
    find "$COURSE_DIR" \( -name __pycache__ -o -name .ipynb_checkpoints \) -prune \
        -exec rm -rf {} +
fi
# nbgrader does not create the folder of a SQLite gradebook itself.
mkdir -p "$COURSE_DIR/autograder/runtime"
chown -R "$INSTRUCTOR:$GRADERS" "$COURSE_DIR"
chmod -R u+rwX,g+rX,g-w,o-rwx "$COURSE_DIR"
chmod 0750 "$HOME_DIR"
chgrp "$GRADERS" "$HOME_DIR"

# Every user's server and kernel run from the course environment.
if ! runuser -u nobody -- "$COURSE_ENV/bin/python" -c "" 2>/dev/null; then
    echo "setup_course: WARNING: other users cannot run $COURSE_ENV/bin/python;" \
        "put the course environment (and the Python it was made from) where all can read it" >&2
fi
if ! "$COURSE_ENV/bin/jupyter" kernelspec list 2>/dev/null | grep -q "^ *bn-course "; then
    echo "setup_course: WARNING: no bn-course kernel in $COURSE_ENV;" \
        "run: $COURSE_ENV/bin/python -m ipykernel install --sys-prefix --name bn-course" >&2
fi
echo "setup_course: exchange $EXCHANGE_ROOT/$COURSE_ID, course directory $COURSE_DIR," \
    "graders group $GRADERS"
