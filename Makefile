# The developer and user entry points. A fresh clone needs only `make demo` or `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The test environment pins a CPU torch; users keep their own (the hf extra does not pin it).
TORCH_PIN ?= torch==2.13.0

.PHONY: setup browser demo test lint bench gpu-check screenshot clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install "$(TORCH_PIN)"
	$(BIN)/pip install -e ".[hf,dev,bench]" "$(TORCH_PIN)"
	touch $(STAMP)

# Debian chromium for the browser tests (Playwright drives /usr/bin/chromium; it never downloads
# one) and tmux for the terminal test. Installed with apt-get when missing and run as root.
browser:
	@missing=""; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium chromium-driver"; \
	command -v tmux >/dev/null || missing="$$missing tmux"; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
		echo "installing$$missing (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else echo "note:$$missing not installed; the tests that need them are skipped"; fi

demo: setup
	$(BIN)/mudpuppy-monitor demo --port 5980

test: setup browser
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check mudpuppy_monitor callback tests bench
	$(BIN)/ruff format --check mudpuppy_monitor callback tests bench
	$(BIN)/mypy

# the package's bytecode compiled first, as an installed wheel has it: the timed starts then
# measure the daemon, not the compiler (editable installs, and PYTHONDONTWRITEBYTECODE, skip it)
bench: setup browser
	$(BIN)/python -m compileall -q mudpuppy_monitor callback
	$(BIN)/python -m bench

# refresh docs/screenshot.png (the README's picture) from the browser test's 1440x900 capture
screenshot: setup browser
	MUDPUPPY_UPDATE_SCREENSHOT=1 $(BIN)/python -m pytest -q tests/test_web_live.py -k screenshots

gpu-check: setup
	$(BIN)/python -m mudpuppy_monitor.gpu.check

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
