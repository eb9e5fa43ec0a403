# Two commands for a new user: `make run` and `make test`. Both need only Python 3.11 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)
PORT ?= 8000

.PHONY: install deps run test lint css check-deploy clean

$(STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

# A local trial: debug mode, SQLite under var/, in-memory channel layer, ORM broker.
run: export PANEL_DEBUG ?= 1
run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py bootstrap_admin
	$(BIN)/python manage.py runpanel --port $(PORT)

# The Debian packages the integration and browser tests drive (installed when run as root).
deps:
	./scripts/deps.sh

test: deps install
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
