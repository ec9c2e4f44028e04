# Two set-up commands: `make demo` and `make test`. Each creates .venv on a fresh machine,
# installs the CPU build of torch when no torch is importable, installs posneg, then runs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_CPU := torch==2.13.0

.PHONY: demo test venv install install-dev lint typecheck speed clean

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	touch $@

# torch: GPU users bring their own; otherwise take the CPU build (a bare `torch` pulls CUDA).
$(VENV)/.torch: $(VENV)/.created
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install --quiet $(TORCH_CPU)
	touch $@

$(VENV)/.installed: $(VENV)/.torch pyproject.toml
	$(PIP) install --quiet -e ".[all]"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.torch pyproject.toml
	$(PIP) install --quiet -e ".[dev]"
	touch $@ $(VENV)/.installed

venv: $(VENV)/.created
install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	$(VENV)/bin/posneg demo --out runs/demo

# One BLAS/OpenMP thread per xdist worker: two workers on two cores, no oversubscription.
test: $(VENV)/.installed-dev
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 -q

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy

typecheck: $(VENV)/.installed-dev
	$(VENV)/bin/mypy

# Speed and memory against peer libraries (benchmarks/*.py, figures in docs/benchmarks.md); not
# `posneg bench`, which measures quality (accuracy, recall) on embedded data. Slow: minutes each.
# One script: make speed ONLY=mixing
ONLY ?= contrastive oversampling mixing augment corruptions knn mining
speed: $(VENV)/.installed-dev
	for name in $(ONLY); do $(PY) benchmarks/$$name.py || exit 1; done

clean:
	rm -rf $(VENV) runs build dist *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
