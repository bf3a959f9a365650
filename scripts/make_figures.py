#!/usr/bin/env python
"""Write the book's generated figures (the computational-graph diagrams) to ``figures/``.

Every PNG in ``figures/`` that this script knows is produced by library code
(:mod:`concrete.diagrams`), so the site (the chapters call the same functions) and the
committed files agree. Re-run after changing ``src/concrete/diagrams.py``::

    python scripts/make_figures.py                 # all figures into figures/
    python scripts/make_figures.py --out-dir /tmp/figs gumbel_max_graph
    python scripts/make_figures.py --list

``make figures`` runs the first form.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from concrete.diagrams import gumbel_max_graph, gumbel_softmax_graph  # noqa: E402
from concrete.plots import concrete_density_figure  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DPI = 150

#: figure name (file stem in figures/) → function returning a Figure.
FIGURES: dict[str, Callable[[], Figure]] = {
    "gumbel_max_graph": gumbel_max_graph,
    "gumbel_softmax_graph": gumbel_softmax_graph,
    "gumbel_softmax_st_graph": lambda: gumbel_softmax_graph(hard=True),
    "concrete_densities": concrete_density_figure,  # chapter 3, Maddison et al. Fig. 2
}


def make_figures(out_dir: Path, names: Sequence[str] | None = None) -> list[Path]:
    """Render the figures ``names`` (default: all of :data:`FIGURES`) as PNGs in ``out_dir``.

    Returns the paths written. Raises ``ValueError`` naming an unknown figure name.
    """
    names = list(FIGURES) if not names else list(names)
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        raise ValueError(f"names must be among {sorted(FIGURES)}, got unknown names={unknown}")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        fig = FIGURES[name]()
        path = out_dir / f"{name}.png"
        # Fixed metadata so re-running on the same versions gives byte-identical files.
        fig.savefig(path, dpi=DPI, bbox_inches="tight", metadata={"Software": None})
        plt.close(fig)
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="figures to make (default: all)")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "figures")
    parser.add_argument("--list", action="store_true", help="print the figure names and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(FIGURES))
        return 0
    try:
        paths = make_figures(args.out_dir, args.names)
    except ValueError as exc:
        parser.error(str(exc))
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
