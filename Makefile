# The book's two commands (see README.md):
#   make test   create .venv if missing, install, ruff, unit tests + nbval over every chapter
#   make book   create .venv if missing, install, re-execute every chapter, quarto render -> _book/
# Helpers: make execute | make nbval [NB=chapters/01_x.ipynb] | make figures | make lint | make clean
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Chapters run headless (concrete.monitor: text log + one static figure, no live redraws that
# nbval would record) and on the CPU unless CONCRETE_DEVICE says otherwise: the stored outputs
# nbval compares against are CPU outputs. Notebook kernels inherit these variables.
CONCRETE_DEVICE ?= cpu
export CONCRETE_DEVICE
export PYTHONHASHSEED := 0

# pytest + nbval: tests/ and every chapter listed in _quarto.yml (scripts/execute_chapters.py
# --list). --nbval-current-env: the kernel is this venv's python. tests/conftest.py also drops
# stderr and widget outputs from the comparison; tests/sanitize.cfg masks addresses, devices,
# timings and progress bars.
NBVAL_FLAGS := --nbval --nbval-current-env --nbval-sanitize-with tests/sanitize.cfg \
	--nbval-kernel-startup-timeout 180
LINT_PATHS := src tests benchmarks scripts
QUARTO ?= $(shell command -v quarto 2>/dev/null || { test -x $(VENV)/bin/quarto && echo $(VENV)/bin/quarto; })

.PHONY: help install lint test nbval execute book figures clean

help:
	@sed -n '1,4p' Makefile | sed 's/^# \{0,1\}//'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(VENV)/bin/ruff check $(LINT_PATHS)

test: export CONCRETE_HEADLESS := 1
test: install
	$(VENV)/bin/ruff check $(LINT_PATHS)
	chapters="$$($(PY) scripts/execute_chapters.py --list)" && \
	$(PY) -m pytest tests $$chapters $(NBVAL_FLAGS)

# nbval over one chapter (NB=...) or all; tests/test_book.py comes along (fast, and it loads
# tests/conftest.py, which nbval's comparison rules live in).
nbval: export CONCRETE_HEADLESS := 1
nbval: install
	chapters="$(if $(NB),$(NB),$$($(PY) scripts/execute_chapters.py --list))" && \
	$(PY) -m pytest tests/test_book.py $$chapters $(NBVAL_FLAGS)

# Re-execute chapters in place (all listed, or NB=...) and print seconds per chapter.
execute: export CONCRETE_HEADLESS := 1
execute: install
	$(PY) scripts/execute_chapters.py $(NB)

book: install
	$(MAKE) execute
	@if [ -z "$(QUARTO)" ]; then \
	  echo ""; \
	  echo "The chapters were executed, but 'quarto' is not installed, so the site was not rendered."; \
	  echo "Install Quarto (>= 1.4) with one of:"; \
	  echo "  conda env create -f environment.yml            # conda-forge 'quarto' + this package"; \
	  echo "  $(PY) -m pip install -e '.[site]'   # the quarto-cli wheel (needs network)"; \
	  echo "  https://quarto.org/docs/get-started/           # installers for every platform"; \
	  echo "then run 'make book' again."; \
	  exit 1; \
	fi
	QUARTO_PYTHON="$(abspath $(PY))" $(QUARTO) render
	@# each chapter page links to its notebook; make sure it sits next to the page
	@for nb in $$($(PY) scripts/execute_chapters.py --list); do \
	  mkdir -p _book/$$(dirname $$nb) && cp -p $$nb _book/$$nb; done
	@echo "The book is in _book/index.html"

figures: install
	$(PY) scripts/make_figures.py

clean:
	rm -rf _book .quarto
