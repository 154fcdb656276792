# The README's two commands: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= proxy.toml

.PHONY: run test setup test-setup

$(BIN)/sipfork: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

setup: $(BIN)/sipfork

run: setup
	$(BIN)/sipfork run -c $(CONFIG)

# SIPp drives the benchmark harness's smoke test; it comes from Debian.
test-setup: setup
	command -v sipp >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sip-tester >/dev/null; }

test: test-setup
	$(BIN)/pytest -q
