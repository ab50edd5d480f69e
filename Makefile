# shoal's developer entry points. GNU make; run from the repository root.
#
#   make lab        set up .venv and open JupyterLab on the tutorial notebooks in notebooks/
#   make test       set up .venv and run the whole test suite (what .ci/run does);
#                   and the notebooks/ tutorials under nbval; TESTS=tests/unit PYTEST_ARGS='-k name' narrows the first
#   make clean      remove build artefacts; the virtual environments stay
#   make distclean  clean, and remove .venv too
#   make bench-ray-venv | bench | bench-smoke    from benchmarks/bench.mk

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
VENV_PYTHON := $(VENV)/bin/python
# A CPU build, served from a local wheel on the project's machines; kept out of shoal's own
# dependencies (it joins a [train]/[all] extra with the library that needs it).
TORCH_VERSION := 2.13.0
TESTS ?= tests
TEST_TIMEOUT_S ?= 120
PYTEST_ARGS ?=

# The stamp's name carries a hash of what the venv is built from, so editing pyproject.toml or
# the torch pin rebuilds it and anything else finds it up to date at the cost of one stat.
VENV_HASH := $(shell { cat pyproject.toml; echo "torch==$(TORCH_VERSION)"; } | sha256sum | cut -c1-16)
VENV_STAMP := $(VENV)/.stamp-$(VENV_HASH)

.PHONY: help venv lab test pyright-paths clean distclean

help:
	@sed -n '3,9s/^# \{0,1\}//p' Makefile

venv: $(VENV_STAMP)

$(VENV_STAMP):
	rm -f $(VENV)/.stamp-*
	$(PYTHON) -m venv $(VENV) || { echo "could not create $(VENV): on Debian, apt-get install python3-venv" >&2; exit 1; }
	time $(VENV_PYTHON) -m pip install -e '.[test,jupyter]'
	time $(VENV_PYTHON) -m pip install 'torch==$(TORCH_VERSION)'
	$(VENV_PYTHON) -m ipykernel install --sys-prefix --name python3
	touch $@

# The tutorials: notebooks/01_quickstart, 02_remote_cells, 03_cluster_views. The README's quick
# start is tested by tests/unit/test_packaging.py; the notebooks by nbval in `make test`.
lab: $(VENV_STAMP)
	@echo "make lab: JupyterLab on notebooks/ (start with 01_quickstart.ipynb); Ctrl-C to stop" >&2
	$(VENV)/bin/jupyter lab notebooks/

# pytest exits 5 when it collected no tests: that is a failure here, not a pass.
# Then (whatever the first run gave) the tutorial notebooks under nbval, in a separate run: only notebooks/ is collected, so
# tests/conftest.py (its leak checks) is not loaded; --nbval-current-env runs the kernel with
# this venv's python; cells marked `# NBVAL_CHECK_OUTPUT` must reproduce their saved output.
test: $(VENV_STAMP)
	@status=0; \
	SHOAL_NONINTERACTIVE=1 $(VENV_PYTHON) -m pytest $(TESTS) -q -p no:cacheprovider \
		--timeout=$(TEST_TIMEOUT_S) $(PYTEST_ARGS) || status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; \
	nb_status=0; \
	SHOAL_NONINTERACTIVE=1 $(VENV_PYTHON) -m pytest --nbval-lax --nbval-current-env notebooks \
		-q -p no:cacheprovider --timeout=$(TEST_TIMEOUT_S) || nb_status=$$?; \
	if [ $$nb_status -ne 0 ]; then echo "make test: the notebooks failed under nbval" >&2; fi; \
	if [ $$status -ne 0 ]; then exit $$status; fi; \
	exit $$nb_status

# pyright cannot follow the editable install's import hook (shoal -> runtime/, ...): this lays the
# package out as symlinks in build/pyright/, which [tool.pyright] extraPaths names. Run before pyright.
pyright-paths:
	$(PYTHON) .ci/pyright_paths.py

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache
	find . \( -path ./.git -o -path './.venv*' -o -name node_modules \) -prune \
		-o -type d -name __pycache__ -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)

-include benchmarks/bench.mk
ifneq ($(wildcard benchmarks/bench.mk),)
bench bench-smoke: $(VENV_STAMP)
endif
