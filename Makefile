# Quick start: `make demo` (the whole chain on digits) and `make test`.
# Both bootstrap .venv with a Python 3.10 and the 'lava' extra on first use.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: venv demo test bench clean lock

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt scripts/bootstrap-venv.sh
	VENV=$(VENV) bash scripts/bootstrap-venv.sh

demo: venv
	$(VENV)/bin/fastsnn-demo

test: venv
	$(PY) -m pytest -q

# benchmarks/results/*.json and the README table; reduced by default (≤ 30 min on 2 cores), FULL=1 for the full sets
bench: venv
	FULL=$(FULL) $(PY) -m benchmarks.run

# Refresh constraints.txt (the exact versions installed) from what the registry serves today
lock:
	bash scripts/lock.sh

clean:
	rm -rf build .pytest_cache
