"""Reliability of the discrete VAE on the shapes data: distinct codes for the three shapes.

Trains chapter 4's discrete VAE with the chapter's default settings for seeds 0..19:
``DiscreteVAE((3, 32, 32), obs_scale=0.1, data_mean=<mean image>)`` with the library defaults
(one latent, K = 3, hidden 200, Concrete objective in log space, lambda1 = 2/3, lambda2 = 2),
trained by ``fit()`` with its defaults (15 epochs, Adam 1e-3, weight decay 1e-6, batch 128) and
the posterior temperature annealed ``max(lambda1, 3 exp(-0.02 t))`` (hot for the first three
epochs). For each seed it prints the code of each shape (arg max of the posterior of the one
image of each shape), whether the three codes are distinct and the discrete negative ELBO
(arg-max codes); then ``k/20``.

The fix has two parts, which can be switched off one at a time: ``--init pytorch`` (PyTorch's
default decoder initialisation instead of the constant mean image) and ``--start-temperature
0.6667`` (no annealing). ``--plain`` switches both off: the setting before the fix.

Usage::

    python benchmarks/shapes_reliability.py            # chapter defaults, seeds 0..19
    python benchmarks/shapes_reliability.py --plain    # before the fix
    python benchmarks/shapes_reliability.py --seeds 50 --lambda2 0.5 \
        --out benchmarks/results/shapes/default_l1-0.667_l2-0.5.json   # a JSON record

``--out`` writes a JSON record (settings, per-seed codes, distinct or not, discrete -ELBO,
last-epoch relaxed -ELBO and relaxed KL, the count and the run time) that chapter 4 loads.

Each seed trains 360 steps; on one CPU thread that is ~10 s per seed when the machine is idle.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import torch

from concrete import seed_everything
from concrete.data import SHAPES, shapes_dataset
from concrete.models import DiscreteVAE
from concrete.train import fit


def run_seed(seed: int, args: argparse.Namespace, data, x_shapes) -> dict:
    """Train one seed; return the code of each shape, the discrete loss (argmax codes) and the
    last epoch's relaxed loss and KL."""
    seed_everything(seed)
    model = DiscreteVAE(
        (3, 32, 32),
        obs_scale=args.sigma,
        objective=args.objective,
        posterior_temperature=args.lambda1,
        prior_temperature=args.lambda2,
        data_mean=data.tensors[0].mean(0) if args.init == "mean" else None,
    )
    start, lam1 = args.start_temperature, args.lambda1
    schedule = None
    if start > lam1:
        schedule = lambda t: max(lam1, start * math.exp(-args.anneal_rate * t))  # noqa: E731
    history = fit(
        model,
        data,
        epochs=args.epochs,
        lr=args.lr,
        seed=seed,
        device="cpu",
        log=False,
        live=False,
        plot=False,
        temperature_schedule=schedule,
    )
    with torch.no_grad():
        codes = model.codes(x_shapes)[:, 0].tolist()
        loss = model.loss(x_shapes, discrete=True, deterministic=True)["loss"].item()
    return {
        "seed": seed,
        "codes": codes,
        "distinct": len(set(codes)) == len(codes),
        "discrete_loss": round(loss, 3),
        "relaxed_loss": round(history.last("loss"), 3),
        "relaxed_kl": round(history.last("kl"), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20, help="seeds first..first+seeds-1")
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--out", type=Path, default=None, help="write a JSON record here")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--init", choices=("mean", "pytorch"), default="mean")
    ap.add_argument("--sigma", type=float, default=0.1)
    ap.add_argument("--lambda1", type=float, default=2 / 3)
    ap.add_argument("--lambda2", type=float, default=2.0)
    ap.add_argument("--objective", default="concrete")
    ap.add_argument(
        "--start-temperature", type=float, default=3.0, help="anneal from (<= lambda1: off)"
    )
    ap.add_argument("--anneal-rate", type=float, default=0.02, help="per step")
    ap.add_argument("--plain", action="store_true", help="--init pytorch, no annealing")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.plain:
        args.init, args.start_temperature = "pytorch", args.lambda1
    data = shapes_dataset()
    x_shapes = data.tensors[0][::1000]  # one image of each shape
    print(
        f"init={args.init} sigma={args.sigma} lambda1={args.lambda1:.3g} "
        f"lambda2={args.lambda2:.3g} objective={args.objective} epochs={args.epochs} "
        f"lr={args.lr:g} "
        f"anneal={'off' if args.start_temperature <= args.lambda1 else args.start_temperature}"
    )
    print("seed  " + "  ".join(f"{s:>8}" for s in SHAPES) + "  distinct  -ELBO(discrete)")
    ok = 0
    rows = []
    t0 = time.perf_counter()
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        row = run_seed(seed, args, data, x_shapes)
        rows.append(row)
        ok += row["distinct"]
        print(
            f"{seed:>4}  "
            + "  ".join(f"{c:>8}" for c in row["codes"])
            + f"  {'yes' if row['distinct'] else 'NO':>8}  {row['discrete_loss']:>14.1f}",
            flush=True,
        )
    seconds = time.perf_counter() - t0
    print(f"{ok}/{args.seeds} seeds give the three shapes three distinct codes ({seconds:.0f} s)")
    if args.out is not None:
        record = {
            "benchmark": "shapes_reliability",
            "settings": {
                "init": args.init,
                "sigma": args.sigma,
                "lambda1": args.lambda1,
                "lambda2": args.lambda2,
                "objective": args.objective,
                "epochs": args.epochs,
                "lr": args.lr,
                "anneal_start": args.start_temperature
                if args.start_temperature > args.lambda1
                else None,
                "anneal_rate": args.anneal_rate,
                "threads": args.threads,
            },
            "seeds": [r["seed"] for r in rows],
            "successes": ok,
            "n_seeds": len(rows),
            "per_seed": rows,
            "seconds": round(seconds, 1),
            "date": time.strftime("%Y-%m-%d", time.gmtime()),
            "torch": torch.__version__,
            "machine": platform.machine(),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
