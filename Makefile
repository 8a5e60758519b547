# One entry point for people and CI. `make test` is the README's test command.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: install serve test test-fast test-slow test-s3 test-spark lint bench clean

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
	$(PY) -m pytest -q -m "not slow and not s3 and not spark"
	$(PY) -m pytest -q -m "slow and not spark"
	$(MAKE) --no-print-directory test-s3
	$(MAKE) --no-print-directory test-spark

# Tests on a real S3-compatible server (SeaweedFS, started by the tests on loopback ports).
test-s3: install
	@start=$$(date +%s); $(PY) -m pytest -q -m s3; rc=$$?; \
	echo "s3 stage (SeaweedFS): $$(( $$(date +%s) - start )) s"; exit $$rc

# Tests on a real local Spark (local[2], one session per test session; needs Java 17): the fourth
# stage of `make test`.
test-spark: install
	@start=$$(date +%s); $(PY) -m pytest -q -m spark; rc=$$?; \
	echo "spark stage (local[2]): $$(( $$(date +%s) - start )) s"; exit $$rc

test-fast: install
	$(PY) -m pytest -q -m "not slow and not s3 and not spark" -x

lint: install
	$(VENV)/bin/ruff check service tests bench examples scripts
	$(VENV)/bin/mypy service tests scripts
	$(VENV)/bin/lint-imports

bench: install
	$(PIP) install --quiet -c constraints.txt -e '.[dev,bench]'
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) data .pytest_cache
