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

Each seed trains 360 steps; on one CPU thread that is ~10 s per seed when the machine is idle.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from concrete import seed_everything
from concrete.data import SHAPES, shapes_dataset
from concrete.models import DiscreteVAE
from concrete.train import fit


def run_seed(seed: int, args: argparse.Namespace, data, x_shapes) -> tuple[list[int], float]:
    """Train one seed; return the code of each shape and the discrete loss (argmax codes)."""
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
    fit(
        model,
        data,
        epochs=args.epochs,
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
    return codes, loss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20, help="seeds 0..seeds-1")
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
        f"anneal={'off' if args.start_temperature <= args.lambda1 else args.start_temperature}"
    )
    print("seed  " + "  ".join(f"{s:>8}" for s in SHAPES) + "  distinct  -ELBO(discrete)")
    ok = 0
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        codes, loss = run_seed(seed, args, data, x_shapes)
        distinct = len(set(codes)) == len(codes)
        ok += distinct
        print(
            f"{seed:>4}  "
            + "  ".join(f"{c:>8}" for c in codes)
            + f"  {'yes' if distinct else 'NO':>8}  {loss:>14.1f}",
            flush=True,
        )
    print(
        f"{ok}/{args.seeds} seeds give the three shapes three distinct codes "
        f"({time.perf_counter() - t0:.0f} s)"
    )


if __name__ == "__main__":
    main()
