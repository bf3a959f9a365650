"""Steps per second over a long run, with and without flushing the running input mean's tiny values.

Run:  CONCRETE_DATA=/work/shared/data .venv/bin/python benchmarks/bench_subnormal.py \
          [--arch nonlinear] [--objective concrete1] [--steps 8000] [--block 500] [--threads 1] \
          [--out benchmarks/results/binary/subnormal_nonlinear_concrete1.json]

``BinaryVAE`` centres the encoder's input by a running mean (App. D.4, rate 0.9 per batch).
The mean of a pixel that stays off decays as 0.9^k into the subnormal floats (below 1.2e-38 in
float32), and x86 CPUs multiply subnormal operands on a slow path. The library sets entries
below sqrt(finfo.tiny) to zero after each update (``concrete.binary_vae._flush_tiny_``).

Two copies of the same model (same seed, same batches) are trained side by side in one
process, alternating blocks of ``--block`` steps: **library** (as shipped) and **no flush**
(``_flush_tiny_`` replaced by the identity for that copy's steps, i.e. the code before the
change). Each block's steps/s is printed; the ratio is library / no-flush steps/s of the same
block pair (> 1: the library is faster). Also reported: how many running-mean entries of the
no-flush copy are subnormal after each block, and the largest difference between the two
copies' training losses (the flush changes values only below 1e-19).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

import concrete.binary_vae as bv
from concrete.train import make_adam

OBJECTIVES = {"concrete1": bv.ConcreteObjective, "nvil": bv.NVILObjective}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=bv.ARCHITECTURES, default="nonlinear")
    ap.add_argument("--objective", choices=sorted(OBJECTIVES), default="concrete1")
    ap.add_argument("--steps", type=int, default=8000)
    ap.add_argument("--block", type=int, default=500)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = bv.load_binarized_mnist()
    copies = {}
    for name in ("library", "no flush"):
        torch.manual_seed(0)
        model = bv.BinaryVAE(args.arch, pixel_means=data.pixel_means)
        objective = OBJECTIVES[args.objective](model)
        copies[name] = (objective, make_adam(objective.parameters(), lr=args.lr))
    flush = bv._flush_tiny_
    tiny = torch.finfo(torch.float32).tiny
    rows = []
    print(f"{args.arch} {args.objective}, blocks of {args.block} steps, {args.threads} thread(s)")
    print(f"{'steps':>7} {'library/s':>10} {'no flush/s':>11} {'ratio':>6} {'subnormal':>10}")
    for k in range(args.steps // args.block):
        rate, loss = {}, {}
        for name, (objective, opt) in copies.items():
            bv._flush_tiny_ = flush if name == "library" else (lambda t: t)
            try:
                t0 = time.perf_counter()
                run = bv.fit_steps(objective, data.train, steps=args.block, lr=args.lr,
                                   seed=k, optimizer=opt)
                rate[name] = args.block / (time.perf_counter() - t0)
            finally:
                bv._flush_tiny_ = flush
            loss[name] = run.train_loss[-1]
        mean = copies["no flush"][0].model.input_mean
        row = {"steps": (k + 1) * args.block, "library": rate["library"],
               "no_flush": rate["no flush"], "ratio": rate["library"] / rate["no flush"],
               "subnormal_means": int(((mean != 0) & (mean.abs() < tiny)).sum()),
               "loss_difference": abs(loss["library"] - loss["no flush"])}
        rows.append(row)
        print(f"{row['steps']:>7} {row['library']:>10.0f} {row['no_flush']:>11.0f} "
              f"{row['ratio']:>6.2f} {row['subnormal_means']:>10}", flush=True)
    late = [r["ratio"] for r in rows[len(rows) // 2:]]
    print(f"median ratio over the second half of the run: {statistics.median(late):.2f}x; "
          f"largest training-loss difference per block: "
          f"{max(r['loss_difference'] for r in rows):.2e} nats")
    if args.out is not None:
        record = {"script": "benchmarks/bench_subnormal.py", **vars(args), "out": str(args.out),
                  "rows": rows, "median_ratio_second_half": statistics.median(late),
                  "torch": torch.__version__,
                  "machine": platform.processor() or platform.machine(),
                  "cpus": os.cpu_count(), "loadavg_end": os.getloadavg(),
                  "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
