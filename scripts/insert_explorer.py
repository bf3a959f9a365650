#!/usr/bin/env python
"""Insert chapter 3's interactive Concrete explorer into chapters/03_concrete.ipynb.

The explorer is one markdown cell whose text is chapters/_concrete_explorer.md (Observable JS
blocks that Quarto runs in the browser; notebook readers see the static figure). It goes right
after the code cell that holds the static density figure (``#| label: fig-concrete-densities``).
Idempotent: a cell carrying the metadata key ``concrete-explorer`` is replaced in place, and no
other cell is touched (markdown cells need no re-execution).

Usage: python scripts/insert_explorer.py [chapters/03_concrete.ipynb]
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
CHAPTER = ROOT / "chapters" / "03_concrete.ipynb"
CELL_TEXT = ROOT / "chapters" / "_concrete_explorer.md"
FIGURE_LABEL = "fig-concrete-densities"
KEY = "concrete-explorer"


def insert(path: Path = CHAPTER) -> str:
    nb = nbformat.read(path, as_version=4)
    text = CELL_TEXT.read_text(encoding="utf-8").rstrip("\n")
    existing = [i for i, c in enumerate(nb.cells) if c.get("metadata", {}).get(KEY)]
    if existing:
        cell = nb.cells[existing[0]]
        if cell.source == text:
            return "unchanged"
        cell.source = text
        action = "updated"
    else:
        anchor = [
            i for i, c in enumerate(nb.cells)
            if c.cell_type == "code" and f"#| label: {FIGURE_LABEL}" in c.source
        ]
        if len(anchor) != 1:
            raise SystemExit(
                f"{path}: expected one code cell labelled {FIGURE_LABEL}, found {len(anchor)}"
            )
        cell = nbformat.v4.new_markdown_cell(text, metadata={KEY: True})
        cell.pop("id", None)
        if nb.nbformat_minor >= 5:
            cell["id"] = "concrete-explorer"
        nb.cells.insert(anchor[0] + 1, cell)
        action = "inserted"
    nbformat.write(nb, path)
    return action


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else CHAPTER
    print(f"{target}: explorer cell {insert(target)}")
