# House way: a venv in .venv. `make run` sets everything up and starts the main job on
# embedded defaults; `make test` runs the whole suite.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/kestrel demo

test: $(STAMP)
	$(BIN)/ruff check kestrel tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/klv.py
	$(BIN)/python bench/ped.py
	$(BIN)/python bench/fanout.py

clean:
	rm -rf $(VENV) kestrel-data build *.egg-info
