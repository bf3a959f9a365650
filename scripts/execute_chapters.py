#!/usr/bin/env python
"""Re-execute the book's chapter notebooks in place and print how long each took.

The chapters are the ``.ipynb`` files listed in ``_quarto.yml`` (``book.chapters``, parts
included, then ``book.appendices``), in book order. Each runs top to bottom in a fresh
kernel of *this* Python (the one in ``.venv``), with the working directory set to the
notebook's folder (as nbval does), headless (``CONCRETE_HEADLESS=1``) and on the CPU
unless ``CONCRETE_DEVICE`` says otherwise. A notebook is written back only when every
cell succeeded, so a failing chapter keeps its previous outputs.

Usage::

    python scripts/execute_chapters.py                      # all chapters, in place
    python scripts/execute_chapters.py chapters/01_gumbel_max.ipynb
    python scripts/execute_chapters.py --list                # print the chapter paths

``make execute`` runs the first form. Exit status 1 if any chapter failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUARTO_YML = ROOT / "_quarto.yml"


def _walk(entries: Iterable[object]) -> list[str]:
    """Flatten Quarto's chapter entries: strings, ``{part: ..., chapters: [...]}``, ``{href:}``."""
    out: list[str] = []
    for entry in entries or []:
        if isinstance(entry, str):
            out.append(entry)
        elif isinstance(entry, dict):
            if isinstance(entry.get("href"), str):
                out.append(entry["href"])
            if isinstance(entry.get("part"), str) and entry["part"].endswith((".qmd", ".md")):
                out.append(entry["part"])  # a part may be a file with the part's intro
            out.extend(_walk(entry.get("chapters") or []))
        else:
            raise ValueError(f"_quarto.yml: unexpected chapter entry {entry!r}")
    return out


def book_files(config_path: Path = QUARTO_YML) -> list[str]:
    """All files of the book, in order: ``book.chapters`` (parts flattened), then appendices."""
    import yaml

    config = yaml.safe_load(Path(config_path).read_text(encoding="utf-8"))
    if not isinstance(config, dict) or not isinstance(config.get("book"), dict):
        raise ValueError(f"{config_path}: no 'book:' section")
    book = config["book"]
    return _walk(book.get("chapters") or []) + _walk(book.get("appendices") or [])


def listed_chapters(config_path: Path = QUARTO_YML) -> list[str]:
    """The ``.ipynb`` chapters listed in ``_quarto.yml``, in book order (repo-relative)."""
    return [f for f in book_files(config_path) if f.endswith(".ipynb")]


def coalesce_streams(nb) -> None:
    """Merge consecutive stdout (stderr) chunks of each cell into one output, in place.

    The kernel sends ``print`` output in arbitrary chunks; merging them keeps the stored
    notebook, and its diffs, independent of that chunking (nbval merges them too).
    """
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        merged = []
        for out in cell.outputs:
            prev = merged[-1] if merged else None
            if (
                out.output_type == "stream"
                and prev is not None
                and prev.output_type == "stream"
                and prev.name == out.name
            ):
                prev.text += out.text
            else:
                merged.append(out)
        cell.outputs = merged


def execute_notebook(path: Path, timeout: int | None = None) -> float:
    """Execute ``path`` in place in a fresh kernel; return wall seconds.

    Raises ``nbclient.exceptions.CellExecutionError`` (notebook left untouched) on failure.
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        record_timing=False,  # no per-cell timestamps: keeps diffs to real output changes
    )
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    coalesce_streams(nb)
    nbformat.validate(nb)
    nbformat.write(nb, path)
    return seconds


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="chapters to run (default: all listed)")
    parser.add_argument("--list", action="store_true", help="print the listed chapters, exit")
    parser.add_argument(
        "--timeout", type=int, default=1800, help="seconds per cell (default 1800; 0: none)"
    )
    args = parser.parse_args(argv)

    chapters = listed_chapters()
    if args.list:
        print("\n".join(chapters))
        return 0
    if args.timeout < 0:
        parser.error(f"--timeout must be >= 0, got {args.timeout}")
    chosen = list(args.notebooks) or chapters
    paths = []
    for name in chosen:
        path = (ROOT / name) if not Path(name).is_absolute() else Path(name)
        if not path.is_file():
            parser.error(f"notebook {name!r} not found")
        paths.append(path.resolve())
    if not paths:
        print("no chapters listed in _quarto.yml: nothing to execute")
        return 0

    os.environ["CONCRETE_HEADLESS"] = "1"  # one static figure + a text log, never live redraws
    os.environ.setdefault("CONCRETE_DEVICE", "cpu")
    print(f"executing {len(paths)} chapter(s) headless on {os.environ['CONCRETE_DEVICE']} ...")

    rows: list[tuple[str, float, str]] = []
    for path in paths:
        rel = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
        print(f"  {rel} ...", flush=True)
        start = time.perf_counter()
        try:
            seconds = execute_notebook(path, timeout=args.timeout or None)
            rows.append((rel, seconds, "ok"))
        except Exception as err:  # report every chapter, then fail
            rows.append((rel, time.perf_counter() - start, f"FAILED: {type(err).__name__}"))
            print(f"{rel} failed:\n{err}", file=sys.stderr)

    width = max(len("chapter"), *(len(r[0]) for r in rows))
    print()
    print(f"| {'chapter':<{width}} | seconds | status |")
    print(f"|{'-' * (width + 2)}|--------:|--------|")
    for rel, seconds, status in rows:
        print(f"| {rel:<{width}} | {seconds:7.1f} | {status:<6} |")
    total = sum(r[1] for r in rows)
    print(f"| {'total':<{width}} | {total:7.1f} |        |")
    return 0 if all(r[2] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
