# gwstream: `make demo` runs the embedded default end to end, `make test` the tests.
# Both create (or reuse) .venv and install the pinned dependencies first.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.gwstream-installed

.PHONY: demo test test-slow bench background docs venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test,bench]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/gwstream demo --config configs/demo.toml

test: $(STAMP)
	$(PY) -m pytest

test-slow: $(STAMP)
	$(PY) -m pytest -m slow

bench: $(STAMP)
	$(PY) benchmarks/bench_ingest.py

# docs/config.md is generated from the setting(doc=...) declarations of daemon/config.py
# (tests/test_docs.py fails when it is stale).
docs: $(STAMP)
	$(PY) docs/make_config_doc.py > docs/config.md

# The time-slid background shipped next to the default model (`gwstream run` and the demo
# start from it): an hour of simulated noise, 1000 slides = about 1000 hours of background,
# with the default conditioning, as configs/online.toml and configs/demo.toml (configs/background.toml).
background: $(STAMP)
	mkdir -p out/background
	$(VENV)/bin/gwstream simulate --duration 3600 --seed 500 --sample-rate 2048 --out out/background/noise-1h.hdf --no-progress
	$(VENV)/bin/gwstream search out/background/noise-1h.hdf out/background/triggers.h5 --slides 1000 \
		--config configs/background.toml --background-out models/weights/default-background.h5 --no-progress

clean:
	rm -rf $(VENV) out build *.egg-info .pytest_cache .hypothesis
