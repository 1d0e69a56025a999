# Two entry points for a fresh machine: `make demo` and `make test`.
# Each creates .venv and installs the package into it when needed.
# `make test-min` tests the oldest supported dependencies in .venv-min, and
# `make lint` runs ruff.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
VENV_MIN := .venv-min
PY_MIN := $(VENV_MIN)/bin/python
STAMP_MIN := $(VENV_MIN)/.installed

.PHONY: demo test test-min lint docs bench clean pretrained

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e ".[offline,dev,dask]"
	touch $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) examples/demo_synthetic_quality.py

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -n 2

# The pure-Python dependencies at exactly their floors (constraints-min.txt,
# equal to pyproject.toml's), torch as in constraints.txt; the demo extra
# (scikit-image, matplotlib: the synthetic data set and the benchmark plots) at
# whatever versions fit those. The docs build (Sphinx) and the example scripts
# are left out: they test the documentation, not the floors.
$(STAMP_MIN): pyproject.toml constraints.txt constraints-min.txt
	test -x $(PY_MIN) || $(PYTHON) -m venv $(VENV_MIN)
	$(PY_MIN) -m pip install --quiet -c constraints.txt -c constraints-min.txt -e ".[offline,demo]" "pytest>=7" "pytest-xdist>=3.5"
	touch $(STAMP_MIN)

test-min: $(STAMP_MIN)
	HF_HUB_OFFLINE=1 $(PY_MIN) -m pytest -q -n 2 --ignore=tests/test_docs.py --ignore=tests/test_examples.py

# Rebuild the shipped ready model from ../shared/data (BIQ2021, 6,000 photographs): choose by the
# two protocols, refit, write sklearn_mlsp/pretrained/models/. About 1-2 h on 2 CPU cores.
# The results go to pretrained_out/ (the committed record is benchmarks/results/pretrained/).
PRETRAINED_CACHE ?= ../biq6000.store
PRETRAINED_OUT ?= pretrained_out
pretrained: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) benchmarks/pretrained.py --cache $(PRETRAINED_CACHE) --out $(PRETRAINED_OUT) --time-extraction
	HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 $(PY) benchmarks/pretrained.py --cache $(PRETRAINED_CACHE) --out $(PRETRAINED_OUT)
	HF_HUB_OFFLINE=1 $(PY) benchmarks/pretrained.py --cache $(PRETRAINED_CACHE) --out $(PRETRAINED_OUT) --ship

lint: $(STAMP)
	$(VENV)/bin/ruff check .

docs: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m sphinx -W --keep-going -b html docs docs/_build/html

clean:
	rm -rf $(VENV) $(VENV_MIN) docs/_build docs/auto_examples demo_output
