# Two entry points for a fresh machine: `make demo` and `make test`.
# Each creates .venv and installs the package into it when needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test docs bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e ".[offline,dev]"
	touch $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) examples/demo_synthetic_quality.py

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

docs: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m sphinx -W --keep-going -b html docs docs/_build/html

clean:
	rm -rf $(VENV) docs/_build docs/auto_examples demo_output
