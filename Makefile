# rollcap developer entry points. Each target installs what it needs:
#   make run    capture on lo into ./run-demo, archive locally; Ctrl-C stops (as root);
#               make run ARGS="--demo-only --rotate-seconds 30" passes options to rollcap.demo
#   make test   ruff, mypy and every test (as root: tests create veth pairs)
#   make lint   ruff and mypy only
#   make deb    dist/trixie/*.deb, dist/bookworm/*.deb (make check-units: the units' scores)
#   make bench  benchmarks; results into the README
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.rollcap-installed
PYTEST_ARGS ?=

.PHONY: all run test lint pytest deb check-units bench venv apt-run apt-test apt-bench clean

all: test

apt-run:
	@.ci/ensure-apt .ci/packages-run.txt

apt-test:
	@.ci/ensure-apt .ci/packages-run.txt .ci/packages-test.txt

apt-bench:
	@.ci/ensure-apt .ci/packages-run.txt .ci/packages-test.txt .ci/packages-bench.txt

venv: $(STAMP)

# The project in editable mode with its test extras, in ./.venv only.
$(STAMP): pyproject.toml | apt-run
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[test]'
	@touch $@

run: apt-run $(STAMP)
	$(VPY) -m rollcap.demo $(ARGS)

lint: $(STAMP)
	$(VPY) -m ruff check rollcap tests $(wildcard bench)
	$(VPY) -m mypy

# pytest exits 5 when it collected no tests: that is a failure, not a pass.
pytest: apt-test $(STAMP)
	@rc=0; $(VPY) -m pytest tests $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "FAILED: pytest collected no tests"; exit 1; fi; \
	exit $$rc

test: lint pytest

# From debian/, each in a cached root of its release (docs/packaging.md):
# dist/trixie/rollcap_<version>_all.deb, dist/bookworm/rollcap_<version>~deb12u1_amd64.deb
deb: apt-test
	packaging/build-deb trixie bookworm

check-units:
	packaging/check-units

bench: apt-bench $(STAMP)
	$(VPY) -m pip install -q -e '.[test,bench]'
	$(VPY) -m bench.run_all

clean:
	rm -rf $(VENV) build dist run-demo .mypy_cache .ruff_cache .pytest_cache
