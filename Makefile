# Two commands for a fresh machine:  make run  (install + serve the committed model)  and  make test
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench train clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/deepfake-api serve --host 127.0.0.1 --port 8000

test: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

bench: $(STAMP)
	command -v wrk >/dev/null || apt-get install -y -qq wrk
	$(BIN)/python -m bench.run

train: $(STAMP)
	$(BIN)/python -m deepfake_api.training.audit
	$(BIN)/python -m deepfake_api.training.split
	$(BIN)/python -m deepfake_api.training.train --out runs/main
	$(BIN)/python -m deepfake_api.training.calibrate --run runs/main --out models

clean:
	rm -rf $(VENV) build dist *.egg-info
