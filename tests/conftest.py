"""Shared pytest configuration for the unit tests and for nbval over the chapters.

``make test`` runs ``pytest tests <every chapter in _quarto.yml> --nbval ...``; this file
is loaded for that whole session and

* makes notebook kernels headless and CPU-bound: the kernels nbval starts inherit this
  process's environment, so ``CONCRETE_HEADLESS=1`` (see ``concrete.monitor``) and
  ``CONCRETE_DEVICE=cpu`` (unless set) reach every chapter;
* tells nbval not to compare stderr (warnings, library log lines) and widget outputs
  (tqdm/ipywidgets views carry random model ids and redraw), on top of the sanitize file
  ``tests/sanitize.cfg``;
* gives the unit tests matplotlib's non-interactive Agg backend (this process only; the
  notebook kernels keep the inline backend because no ``MPLBACKEND`` is exported).
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path
from types import ModuleType

import matplotlib
import pytest

ROOT = Path(__file__).resolve().parent.parent

# Forced, not defaulted: stored outputs are produced headless, so a live run could never match.
os.environ["CONCRETE_HEADLESS"] = "1"
os.environ.setdefault("CONCRETE_DEVICE", "cpu")
matplotlib.use("Agg")

#: MIME types of Jupyter widget outputs; an output carrying one is left out of comparisons.
WIDGET_MIMES = (
    "application/vnd.jupyter.widget-view+json",
    "application/vnd.jupyter.widget-state+json",
)
#: Output keys nbval must not compare, in addition to its own list (stream name → key).
NBVAL_SKIP_COMPARE = ("stderr", *WIDGET_MIMES)


def _is_widget_or_stderr(output: object) -> bool:
    """True for outputs nbval should ignore: stderr streams and widget displays."""
    get = output.get if hasattr(output, "get") else (lambda key, default=None: default)
    if get("output_type") == "stream":
        return get("name") == "stderr"
    data = get("data") or {}
    return any(mime in data for mime in WIDGET_MIMES)


def _compare_ignoring(original, test, ref, skip_compare=None):
    """nbval's ``compare_outputs`` on the outputs that remain after dropping ignored ones."""
    keep_test = [o for o in test if not _is_widget_or_stderr(o)]
    keep_ref = [o for o in ref if not _is_widget_or_stderr(o)]
    return original(keep_test, keep_ref, skip_compare)


def pytest_collection_modifyitems(session, config, items):
    """Apply the book's comparison rules to every nbval cell of this session.

    ``skip_compare`` (documented in nbval's docs, "Skipping certain output types") drops
    the keys; wrapping ``compare_outputs`` per item also drops the ``text/plain`` that
    accompanies a widget view, so a widget cannot make a cell fail either way.
    """
    for item in items:
        parent = getattr(item, "parent", None)
        skip = getattr(parent, "skip_compare", None)
        if skip is None or not hasattr(item, "compare_outputs"):
            continue  # not an nbval cell
        parent.skip_compare = tuple(dict.fromkeys((*skip, *NBVAL_SKIP_COMPARE)))
        if not getattr(item, "_concrete_wrapped", False):
            item.compare_outputs = functools.partial(_compare_ignoring, item.compare_outputs)
            item._concrete_wrapped = True


def _load_script(name: str) -> ModuleType:
    path = ROOT / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_book_{name}", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def book_script() -> ModuleType:
    """``scripts/execute_chapters.py`` as a module (chapter list from ``_quarto.yml``)."""
    return _load_script("execute_chapters")


@pytest.fixture(scope="session")
def root() -> Path:
    """The repository root."""
    return ROOT


# --------------------------------------------------------------------------- the rendered site
# One render per test session (tests/test_site.py and tests/test_browser.py share it); see
# tests/book_site.py for how Quarto, Chromium and MathJax are found.
@pytest.fixture(scope="session")
def rendered_site(tmp_path_factory):
    """The book rendered by ``quarto render --to html`` into a temporary copy of the repo.

    ``CONCRETE_SITE_DIR=<folder>`` reuses a site rendered before (while editing the tests;
    the render-log test then skips).
    """
    import time

    import book_site

    prerendered = os.environ.get("CONCRETE_SITE_DIR")
    if prerendered:
        return book_site.RenderedSite(Path(prerendered), Path(prerendered), "", 0.0)
    quarto = book_site.find_quarto()
    if quarto is None:
        book_site.skip_or_fail(
            "quarto not installed (conda-forge `quarto`, `pip install -e '.[site]'`, "
            "https://quarto.org): the rendered site is not tested"
        )
    project = book_site.copy_book(tmp_path_factory.mktemp("book"))
    start = time.perf_counter()
    code, log = book_site.render(quarto, project)
    seconds = time.perf_counter() - start
    assert code == 0, f"quarto render failed:\n{log}"
    return book_site.RenderedSite(project, project / book_site.OUTPUT_DIR, log, seconds)


@pytest.fixture(scope="session")
def site_server(rendered_site):
    """The rendered site served over HTTP on 127.0.0.1 (a free port); yields the base URL."""
    import functools as _functools
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = _functools.partial(Quiet, directory=str(rendered_site.site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium (the system package) under Playwright; no browser download."""
    import book_site

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        book_site.skip_or_fail("playwright is not installed (pip install -e '.[dev]')")
    chromium = book_site.find_chromium()
    if chromium is None:
        book_site.skip_or_fail("no chromium executable (Debian: apt-get install chromium)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def mathjax_dir():
    """A local MathJax 3 copy that the browser tests serve in place of the CDN."""
    import book_site

    path = book_site.find_mathjax()
    if path is None:
        book_site.skip_or_fail("no local MathJax 3 (npm install mathjax@3, or CONCRETE_MATHJAX)")
    return path
