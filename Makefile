# The README's two commands: `make run` and `make test`.
# The distribution's python3 when it is 3.11 or newer and can make a venv,
# else the first python3 on PATH: Debian builds its interpreter with PGO and
# LTO, pyenv's default build has neither, and the proxy spent ~10% more CPU
# per call on the latter (benchmarks/README.md, "Which Python").
SYSTEM_PYTHON := /usr/bin/python3
PYTHON ?= $(shell $(SYSTEM_PYTHON) -c 'import sys, ensurepip; sys.exit(sys.version_info < (3, 11))' \
	2>/dev/null && echo $(SYSTEM_PYTHON) || echo python3)
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= proxy.toml

.PHONY: run test setup test-setup

$(BIN)/sipfork: pyproject.toml Makefile
	$(PYTHON) -m venv --clear $(VENV)
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
