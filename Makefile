# The book's two commands (see README.md):
#   make test   create .venv if missing, install, ruff, unit tests + nbval over every chapter
#   make book   create .venv if missing, install, re-execute every chapter, quarto render -> _book/
# Helpers: make execute | make nbval [NB=chapters/01_x.ipynb] | make site | make figures | make lint | make clean
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
# Quarto: QUARTO if set (.ci/run sets it), else `quarto` on PATH, else .venv/bin/quarto. Exported
# so that the site tests (tests/test_site.py, tests/test_browser.py) render with the same one.
QUARTO ?= $(shell command -v quarto 2>/dev/null || { test -x $(VENV)/bin/quarto && echo $(VENV)/bin/quarto; })
export QUARTO
# `make book` without any Quarto installs the quarto-cli package into .venv with this command
# (on a reader's machine its build downloads the Quarto binary).
QUARTO_INSTALL ?= $(PY) -m pip install quarto-cli
# What `make execute` runs (scripts/execute_chapters.py; NB=... for one chapter).
EXECUTE ?= $(PY) scripts/execute_chapters.py $(NB)
# A publisher names the repository for the pages' "View source" / "Report an issue" links:
#   make book BOOK_REPO_URL=https://github.com/<owner>/<repo> [BOOK_REPO_BRANCH=main]
# Unset (the default), the pages have no repository links at all.
BOOK_REPO_URL ?=
BOOK_REPO_BRANCH ?= main

.PHONY: help install lint test nbval execute book site figures clean

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

# tests/ includes the site tests: they render the book once (quarto render --to html, into a
# temporary copy; no code runs) and check the HTML (test_site.py) and the pages in headless
# Chromium (test_browser.py). Without quarto or chromium they skip, saying so.
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
	$(EXECUTE)

book: install
	$(MAKE) execute
	$(MAKE) site

# Render the stored outputs into _book/ (Quarto only formats; it never runs code). Installs
# quarto-cli into .venv when there is no Quarto at all; if that fails, says how to install one.
site: install
	@quarto="$(QUARTO)"; \
	if [ -z "$$quarto" ]; then \
	  echo "No 'quarto' on PATH: installing the quarto-cli package into $(VENV) ($(QUARTO_INSTALL))"; \
	  if $(QUARTO_INSTALL) && [ -x "$(VENV)/bin/quarto" ]; then quarto="$(VENV)/bin/quarto"; fi; \
	fi; \
	if [ -z "$$quarto" ]; then \
	  echo ""; \
	  echo "The chapters were executed, but Quarto could not be installed, so the site was not rendered."; \
	  echo "Install Quarto (>= 1.5) with one of:"; \
	  echo "  conda env create -f environment.yml            # conda-forge 'quarto' + this package"; \
	  echo "  $(PY) -m pip install -e '.[site]'   # the quarto-cli wheel (needs network)"; \
	  echo "  https://quarto.org/docs/get-started/           # installers for every platform"; \
	  echo "then run 'make book' again (or 'make site' to render only)."; \
	  exit 1; \
	fi; \
	profile=""; \
	if [ -n "$(BOOK_REPO_URL)" ]; then \
	  printf 'book:\n  repo-url: "%s"\n  repo-branch: "%s"\n  repo-actions: [source, issue]\n' \
	    "$(BOOK_REPO_URL)" "$(BOOK_REPO_BRANCH)" > _quarto-repo.yml; \
	  profile=repo; \
	fi; \
	QUARTO_PROFILE="$$profile" QUARTO_PYTHON="$(abspath $(PY))" "$$quarto" render; status=$$?; \
	rm -f _quarto-repo.yml; \
	if [ $$status -eq 0 ]; then echo "The book is in _book/index.html"; fi; \
	exit $$status

figures: install
	$(PY) scripts/make_figures.py

clean:
	rm -rf _book .quarto
