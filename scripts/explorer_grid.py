#!/usr/bin/env python
"""Write tests/data/concrete_explorer_grid.json: the library's Concrete log-density at a few
points of the 2-simplex for two (lambda, alpha) settings.

Chapter 3's interactive explorer (chapters/_concrete_explorer.md, in the rendered site)
computes the Concrete density in JavaScript; tests/test_browser.py asks the page for its
values at these points and compares them with ``Concrete(lambda, logits=log alpha).log_prob``
(float64). tests/test_browser.py also checks that this file is what the library gives now.

Usage: python scripts/explorer_grid.py
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "concrete_explorer_grid.json"
#: (lambda, alpha): the chapter's running example at lambda = 1/2, and an unnormalised one.
SETTINGS = [(0.5, (2.0, 0.5, 1.0)), (2.0, (0.3, 1.7, 4.0))]
POINTS = [
    (1 / 3, 1 / 3, 1 / 3),
    (0.6, 0.3, 0.1),
    (0.05, 0.15, 0.8),
    (0.98, 0.01, 0.01),
    (0.2, 0.7, 0.1),
]


def grid() -> dict:
    import torch

    from concrete import Concrete

    settings = []
    for lam, alpha in SETTINGS:
        dist = Concrete(lam, logits=torch.tensor(alpha, dtype=torch.float64).log())
        x = torch.tensor(POINTS, dtype=torch.float64)
        lp = dist.log_prob(x)
        settings.append({
            "lambda": lam,
            "alpha": list(alpha),
            "points": [{"x": list(p), "log_prob": round(float(v), 12)}
                       for p, v in zip(POINTS, lp.tolist(), strict=True)],
        })
    return {"source": "concrete.Concrete(lambda, logits=log(alpha)).log_prob, float64",
            "settings": settings}


def main() -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(grid(), indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
