# Every routine task of the orrery workspace. `make` alone lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
.ONESHELL:
.SHELLFLAGS := -euo pipefail -c

PACKAGES := orrery-interface parax-core lux-models ensemble-inference sbi-flows polymix-torch
# uv comes from PATH, or from the private tools directory that `ensure-uv` fills
# (tools/bootstrap_uv.sh: never pip-installs into the system Python).
UV_TOOLS_DIR ?= $(CURDIR)/.tools
BOOTSTRAP_PYTHON ?= python3
export PATH := $(UV_TOOLS_DIR)/bin:$(PATH)
UV ?= uv
PYTEST_FLAGS ?= -q -m "not slow"
# A package's own tests, the examples of its README (Sybil, see conftest.py) and its docstring
# examples (pytest --doctest-modules; flags in pyproject.toml), with only that package installed.
PKG_TEST = $(UV) run --isolated --locked --package $(1) --all-extras --group dev pytest \
	packages/$(1)/tests packages/$(1)/README.md packages/$(1)/src --doctest-modules $(PYTEST_FLAGS)

.PHONY: help ensure-uv sync lock fmt lint typecheck test test-integration check namespace-check \
	isolation-check build bench docs demo bump $(addprefix test-,$(PACKAGES))

help: ## List the targets
	@grep -E '^[a-zA-Z_%-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-20s\033[0m %s\n", $$1, $$2}'
	@echo "  test-<dist>          Run one distribution's tests alone: $(PACKAGES)"

ensure-uv: ## Make uv available (private .tools/ install when missing; system Python untouched)
	@UV_TOOLS_DIR="$(UV_TOOLS_DIR)" BOOTSTRAP_PYTHON="$(BOOTSTRAP_PYTHON)" sh tools/bootstrap_uv.sh

sync: ensure-uv ## Install every package and the dev tools into .venv from uv.lock
	$(UV) sync --all-packages --all-extras --locked

lock: ensure-uv ## Regenerate uv.lock from the pyproject files
	$(UV) lock

fmt: sync ## Format and auto-fix
	$(UV) run --locked ruff format .
	$(UV) run --locked ruff check --fix .

lint: sync ## ruff check, ruff format --check, import-linter contracts, declared dependencies
	$(UV) run --locked ruff check .
	$(UV) run --locked ruff format --check .
	$(UV) run --locked lint-imports
	$(UV) run --locked --no-sync python tools/check_dependencies.py

typecheck: sync ## pyright over every package's sources, held to tools/pyright_ratchet.json
	$(UV) run --locked --no-sync python tools/check_types.py

test: sync lint typecheck namespace-check ## Everything CI runs: lint, types, each package alone, integration, docs
	@for p in $(PACKAGES); do echo "=== $$p (isolated) ==="; $(call PKG_TEST,$$p); done
	$(MAKE) --no-print-directory test-integration
	$(MAKE) --no-print-directory docs

$(addprefix test-,$(PACKAGES)): test-%: ensure-uv ## (see help)
	$(call PKG_TEST,$*)

test-integration: sync ## Cross-package pipelines (tests-integration/), README.md and docs/ examples
	$(UV) run --locked pytest tests-integration README.md docs $(PYTEST_FLAGS)

namespace-check: ensure-uv ## No orrery/__init__.py in any source tree
	$(UV) run --locked --no-sync python tools/check_namespace.py --sources

check: ensure-uv build ## Namespace (sources and wheels) and isolation checks
	$(UV) run --locked --no-sync python tools/check_namespace.py --sources --wheels dist
	python3 tools/check_isolation.py --dist dist

build: ensure-uv ## Build the six wheels and sdists into dist/
	rm -rf dist
	$(UV) build --all-packages --no-sources --out-dir dist

bench: sync ## Run every package's benchmarks (ratios against in-run baselines)
	$(UV) run --locked python tools/run_benchmarks.py

docs: ensure-uv ## Build the documentation site strictly into site/, then check it (tools/check_docs.py)
	NO_MKDOCS_2_WARNING=1 $(UV) run --locked --all-packages --all-extras --group docs mkdocs build --strict
	$(UV) run --locked --no-sync python tools/check_docs.py --site site

demo: sync ## Run the stellar pipeline end to end (report + plots in demo-output/)
	$(UV) run --locked python docs/examples/stellar_pipeline.py $(DEMO_ARGS)

bump: ensure-uv ## Bump a version: make bump PKG=<dist> PART=patch|minor|major
	@test -n "$(PKG)" || { echo "usage: make bump PKG=<dist> PART=patch|minor|major"; exit 2; }
	$(UV) version --package $(PKG) --bump $(or $(PART),patch) --frozen
	$(UV) lock
	python3 tools/bump_version.py $(PKG)
