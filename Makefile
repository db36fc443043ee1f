# The BatchNorm course kit. Quick start: `make demo`, `make test` (see README.md).
# Every target creates .venv from requirements.txt first if it is missing or out of date.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
KERNEL := bn-course
# nbgrader runs `alembic` by name, so the venv's bin must be on PATH even when not activated.
export PATH := $(CURDIR)/$(BIN):$(PATH)
KIT := PYTHONPATH=$(CURDIR)/autograder $(BIN)/python -m coursekit
PYTEST_ARGS ?=

.PHONY: help venv demo test release validate samples grade feedback export report \
        student-bundle lint format bench clean-runtime

help:
	@echo "make demo            install, then release + validate + grade the samples + feedback + export"
	@echo "                     (one mistake sample per solution cell; ALL_SAMPLES=1 grades every one)"
	@echo "make test            install, then run the whole test suite (what CI runs)"
	@echo "make release         regenerate assignments/ from solutions/"
	@echo "make validate        run the solutions; every grade cell must earn full marks"
	@echo "make samples         write the sample submissions into the runtime folder"
	@echo "make grade           autograde every submission in parallel (WORKERS=n, STUDENT=id)"
	@echo "make feedback        write feedback HTML"
	@echo "make export          write grades.csv with statuses and print the table"
	@echo "make report          per-check class report (table + PNG)"
	@echo "make student-bundle  write dist/batchnorm-student.tar.gz (no solutions, no grader)"
	@echo "make lint            ruff check + ruff format --check"
	@echo "make bench           run the benchmark scripts in bench/"

venv: $(STAMP)

$(STAMP): requirements.txt
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if v == (3, 11) else "The kit is pinned for Python 3.11; found %d.%d. Set PYTHON=/path/to/python3.11." % v)'
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python 3 (BatchNorm course)"
	touch $(STAMP)

demo: $(STAMP)
	$(KIT) demo $(if $(ALL_SAMPLES),--all-samples)

# pytest exit code 5 means "no tests collected": for this suite that is a broken checkout or
# a wrong path, never a success, so it fails with a message of its own.
test: $(STAMP)
	@$(BIN)/python -m pytest $(PYTEST_ARGS); code=$$?; \
	if [ $$code -eq 5 ]; then echo "make test: pytest collected no tests (exit 5); the suite is missing" >&2; exit 1; fi; \
	exit $$code

release: $(STAMP)
	$(KIT) release

validate: $(STAMP)
	$(KIT) validate

samples: $(STAMP)
	$(KIT) samples $(if $(ALL_SAMPLES),--all-samples)

grade: $(STAMP)
	$(KIT) grade $(if $(WORKERS),--workers $(WORKERS)) $(if $(STUDENT),--student $(STUDENT))

feedback: $(STAMP)
	$(KIT) feedback

export: $(STAMP)
	$(KIT) export

report: $(STAMP)
	$(KIT) report

student-bundle: $(STAMP)
	$(KIT) bundle

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .

bench: $(STAMP)
	@for script in bench/bench_*.py bench/run_*.py; do echo "== $$script"; PYTHONPATH=autograder $(BIN)/python $$script || exit 1; done

clean-runtime:
	rm -rf autograder/runtime dist
