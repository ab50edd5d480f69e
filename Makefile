# shoal's developer entry points. GNU make; run from the repository root.
#
#   make lab          set up .venv and open JupyterLab on the tutorial notebooks in notebooks/
#                     (LAB_ARGS='--no-browser --port=9999' passes more options to `jupyter lab`)
#   make test         make lint, then the whole test suite in .venv (what .ci/run does, browser tier
#                     in tests/browser included: Debian's chromium is installed when missing) and the
#                     notebooks/ tutorials under nbval; TESTS=tests/unit PYTEST_ARGS='-k name' narrows the first
#   make notebooks    re-execute the tutorials in notebooks/ and store their outputs (the static
#                     summaries a saved notebook shows; nbval in `make test` checks the marked cells)
#   make screenshots  run the browser tier and write its gallery to docs/screenshots/
#   make lint         ruff check, ruff format --check and pyright, at the versions requirements.lock pins
#   make chaos        the reliability suite (tests/reliability) at full size: kills, fuzzing, floods, store
#                     pressure, stale refs; prints its figures and writes benchmarks/out/chaos.json (make test runs it short)
#   make venv         build .venv from requirements.lock (make test and make lab do this when needed)
#   make lock         re-resolve requirements.lock at the newest versions pyproject.toml allows
#                     (LOCK_UPGRADE= keeps the current pins and resolves only what pyproject.toml changed)
#   make test-latest  build .venv-latest from the newest versions (not the lock) and run lint and the suite there
#   make clean        remove build artefacts; the virtual environments stay
#   make distclean    clean, and remove the virtual environments too
#   make bench-ray-venv | bench | bench-smoke    from benchmarks/bench.mk

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
VENV_PYTHON := $(VENV)/bin/python
TESTS ?= tests
TEST_TIMEOUT_S ?= 120
PYTEST_ARGS ?=
LAB_ARGS ?=
# make chaos: SHOAL_CHAOS_SCALE for tests/reliability (short is what make test runs), where the
# figures go as JSON, and the limit per scenario (the full ones take minutes; stacks dump at the limit).
CHAOS_SCALE ?= full
CHAOS_REPORT ?= benchmarks/out/chaos.json
CHAOS_TIMEOUT_S ?= 900

# Every package .venv holds, at one exact version each: what `make test` and CI test against, so
# a new release upstream changes nothing until `make lock` takes it in. Resolved by uv from
# pyproject.toml (shoal's dependencies and all its extras) plus TORCH below.
LOCK := requirements.lock
# A CPU build, served from a local wheel on the project's machines (pip's find-links); PyPI's
# torch is the CUDA build, several GB with its nvidia-* packages. Kept out of shoal's own
# dependencies (it joins a [train]/[all] extra with the library that needs it), so `make lock`
# adds it to what it resolves: the lock pins it and its own dependencies.
TORCH := torch==2.13.0+cpu
# The lock is resolved for the project's machines, whoever runs `make lock`. To uv "3.11" means
# 3.11.0, so a release that needs a later 3.11 (soupsieve 4 needs 3.11.5) is left out and the
# lock installs on any 3.11 (Debian 12's is 3.11.2).
LOCK_TARGET := --python-version 3.11 --python-platform x86_64-manylinux_2_28
LOCK_UPGRADE ?= --upgrade
# uv lives in a venv of its own, so `make lock` works whatever state .venv or the lock is in.
UV_VERSION := 0.13.9
TOOLS_VENV := .venv-tools
UV := $(TOOLS_VENV)/bin/uv
UV_STAMP := $(TOOLS_VENV)/.stamp-uv-$(UV_VERSION)
# uv does not read pip's configuration: give it the find-links pip has (/opt/wheels on the
# project's machines, where the torch CPU wheel lies). Recursive, so only the targets that resolve ask pip.
LOCK_FIND_LINKS = $(shell $(PYTHON) -m pip config list 2>/dev/null \
	| sed -n "s/^[^=]*find-links='\(.*\)'$$/\1/p" | tr ' ' '\n' | sort -u)
# Built from the newest versions pyproject.toml allows, by `make test-latest`; never by `make test`.
LATEST_VENV := .venv-latest

# The stamp's name carries a hash of what the venv is built from, so editing pyproject.toml or
# the lock rebuilds it and anything else finds it up to date at the cost of one stat.
VENV_HASH := $(shell cat pyproject.toml $(LOCK) | sha256sum | cut -c1-16)
VENV_STAMP := $(VENV)/.stamp-$(VENV_HASH)

# The browser tier (tests/browser) drives Debian's chromium with Playwright, which cannot
# download a browser of its own here.
CHROMIUM := /usr/bin/chromium
NOTEBOOK_TIMEOUT_S ?= 120

.PHONY: help venv lab lint test lock chaos test-latest pyright-paths clean distclean browser notebooks screenshots

help:
	@sed -n '3,/^$$/s/^# \{0,1\}//p' Makefile

# $(call new_venv,DIR): an empty venv in DIR. Built anew each time, so a package that left the
# requirements leaves the venv too.
define new_venv
	rm -rf $(1)
	$(PYTHON) -m venv $(1) || { echo "could not create $(1): on Debian, apt-get install python3-venv" >&2; exit 1; }
endef

# $(call fill_venv,DIR): install DIR/requirements.txt, then shoal itself (editable). Every package
# is pinned there, so --no-deps: pip installs exactly that list and resolves nothing; pip check
# then proves the list complete and consistent. setuptools and wheel are in the list, so the
# editable build uses them (--no-build-isolation) rather than fetching unpinned ones.
# The kernel spec puts DIR/bin first on the kernel's PATH (jupyter_client expands $${PATH} when it
# starts the kernel), so `!shoal status` and `!pip` in a notebook are this venv's.
define fill_venv
	time $(1)/bin/python -m pip install --no-deps -r $(1)/requirements.txt
	$(1)/bin/python -m pip install --no-deps --no-build-isolation -e .
	$(1)/bin/python -m pip check
	$(1)/bin/python -m ipykernel install --sys-prefix --name python3 --env PATH '$(abspath $(1))/bin:$${PATH}'
	$(call write_lab_settings,$(1))
endef

# $(call write_lab_settings,DIR): the JupyterLab defaults shoal's notebooks need, in DIR's lab app
# dir (overrides.d/shoal.json: a user's overrides.json and own settings still win). The widgets'
# state is saved with the notebook, so a notebook saved while a view is live (mid-session, or by
# autosave) reopens showing the view's last state instead of "Error displaying widget: model not
# found". The tutorials stored by `make notebooks` keep no widget state (nbconvert saves none).
LAB_SETTINGS_FILE := share/jupyter/lab/settings/overrides.d/shoal.json
define write_lab_settings
	mkdir -p $(dir $(1)/$(LAB_SETTINGS_FILE))
	echo '{"@jupyter-widgets/jupyterlab-manager:plugin": {"saveState": true}}' > $(1)/$(LAB_SETTINGS_FILE)
endef

# $(call resolve,OUTPUT,UPGRADE): resolve pyproject.toml's dependencies and extras (all of them:
# an extra added later is locked without a change here) plus TORCH into OUTPUT, preferring the
# pins OUTPUT already holds unless UPGRADE is --upgrade. Refuses a result with CUDA packages.
define resolve
	echo '$(TORCH)' | $(UV) pip compile pyproject.toml - --all-extras $(2) $(LOCK_TARGET) \
		$(addprefix --find-links ,$(LOCK_FIND_LINKS)) --custom-compile-command 'make lock' --quiet -o $(1)
	if grep -n '^nvidia-' $(1); then echo "make: $(1) pulls CUDA packages: torch must be the CPU build" >&2; exit 1; fi
	grep -q '^torch==.*+cpu$$' $(1) || { echo "make: $(1) does not pin a CPU build of torch" >&2; exit 1; }
endef

# ruff and pyright from DIR; all three checks run, so one run reports everything. pyright reads
# the package through the symlink tree that .ci/pyright_paths.py lays out (see pyright-paths).
# PYRIGHT_PYTHON_IGNORE_WARNINGS: the wheel bundles pyright, and asking PyPI for a newer one is make lock's job.
define run_lint
	status=0; \
	$(1)/bin/ruff check . || status=1; \
	$(1)/bin/ruff format --check . || status=1; \
	$(1)/bin/python .ci/pyright_paths.py || status=1; \
	PYRIGHT_PYTHON_IGNORE_WARNINGS=1 $(1)/bin/pyright --pythonpath $(1)/bin/python || status=1; \
	if [ $$status -ne 0 ]; then echo "make lint: failed (see above)" >&2; fi; \
	exit $$status
endef

# pytest exits 5 when it collected no tests: that is a failure here, not a pass.
# Then (whatever the first run gave) the tutorial notebooks under nbval, in a separate run: only notebooks/ is collected, so
# tests/conftest.py (its leak checks) is not loaded; --nbval-current-env runs the kernel with
# this venv's python; cells marked `# NBVAL_CHECK_OUTPUT` must reproduce their saved output, once
# tests/notebooks/nbval_sanitize.cfg has masked what differs between runs (ids, paths, pids, sizes).
# DIR/bin leads PATH there, as in the kernel spec (fill_venv): the notebooks see what a user's kernel sees
# (the init table offers `!shoal status` only when the command is on PATH).
define run_tests
	status=0; \
	SHOAL_NONINTERACTIVE=1 $(1)/bin/python -m pytest $(TESTS) -q -p no:cacheprovider \
		--timeout=$(TEST_TIMEOUT_S) $(PYTEST_ARGS) || status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; \
	nb_status=0; \
	PATH='$(abspath $(1))/bin':"$$PATH" SHOAL_NONINTERACTIVE=1 $(1)/bin/python -m pytest --nbval-lax --nbval-current-env notebooks \
		--nbval-sanitize-with tests/notebooks/nbval_sanitize.cfg \
		-q -p no:cacheprovider --timeout=$(TEST_TIMEOUT_S) || nb_status=$$?; \
	if [ $$nb_status -ne 0 ]; then echo "make test: the notebooks failed under nbval" >&2; fi; \
	if [ $$status -ne 0 ]; then exit $$status; fi; \
	exit $$nb_status
endef

venv: $(VENV_STAMP) $(VENV)/$(LAB_SETTINGS_FILE)

$(VENV_STAMP):
	$(call new_venv,$(VENV))
	cp $(LOCK) $(VENV)/requirements.txt
	$(call fill_venv,$(VENV))
	touch $@

# A venv built before the settings were (or with other ones) gets them without a rebuild.
$(VENV)/$(LAB_SETTINGS_FILE): Makefile | $(VENV_STAMP)
	$(call write_lab_settings,$(VENV))

# The tutorials: notebooks/01_quickstart, 02_remote_cells, 03_cluster_views. The README's quick
# start is tested by tests/unit/test_packaging.py; the notebooks by nbval in `make test`.
# JupyterLab refuses to run as root without --allow-root, and containers and CI machines run as
# root. tests/unit/test_make_lab.py runs this recipe (with VENV_STAMP= so it builds nothing).
lab: $(VENV_STAMP) $(VENV)/$(LAB_SETTINGS_FILE)
	@echo "make lab: JupyterLab on notebooks/ (start with 01_quickstart.ipynb); Ctrl-C to stop" >&2
	$(VENV)/bin/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

lint: $(VENV_STAMP)
	$(call run_lint,$(VENV))

# Lint first: a style or type regression fails in seconds, before the suite's minutes.
test: lint $(VENV_STAMP) $(VENV)/$(LAB_SETTINGS_FILE) browser
	$(call run_tests,$(VENV))

# Chromium for tests/browser, from Debian's packages (this needs root, as CI and the project's machines run).
browser:
	@if [ ! -x $(CHROMIUM) ]; then \
		echo "make: $(CHROMIUM) is missing: installing Debian's chromium for tests/browser" >&2; \
		if [ "$$(id -u)" -ne 0 ]; then echo "make: run as root, or apt-get install chromium" >&2; exit 1; fi; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	fi

# Each tutorial runs top to bottom in a fresh kernel of .venv (JUPYTER_PATH puts its kernel spec
# first), live, as a user's Run All: the views end as the static summaries of their last state,
# which is what is stored (and what tests/notebooks/test_stored_outputs.py compares with a fresh
# run). No timing metadata, so a re-run changes only what the cells show.
notebooks: $(VENV_STAMP)
	for notebook in notebooks/*.ipynb; do \
		env -u SHOAL_NONINTERACTIVE JUPYTER_PATH=$(VENV)/share/jupyter $(VENV)/bin/jupyter nbconvert --to notebook \
			--execute --inplace --ExecutePreprocessor.timeout=$(NOTEBOOK_TIMEOUT_S) \
			--ExecutePreprocessor.record_timing=False --ExecutePreprocessor.store_widget_state=False "$$notebook"; \
	done

# The gallery: the browser tier saves what each tutorial looks like after Run All and after
# save-and-reopen (tests/browser/test_tutorials.py).
screenshots: $(VENV_STAMP) $(VENV)/$(LAB_SETTINGS_FILE) browser
	SHOAL_SCREENSHOTS_DIR=$(CURDIR)/docs/screenshots $(VENV_PYTHON) -m pytest tests/browser -q -p no:cacheprovider \
		--timeout=$(TEST_TIMEOUT_S)

chaos: $(VENV_STAMP)
	SHOAL_NONINTERACTIVE=1 SHOAL_CHAOS_SCALE=$(CHAOS_SCALE) SHOAL_CHAOS_REPORT=$(CHAOS_REPORT) \
		$(VENV_PYTHON) -m pytest tests/reliability -q -p no:cacheprovider \
		--timeout=$(CHAOS_TIMEOUT_S) -o faulthandler_timeout=$(CHAOS_TIMEOUT_S) $(PYTEST_ARGS)

$(UV_STAMP):
	rm -rf $(TOOLS_VENV)
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install 'uv==$(UV_VERSION)'
	touch $@

# Written next to the lock and checked before it replaces it, so a refused result leaves the lock as it was.
lock: $(UV_STAMP)
	if [ -f $(LOCK) ]; then cp $(LOCK) $(LOCK).new; fi
	$(call resolve,$(LOCK).new,$(LOCK_UPGRADE))
	mv $(LOCK).new $(LOCK)
	@echo "make lock: $(LOCK) updated; git diff $(LOCK) shows what changed, make test tests it" >&2

# The same lint and suite against the newest releases the ranges allow: the check that comes
# before `make lock` takes them in (see the README's developer notes). Rebuilt on every run.
test-latest: $(UV_STAMP) browser
	$(call new_venv,$(LATEST_VENV))
	$(call resolve,$(LATEST_VENV)/requirements.txt,--upgrade)
	@echo "make test-latest: pins that differ from the lock (< $(LOCK), > newest):"; \
	{ diff $(LOCK) $(LATEST_VENV)/requirements.txt || true; } | grep '^[<>] [^ #]' || echo "  none"
	$(call fill_venv,$(LATEST_VENV))
	$(call run_lint,$(LATEST_VENV))
	$(call run_tests,$(LATEST_VENV))

# pyright cannot follow the editable install's import hook (shoal -> runtime/, ...): this lays the
# package out as symlinks in build/pyright/, which [tool.pyright] extraPaths names. Run before pyright.
pyright-paths:
	$(PYTHON) .ci/pyright_paths.py

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache $(LOCK).new
	find . \( -path ./.git -o -path './.venv*' -o -name node_modules \) -prune \
		-o -type d -name __pycache__ -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) $(LATEST_VENV) $(TOOLS_VENV)

-include benchmarks/bench.mk
ifneq ($(wildcard benchmarks/bench.mk),)
bench bench-smoke: $(VENV_STAMP)
endif
