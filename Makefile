# House way: a venv in .venv. `make run` sets everything up and starts the main job on
# embedded defaults; `make test` runs the whole suite.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean vendor

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
	$(BIN)/python bench/live.py
	$(BIN)/python bench/fanout.py
	$(BIN)/python bench/workbench.py
	$(BIN)/python bench/cluster.py

# Browser libraries for the workbench, from npm (pinned in package-lock.json), copied with their
# licence into the package; the copies are committed, so `make run`/`make test` never need npm.
WB_VENDOR := kestrel/workbench/static/vendor
vendor:
	npm ci --ignore-scripts --no-audit --no-fund
	rm -rf $(WB_VENDOR)/maplibre-gl && mkdir -p $(WB_VENDOR)/maplibre-gl
	cp node_modules/maplibre-gl/dist/maplibre-gl.mjs node_modules/maplibre-gl/dist/maplibre-gl-worker.mjs \
	   node_modules/maplibre-gl/dist/maplibre-gl.css node_modules/maplibre-gl/LICENSE.txt $(WB_VENDOR)/maplibre-gl/
	node -e 'console.log(require("./node_modules/maplibre-gl/package.json").version)' > $(WB_VENDOR)/maplibre-gl/VERSION

clean:
	rm -rf $(VENV) kestrel-data build *.egg-info
