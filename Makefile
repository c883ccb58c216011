# gwstream: `make demo` runs the embedded default end to end, `make test` the tests.
# Both create (or reuse) .venv and install the pinned dependencies first.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.gwstream-installed

.PHONY: demo test test-slow bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/gwstream demo --config configs/demo.toml

test: $(STAMP)
	$(PY) -m pytest

test-slow: $(STAMP)
	$(PY) -m pytest -m slow

bench: $(STAMP)
	$(PY) benchmarks/bench_ingest.py

clean:
	rm -rf $(VENV) out build *.egg-info .pytest_cache .hypothesis
