"""Does a chapter-7 model overfit? −L_1000 of stored checkpoints on train, valid and test images.

Run:  CONCRETE_DATA=/work/shared/data taskset -c 1 .venv/bin/python benchmarks/split_bounds.py

For the linear (200H–784V) runs of seed 0 -- three minutes (``wallclock180``) and 200 000 steps
(``steps200k``), Concrete m = 1 and NVIL m = 1, Adam 1e-3 -- scores the checkpoint with the
library's evaluation (discrete codes, k = 1000, noise seed 12345) on 1000 random images of each
split of the fixed binarization (``random_subset(split, 1000, seed=0)``). A train bound well
below the validation and test bounds would mean the model overfits the fixed binarization,
and a protocol that fights overfitting (dynamic binarization, early stopping) could explain a
better short-budget number. Writes ``results/binary/split_bounds.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from paper_table import build_parser, load_cell

from concrete.binary_vae import evaluate_bound, random_subset

BINARY = Path(__file__).resolve().parent / "results" / "binary"
RUNS = [("wallclock180", 180.0), ("steps200k", None)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="random images per split")
    ap.add_argument("--out", type=Path, default=BINARY / "split_bounds.json")
    cli = ap.parse_args()
    rows = []
    for folder, time_limit in RUNS:
        for objective in ("concrete1", "nvil"):
            # the cell's settings as paper_table.py's command line has them (its defaults)
            budget = ["--time-limit", f"{time_limit:g}"] if time_limit else []
            args = build_parser().parse_args(
                ["--arch", "linear", "--objective", objective, "--lr", "1e-3", "--seed", "0",
                 "--out-dir", str(BINARY / folder), *budget])
            obj, state, tag, data, _ = load_cell(args, "linear", objective)
            row = {"records": folder, "run": tag, "step": state["step"]}
            for split in ("train", "valid", "test"):
                res = evaluate_bound(obj.model, random_subset(getattr(data, split), cli.n, seed=0),
                                     k=1000, generator=torch.Generator().manual_seed(12345))
                row[split] = {"neg_lk": round(res.neg_log_px, 3), "stderr": round(res.stderr, 3)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    cli.out.write_text(json.dumps({
        "script": "benchmarks/split_bounds.py", "n_per_split": cli.n, "eval_k": 1000,
        "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
