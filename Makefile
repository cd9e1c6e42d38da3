# The README's two commands: `make demo` and `make test`. Both install into .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

WHEEL_VENV := .venv-wheel
# A CPU-only machine: `make install TORCH_INDEX=https://download.pytorch.org/whl/cpu` installs
# PyTorch's CPU build first (instead of about 6 GB of CUDA wheels). Empty: torch comes from PyPI.
TORCH_INDEX ?=
TORCH_FIRST = $(if $(TORCH_INDEX),pip install --quiet -c requirements/constraints.txt torch torchvision --index-url $(TORCH_INDEX))

.PHONY: install test test-slow wheel-check docs demo figures experiment-context experiment-context-deep lint clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(if $(TORCH_INDEX),$(BIN)/$(TORCH_FIRST))
	$(BIN)/pip install --quiet -c requirements/constraints.txt -e ".[dev,export,openvino,benchmark,mlflow,wandb,serve,docs,timm,cityscapes,video]"
	touch $(STAMP)

# The fast tier (under 8 minutes on 2 cores); `make test-slow` runs the rest (CI runs both). Both
# run on TEST_WORKERS pytest-xdist workers, a test file at a time each (one thread per worker:
# tests/conftest.py). Each prints its 25 slowest tests; pytest's exit code 5 (no tests collected)
# is not a failure.
TEST_WORKERS ?= 2
test: install
	$(BIN)/python -m pytest -q -m "not slow" -n $(TEST_WORKERS) --dist loadfile --durations=25; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

test-slow: install
	$(BIN)/python -m pytest -q -m slow -n $(TEST_WORKERS) --dist loadfile --durations=25; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

# Build the wheel, install it (not -e) into a virtualenv of its own with the pinned dependencies
# (pip's cache makes a second run quick), and run atrous from a folder outside the checkout.
wheel-check: install
	rm -rf dist
	$(BIN)/pip wheel --quiet --no-deps --wheel-dir dist .
	test -x $(WHEEL_VENV)/bin/python || $(PYTHON) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/pip install --quiet --upgrade pip
	$(if $(TORCH_INDEX),$(WHEEL_VENV)/bin/$(TORCH_FIRST))
	$(WHEEL_VENV)/bin/pip install --quiet -c requirements/constraints.txt "$$(ls dist/atrous-*.whl)[export,openvino,serve,timm,cityscapes,video]"
	$(WHEEL_VENV)/bin/pip install --quiet --force-reinstall --no-deps dist/atrous-*.whl
	scripts/wheel_smoke.sh $(WHEEL_VENV)/bin

# The documentation site in site/ (tests/test_docs_site.py builds it in strict mode too).
docs: install
	$(BIN)/mkdocs build --strict

demo: install
	$(BIN)/atrous demo

# The README's analysis figures (docs/analysis/*.png + *.json) from the model `make demo` trains.
figures: install
	@test -f runs/demo/checkpoints/best.ckpt || { echo "no runs/demo/checkpoints/best.ckpt: run make demo first"; exit 1; }
	$(BIN)/atrous analyze all --checkpoint runs/demo/checkpoints/best.ckpt --output docs/analysis --overwrite

# FCN vs ASPP vs DenseASPP on the synthetic streets with a local backbone (ResNet-18 cut after
# layer2), so that context has to come from the head; one run per head and seed (about 8 minutes
# each on 2 CPU cores). SEEDS=0 for a single round.
SEEDS ?= 0 1 2
experiment-context: install
	$(BIN)/atrous compare experiments/synthetic_context_local/fcn \
		experiments/synthetic_context_local/aspp \
		experiments/synthetic_context_local/denseaspp \
		--output runs/synthetic_context_local --classes car truck bus person --seeds $(SEEDS)

# The same heads on the demo's full ResNet-18, whose own receptive field covers the image.
experiment-context-deep: install
	$(BIN)/atrous compare experiments/synthetic_context/fcn \
		experiments/synthetic_context/aspp \
		experiments/synthetic_context/denseaspp \
		--output runs/synthetic_context --classes car truck bus person --seeds $(SEEDS)

lint: install
	$(BIN)/ruff check src tests

clean:
	rm -rf $(VENV) $(WHEEL_VENV) build dist site src/*.egg-info .pytest_cache
