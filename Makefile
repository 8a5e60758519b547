# One entry point for people and CI. `make test` is the README's test command.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: install serve test test-fast test-slow lint bench clean

$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first, pinned to the CPU build on local disk (a looser pin pulls a CUDA build).
	$(PIP) install --quiet -c constraints.txt torch==2.13.0
	$(PIP) install --quiet -c constraints.txt -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# `make serve PORT=8001 HOST=0.0.0.0` to listen elsewhere (0.0.0.0 needs an API key, always).
HOST ?= 127.0.0.1
PORT ?= 8000

serve: install
	$(VENV)/bin/ridgeline serve --host $(HOST) --port $(PORT)

test: install
	$(PY) -m pytest -q -m "not slow"
	$(PY) -m pytest -q -m slow

test-fast: install
	$(PY) -m pytest -q -m "not slow" -x

lint: install
	$(VENV)/bin/ruff check service tests bench examples
	$(VENV)/bin/mypy service
	$(VENV)/bin/lint-imports

bench: install
	$(PIP) install --quiet -c constraints.txt -e '.[dev,bench]'
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) data .pytest_cache
