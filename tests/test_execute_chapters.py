"""scripts/execute_chapters.py: the chapter list read from _quarto.yml, stream merging, CLI."""

from __future__ import annotations

import nbformat
import pytest

QUARTO_YML = """
project: {type: book}
book:
  chapters:
    - index.qmd
    - part: "Part I"
      chapters:
        - chapters/01_a.ipynb
        - chapters/02_b.ipynb
    - part: part2.qmd
      chapters: [chapters/03_c.ipynb]
    - href: chapters/04_d.ipynb
      text: Four
    - references.qmd
  appendices:
    - chapters/A1_extra.ipynb
"""


def test_book_files_flattens_parts_and_appendices(tmp_path, book_script):
    cfg = tmp_path / "_quarto.yml"
    cfg.write_text(QUARTO_YML, encoding="utf-8")
    assert book_script.book_files(cfg) == [
        "index.qmd",
        "chapters/01_a.ipynb",
        "chapters/02_b.ipynb",
        "part2.qmd",
        "chapters/03_c.ipynb",
        "chapters/04_d.ipynb",
        "references.qmd",
        "chapters/A1_extra.ipynb",
    ]
    assert book_script.listed_chapters(cfg) == [
        "chapters/01_a.ipynb",
        "chapters/02_b.ipynb",
        "chapters/03_c.ipynb",
        "chapters/04_d.ipynb",
        "chapters/A1_extra.ipynb",
    ]


def test_book_files_rejects_configs_without_a_book(tmp_path, book_script):
    cfg = tmp_path / "_quarto.yml"
    cfg.write_text("project: {type: website}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="book"):
        book_script.book_files(cfg)
    cfg.write_text("book:\n  chapters:\n    - 3\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unexpected chapter entry 3"):
        book_script.book_files(cfg)


def test_coalesce_streams_merges_consecutive_chunks_only(book_script):
    out = nbformat.v4.new_output
    cell = nbformat.v4.new_code_cell(
        "x",
        outputs=[
            out("stream", name="stdout", text="a"),
            out("stream", name="stdout", text="b\n"),
            out("stream", name="stderr", text="warn\n"),
            out("stream", name="stdout", text="c\n"),
            out("display_data", data={"text/plain": "fig"}),
            out("stream", name="stdout", text="d\n"),
        ],
    )
    nb = nbformat.v4.new_notebook(cells=[cell, nbformat.v4.new_markdown_cell("m")])
    book_script.coalesce_streams(nb)
    got = [(o.output_type, o.get("name"), o.get("text")) for o in nb.cells[0].outputs]
    assert got == [
        ("stream", "stdout", "ab\n"),
        ("stream", "stderr", "warn\n"),
        ("stream", "stdout", "c\n"),
        ("display_data", None, None),
        ("stream", "stdout", "d\n"),
    ]


def test_list_prints_the_chapters_of_the_real_book(capsys, book_script, root):
    assert book_script.main(["--list"]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == book_script.listed_chapters(root / "_quarto.yml")
    assert all(p.endswith(".ipynb") for p in printed)


def test_cli_rejects_unknown_notebooks_and_negative_timeouts(book_script):
    with pytest.raises(SystemExit):
        book_script.main(["chapters/99_missing.ipynb"])
    with pytest.raises(SystemExit):
        book_script.main(["--timeout", "-1"])
