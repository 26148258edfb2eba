# Two commands on a fresh machine: `make demo` and `make test`. Everything else builds on `setup`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
LSTMVIZ := $(VENV)/bin/lstmviz
# The CPU wheel of this exact version lies on local disk; a bare `torch` would pull a CUDA build.
TORCH_PIN := torch==2.13.0
STAMP := $(VENV)/.lstmviz-setup
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: setup demo test lint typecheck dot browser clean-venv figures bench fuzz

setup: $(STAMP) dot

$(PY):
	$(PYTHON) -m venv $(VENV)

# Re-run the install only when the project's dependencies change: the second `make` is instant.
$(STAMP): pyproject.toml | $(PY)
	@echo "lstmviz setup: installing $(TORCH_PIN) and the package into $(VENV)/"
	$(PIP) install "$(TORCH_PIN)" 2> >(grep -v 'is ignored: it is neither' >&2)
	$(PIP) install -e '.[test]' 2> >(grep -v 'is ignored: it is neither' >&2)
	@touch $@

# Graphviz's `dot` renders the cell and unrolled-time diagrams.
dot:
	@if command -v dot >/dev/null 2>&1; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "lstmviz setup: installing Graphviz (apt-get install -y graphviz)"; \
	  (apt-get install -y -q graphviz >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q graphviz >/dev/null)) \
	  || { echo "lstmviz setup: apt-get could not install graphviz" >&2; exit 1; }; \
	else \
	  echo "lstmviz setup: the Graphviz 'dot' program is missing. Install it (Debian/Ubuntu: sudo apt-get install graphviz; macOS: brew install graphviz) and run make again." >&2; exit 1; \
	fi

# Headless Chromium for the browser test; without root the test is skipped with a reason.
browser:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "lstmviz setup: installing Chromium for the browser test"; \
	  (apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null)) \
	  || echo "lstmviz setup: could not install chromium; the browser test will be skipped" >&2; \
	else echo "lstmviz setup: chromium missing and not root; the browser test will be skipped" >&2; fi

demo: setup
	$(LSTMVIZ) report sample_models/charlm.pt -o report.html

# Every figure of every sample model as a publication-ready PDF, plus figs/figures.json.
SAMPLE_MODELS := sample_models/charlm.pt sample_models/digitsum.pt sample_models/sine.pt sample_models/gru_digitsum.safetensors
figures: setup
	$(LSTMVIZ) figures $(SAMPLE_MODELS) -o figs/ --format pdf --width double --jobs 2

# CI (.ci/run) runs this: the type check first (seconds; a contract broken between stages fails here), then the suite.
test: setup browser typecheck
	$(PY) -m pytest -q

# The property-based tests (loader, inputs, tracer) with many more examples than CI runs.
fuzz: setup
	LSTMVIZ_FUZZ_EXAMPLES=3000 $(PY) -m pytest -q -k "fuzz or hypothesis" tests/test_security.py tests/test_inputs.py tests/test_tracing.py

# Trace cost against the plain forward and a per-step Python loop; results go in benchmarks/RESULTS.md.
bench: setup
	$(PY) benchmarks/bench.py

lint: setup typecheck
	$(VENV)/bin/ruff check lstmviz_cli tests sample_models benchmarks

# mypy strict (configured in pyproject.toml) on the parts of the package whose contracts are typed.
# Issue 15 types the package folder by folder: a folder joins TYPECHECKED when mypy is clean on it, and
# once every folder is, TYPECHECKED becomes empty and mypy checks the whole package (pyproject's `files`).
TYPECHECKED ?= lstmviz_cli/analysis lstmviz_cli/explain lstmviz_cli/commands lstmviz_cli/api lstmviz_cli/cli.py lstmviz_cli/cli_options.py
typecheck: setup
	$(VENV)/bin/mypy $(TYPECHECKED)

clean-venv:
	rm -rf $(VENV)
