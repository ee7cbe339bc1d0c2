# Two entry points for a newcomer: `make demo` (install + main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install demo test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e ".[test,eval]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m tunableconv demo

test: install
	$(PY) -m pytest -q -x --durations=15

bench: install
	$(PY) benchmarks/overhead.py --json results/overhead.json

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
