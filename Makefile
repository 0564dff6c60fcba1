# The two commands of the README: `make demo` runs a real workflow on this machine through
# the local provider; `make test` runs the tests. Each creates the virtual environment it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

# Without PREFECT_API_URL the demo starts Prefect's temporary server, which gets 20 s to
# start by default: not enough on a busy two-core machine.
demo: $(VENV)/.installed
	PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=$${PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS:-120} \
		$(PY) -m flows.demo

# The tests run on TEST_WORKERS pytest-xdist workers. Many of them spend part of their time waiting
# (polls, subprocesses, flow runs), so more workers than cores pay off. tests/conftest.py keeps
# the tests of the deployed Prefect stack (tests/deploy) on one worker.
TEST_WORKERS ?= 4

test: $(VENV)/.installed
	$(PY) -m pytest -n $(TEST_WORKERS)

lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m black --check .
# flows/common joins once it exists
	$(PY) -m mypy providers blocks flows
