# dlproxy — make run · make test · make bench · make lint
# Finds a Python >= 3.12 by itself (PYTHON=... wins) and builds .venv from it.
SHELL := /bin/bash
VENV  := .venv
BIN   := $(VENV)/bin
PY    := $(BIN)/python

define find_python
for c in "$(PYTHON)" python3.13 python3.12 python3 \
         $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -rV) \
         /usr/local/bin/python3.13 /usr/local/bin/python3.12 /usr/bin/python3.13 /usr/bin/python3.12; do \
  [ -n "$$c" ] || continue; \
  if "$$c" -c 'import sys, venv; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; then \
    echo "$$c"; exit 0; fi; \
done; echo "no Python >= 3.12 found; set PYTHON=/path/to/python3.12+" >&2; exit 1
endef

.PHONY: install run test bench lint clean
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@set -e; py=$$($(find_python)); echo "using $$py ($$($$py -V))"; \
	  [ -x $(PY) ] || "$$py" -m venv $(VENV); \
	  $(PY) -m pip install -q --upgrade pip; \
	  $(PY) -m pip install -q -e '.[fast,test]'
	@touch $@

run: install
	$(BIN)/dlproxy run --listen-host 127.0.0.1 --listen-port 8080 --metrics-host 127.0.0.1 --metrics-port 9464

test: install
	@bash tests/tools/ensure-system-deps.sh
	$(BIN)/python -m pytest -n 2 --dist loadgroup

bench: install
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/extract.py
	DLPROXY_BACKEND=pyahocorasick $(BIN)/python bench/extract.py
	$(BIN)/python bench/stream.py
	$(BIN)/python bench/proxy.py

lint: install
	$(BIN)/ruff check addons tests bench

clean:
	rm -rf $(VENV) build *.egg-info addons/*.egg-info .pytest_cache

# The kustomize component keeps a copy of the built-in profile (kustomize reads no file outside its root);
# tests/test_deploy.py fails until the copy matches.
