# The README's commands. A fresh clone needs only `make demo` and `make test`: both set themselves up.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PROJECTS := $(sort $(wildcard p[0-9][0-9]_*))
STAMP := $(VENV)/.dlm-installed

.PHONY: setup install data demo reproduce fullstack test browser services bench lint clean distclean

setup: install data

install: $(STAMP)

$(STAMP): requirements.txt core/pyproject.toml $(wildcard p[0-9][0-9]_*/pyproject.toml)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation \
		-e core $(addprefix -e ,$(PROJECTS))
	@touch $(STAMP)

data: $(STAMP)
	$(BIN)/dlm data fetch

demo: setup
	bash scripts/demo.sh

# every project's default command(s) in order -> results/summary.{md,json}; resumable (finished projects are
# skipped, a killed trainer continues). Some projects only: make reproduce P="p01_autodiff p02_optimizers"
# JOBS: a project's independent steps side by side (p05's and p06's three one-thread seeds share 2 cores)
JOBS ?= 3
reproduce: setup
	$(BIN)/dlm reproduce --jobs $(JOBS) $(P)

# train -> export -> serve -> shifting stream -> drift alert -> retrain -> gated swap -> recovery (quick preset)
fullstack: setup
	$(BIN)/run_fullstack --preset quick

test: setup browser services
	$(BIN)/python -m pytest

# the dashboard's browser test runs Debian's chromium (about 30 s to install as root; skipped, saying so, without it)
browser:
	@command -v chromium >/dev/null || { apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 \
		|| { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; } \
		|| echo "chromium could not be installed: the dashboard's browser test will be skipped"; }

# the store's tests and the replica test start a real PostgreSQL and HAProxy from Debian's packages (each test
# skipped, saying so, without them); where podman is (.ci/run installs it), podman-compose for the compose test
services:
	@for pkg in postgresql:pg_ctl haproxy:haproxy; do name=$${pkg%%:*}; exe=$${pkg##*:}; \
		command -v $$exe >/dev/null || test -x /usr/sbin/$$exe || ls /usr/lib/postgresql/*/bin/$$exe >/dev/null 2>&1 \
		|| apt-get install -y -qq --no-install-recommends $$name >/dev/null 2>&1 \
		|| { apt-get update -qq && apt-get install -y -qq --no-install-recommends $$name >/dev/null; } \
		|| echo "$$name could not be installed: the tests that need it will be skipped"; done
	@if command -v podman >/dev/null && ! command -v podman-compose >/dev/null; then \
		apt-get install -y -qq --no-install-recommends podman-compose >/dev/null 2>&1 \
		|| { apt-get update -qq && apt-get install -y -qq --no-install-recommends podman-compose >/dev/null; } \
		|| echo "podman-compose could not be installed: the compose test will be skipped"; fi

# -P: a bench named like its package (bench/p03_cnn.py) must not shadow the package on sys.path
bench: setup
	@set -e; for f in bench/*.py; do echo "== $$f"; $(BIN)/python -P $$f; done

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf runs artifacts .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
