# Two entry points for a newcomer: `make demo` (install + main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install demo test bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# the demo needs the core plus scikit-image (it ships the sample photo)
$(VENV)/.installed-demo: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e ".[demo]"
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e ".[test,eval]"
	touch $@ $(VENV)/.installed-demo

install: $(VENV)/.installed-test

demo: $(VENV)/.installed-demo
	$(PY) -m tunableconv demo

test: $(VENV)/.installed-test
	$(PY) -m pytest -q -x --durations=15

bench: $(VENV)/.installed-test
	$(PY) benchmarks/overhead.py --json results/overhead.json

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
