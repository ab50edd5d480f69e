# Benchmark targets; included by the top-level Makefile (`include benchmarks/bench.mk`).
# Every path is relative to the repository root: run make from there
# (standalone: `make -f benchmarks/bench.mk bench-ray-venv`).
#
#   bench-ray-venv  .venv-ray with Ray, the reference implementation (idempotent, stamp file)
#   bench           shoal vs Ray vs a bare multiprocessing baseline, full sizes
#   bench-smoke     shoal only, sizes shrunk ~100x (CI; under 60 s)

VENV ?= .venv
RAY_VENV ?= .venv-ray
RAY_VERSION ?= 2.60.0
BENCH_OUT ?= benchmarks/out/latest.json
BENCH_ARGS ?=

RAY_VENV_STAMP := $(RAY_VENV)/.bench-stamp-ray-$(RAY_VERSION)

.PHONY: bench bench-smoke bench-ray-venv

bench-ray-venv: $(RAY_VENV_STAMP)

$(RAY_VENV_STAMP):
	python3 -m venv $(RAY_VENV)
	$(RAY_VENV)/bin/pip install "ray==$(RAY_VERSION)" numpy psutil
	touch $@

bench: $(RAY_VENV_STAMP)
	$(VENV)/bin/python -m benchmarks.core --impl shoal --impl ray --impl mp \
		--ray-python $(RAY_VENV)/bin/python --out $(BENCH_OUT) $(BENCH_ARGS)

bench-smoke:
	$(VENV)/bin/python -m benchmarks.core --impl shoal --smoke --reps 1 --timeout-s 60 $(BENCH_ARGS)
