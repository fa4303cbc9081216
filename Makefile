PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo lint bench-deps clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

test: $(STAMP) bench-deps
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -p no:cacheprovider

demo: $(STAMP)
	$(BIN)/edgecdn demo

lint: $(STAMP)
	$(BIN)/ruff check .

# nginx and wrk for `edgecdn bench serve` (system packages; needs root or sudo).
bench-deps:
	@command -v nginx >/dev/null && command -v wrk >/dev/null || \
	  ( (command -v sudo >/dev/null && [ "$$(id -u)" != 0 ] && S=sudo || S=""; \
	    $$S apt-get update -q && $$S env DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light wrk) )

clean:
	rm -rf $(VENV) build *.egg-info
