"""``quarto render`` of the whole book into a temporary copy: one HTML page per chapter.

Quarto is optional (``pip install -e '.[site]'`` or conda-forge ``quarto``), so this test is
skipped, with that reason, when no ``quarto`` executable is found.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: What the book needs to render (everything _quarto.yml refers to).
BOOK_PATHS = (
    "_quarto.yml",
    "index.qmd",
    "references.qmd",
    "references.bib",
    "chapters",
    "figures",
    "filters",
)


def _quarto() -> str | None:
    found = shutil.which("quarto")
    venv = Path(sys.executable).parent / "quarto"
    return found or (str(venv) if venv.is_file() else None)


@pytest.mark.skipif(
    _quarto() is None,
    reason="quarto not installed: `pip install -e '.[site]'` or conda-forge `quarto` to run it",
)
def test_quarto_renders_one_page_per_chapter(tmp_path, book_script):
    book = tmp_path / "book"
    book.mkdir()
    for name in BOOK_PATHS:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, book / name, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        elif src.is_file():
            shutil.copy2(src, book / name)
    env = dict(os.environ, QUARTO_PYTHON=sys.executable)
    result = subprocess.run(
        [_quarto(), "render", "--to", "html", "--quiet"],
        cwd=book,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    site = book / "_book"
    index = (site / "index.html").read_text(encoding="utf-8")
    assert "Preface" in index
    for chapter in book_script.listed_chapters(ROOT / "_quarto.yml"):
        page = site / Path(chapter).with_suffix(".html")
        assert page.is_file(), f"no HTML page for {chapter}"
        html = page.read_text(encoding="utf-8")
        assert 'class="notebook-download"' in html, f"{chapter}: no download link"
        assert (site / chapter).is_file(), f"{chapter} not copied next to its page"
        assert not re.search(r"\?@(fig|eq|sec|tbl)-", html), f"{chapter}: unresolved cross-ref"
        assert "cell-output" in html, f"{chapter}: stored outputs not rendered"
    assert (site / "references.html").is_file()
