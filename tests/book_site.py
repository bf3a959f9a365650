"""The rendered book as a test artefact: find Quarto and Chromium, render, serve, list pages.

Used by the session fixtures in ``tests/conftest.py`` (``rendered_site``, ``site_server``,
``browser``) and by ``tests/test_site.py`` / ``tests/test_browser.py``. Everything is driven by
``_quarto.yml``: a chapter added there is rendered and checked with no change here.

Tools are looked up, in order:

* Quarto: ``$QUARTO`` (``.ci/run`` and the Makefile set it), ``quarto`` on ``PATH``, then
  ``.venv/bin/quarto`` (the ``quarto-cli`` wheel);
* Chromium: ``$CHROMIUM``, then ``chromium`` / ``chromium-browser`` on ``PATH`` (Debian's
  ``chromium`` package), driven by Playwright for Python (no browser download);
* MathJax 3 for the browser tests: ``$CONCRETE_MATHJAX`` (a folder holding ``es5/``), else
  an npm copy of ``mathjax@3`` installed once into ``~/.cache/concrete/npm``.

Missing tools skip the tests with the reason, except when ``CONCRETE_SITE_TESTS=required``
(``.ci/run`` sets it), where a missing tool is a failure: CI must never pass by skipping.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: What the book needs to render (everything _quarto.yml refers to).
BOOK_PATHS = (
    ".gitignore",  # Quarto adds /.quarto/ to it unless it is there: a dirty clone
    "_quarto.yml",
    "index.qmd",
    "references.qmd",
    "references.bib",
    "chapters",
    "figures",
    "filters",
    "styles",
)
#: Where Quarto's book puts the site, relative to the project (``project.output-dir``).
OUTPUT_DIR = "_book"
MATHJAX_CDN = "https://cdn.jsdelivr.net/npm/mathjax@3/"
NPM_CACHE = Path(os.environ.get("CONCRETE_NPM_CACHE", Path.home() / ".cache/concrete/npm"))


def required() -> bool:
    """True when missing site tools must fail the run instead of skipping (CI)."""
    return os.environ.get("CONCRETE_SITE_TESTS", "") == "required"


def skip_or_fail(reason: str):
    """Skip with ``reason``, or fail with it when :func:`required`."""
    if required():
        pytest.fail(f"CONCRETE_SITE_TESTS=required, but {reason}", pytrace=False)
    pytest.skip(reason)


def find_quarto() -> str | None:
    env = os.environ.get("QUARTO")
    if env:
        return env if Path(env).is_file() else shutil.which(env)
    venv = Path(sys.executable).parent / "quarto"
    return shutil.which("quarto") or (str(venv) if venv.is_file() else None)


def find_chromium() -> str | None:
    env = os.environ.get("CHROMIUM")
    if env:
        return env if Path(env).is_file() else shutil.which(env)
    return shutil.which("chromium") or shutil.which("chromium-browser")


def find_mathjax() -> Path | None:
    """A local MathJax 3 (the folder with ``es5/tex-chtml-full.js``); npm-installs it once."""
    env = os.environ.get("CONCRETE_MATHJAX")
    candidates = [Path(env)] if env else []
    candidates.append(NPM_CACHE / "node_modules" / "mathjax")
    for path in candidates:
        if (path / "es5" / "tex-chtml-full.js").is_file():
            return path
    npm = shutil.which("npm")
    if env or npm is None:
        return None
    NPM_CACHE.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix",
         str(NPM_CACHE), "mathjax@3"],
        capture_output=True, text=True, timeout=300,
    )
    path = NPM_CACHE / "node_modules" / "mathjax"
    return path if result.returncode == 0 and (path / "es5").is_dir() else None


@functools.lru_cache(maxsize=1)
def book_files() -> list[str]:
    """Every page source of the book in reading order (``_quarto.yml``: chapters, appendices)."""
    import importlib.util

    script = ROOT / "scripts" / "execute_chapters.py"
    spec = importlib.util.spec_from_file_location("_site_exec", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.book_files(ROOT / "_quarto.yml")


def chapter_notebooks() -> list[str]:
    """The ``.ipynb`` chapters listed in ``_quarto.yml``, in order."""
    return [f for f in book_files() if f.endswith(".ipynb")]


def page_of(source: str) -> str:
    """Site path of the page rendered from ``source`` (``index.qmd`` -> ``index.html``)."""
    return str(Path(source).with_suffix(".html"))


@dataclass
class RenderedSite:
    project: Path  # the temporary copy of the book that was rendered
    site: Path  # its output folder (_book)
    log: str  # Quarto's stdout + stderr
    seconds: float

    def html(self, page: str) -> str:
        return (self.site / page).read_text(encoding="utf-8")

    def soup(self, page: str):
        return _soup(str(self.site / page))


@functools.cache
def _soup(path: str):
    from bs4 import BeautifulSoup

    return BeautifulSoup(Path(path).read_text(encoding="utf-8"), "lxml")


def copy_book(dest: Path) -> Path:
    """Copy what the book needs into ``dest`` (no ``_book``, ``.quarto`` or checkpoints)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in BOOK_PATHS:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        elif src.is_file():
            shutil.copy2(src, dest / name)
    return dest


def render(quarto: str, project: Path, *args: str, env: dict | None = None) -> tuple[int, str]:
    """``quarto render --to html [args]`` in ``project``; never executes code (_quarto.yml)."""
    full_env = dict(os.environ, QUARTO_PYTHON=sys.executable)
    full_env.pop("QUARTO_PROFILE", None)
    full_env.update(env or {})
    result = subprocess.run(
        [quarto, "render", *args, "--to", "html"],
        cwd=project, env=full_env, capture_output=True, text=True, timeout=900,
    )
    return result.returncode, result.stdout + result.stderr


ANSI = re.compile(r"\x1b\[[0-9;]*m")


#: The one warning allowed, and why: Quarto 1.7 maps Observable JS blocks to source line
#: numbers only for .qmd sources (execute/ojs/annotate-source.ts returns none for a notebook),
#: so every ``{ojs}`` block in a chapter notebook logs this. It changes nothing in the page,
#: only the line numbers an OJS syntax error would report.
ALLOWED_WARNINGS = ("OJS block count mismatch. Line number reporting is likely to be wrong",)


def warnings_in(log: str) -> list[str]:
    """Lines of a Quarto render log that are warnings (``WARN``/``WARNING``), but the allowed."""
    return [
        line for line in ANSI.sub("", log).splitlines()
        if re.search(r"\bWARN", line) and not any(ok in line for ok in ALLOWED_WARNINGS)
    ]
