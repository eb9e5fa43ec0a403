# Two commands for a new user: `make run` and `make test`. Both need only Python 3.11 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)
PORT ?= 8000

.PHONY: install install-vps deps run test lint css check-deploy clean

# uv (from the package registry) installs the dependencies in seconds where pip takes
# minutes; pip is the fallback when uv cannot be installed. uv never downloads a Python.
# Bytecode is compiled at install (pip's default, not uv's): where PYTHONDONTWRITEBYTECODE
# is set, every process would otherwise compile Django and friends from source at start.
$(STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m uv --version >/dev/null 2>&1 || $(BIN)/python -m pip install -q uv || true
	if $(BIN)/python -m uv --version >/dev/null 2>&1; then \
	  UV_PYTHON_DOWNLOADS=never $(BIN)/python -m uv pip install -q --compile-bytecode --python $(BIN)/python -e ".[dev]"; \
	else $(BIN)/python -m pip install -q -e ".[dev]"; fi
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

# libvirt-python (the optional `vps` extra) has no wheel: it is built against libvirt-dev
# with a compiler, which `make deps` installs. `make run` never needs it (the portal then
# says libvirt support is not installed); `make test` does.
VPS_STAMP := $(VENV)/.installed-vps-$(shell cksum < pyproject.toml | cut -d' ' -f1)
$(VPS_STAMP): $(STAMP)
	if $(BIN)/python -m uv --version >/dev/null 2>&1; then \
	  UV_PYTHON_DOWNLOADS=never $(BIN)/python -m uv pip install -q --compile-bytecode --python $(BIN)/python -e ".[dev,vps]"; \
	else $(BIN)/python -m pip install -q -e ".[dev,vps]"; fi
	touch $(VPS_STAMP)

install-vps: $(VPS_STAMP)

# A local trial: debug mode, SQLite under var/, in-memory channel layer, ORM broker.
run: export PANEL_DEBUG ?= 1
# How to sign in is printed last, in a box; requests are not logged (runpanel --access-log).
run: install
	$(BIN)/python manage.py runpanel --migrate --bootstrap --port $(PORT)

# The Debian packages the integration and browser tests drive (installed when run as root).
deps:
	./scripts/deps.sh

# Tests run in parallel, a test file per worker at a time (its real-program fixtures start
# once); two workers per CPU, since the test processes themselves use about half the machine
# (the rest of the time they wait on nginx, BIND, libvirt, browsers and databases). The 25
# slowest are listed at the end (CI time stays well under 30 min). Files start in the order
# of collection, the longest first (tests/conftest.py SCHEDULE_FIRST), not xdist's order by
# number of tests, which started the few-test long files last.
# PYTEST_ARGS="-n0 tests/unit/test_x.py" runs one file serially.
TEST_WORKERS ?= $(shell echo $$(( $$(nproc) * 2 )))
PYTEST_ARGS ?= -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=25
test: deps install install-vps
	$(BIN)/python -m compileall -q -j 0 -x "/(\.venv|node_modules|var|\.git)/" . >/dev/null
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Rebuild static/css/panel.css (committed, so running never needs Node).
css:
	npm install --no-audit --no-fund
	npm run css

clean:
	rm -rf $(VENV) var node_modules
