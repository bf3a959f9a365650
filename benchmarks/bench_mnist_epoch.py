"""Seconds per epoch: ``concrete.train.fit`` vs the plain PyTorch loop, same model, same run.

Run:  CONCRETE_DATA=/work/shared/data .venv/bin/python benchmarks/bench_mnist_epoch.py \
          [--epochs 4] [--batch-size 100] [--threads N] [--subset 60000]

Both train the chapter-5 model (20 × 10 categorical latents, MLP 784-512-256 and mirrored,
Bernoulli logits) with Gumbel-Softmax, the analytic KL to a uniform prior, Adam 1e-3, the
temperature annealed as τ_t = max(0.5, exp(−3·10⁻⁵ t)) and dynamic binarization:

* **ours**: ``concrete.mnist.mnist_vae("gumbel_softmax")`` trained by ``concrete.train.fit``
  (headless monitor, ``DynamicBinarize`` transform, ``exp_anneal`` schedule);
* **plain**: ``benchmarks/mnist_plain_loop.py`` (``torch.nn.functional.gumbel_softmax``, a
  hand-written loss, a bare ``for`` loop over slices of a permutation).

The epochs interleave — ``fit``'s per-epoch ``callback`` runs one plain epoch — so load from
other processes hits both alike. Reported: the median seconds per epoch of each and the ratio
ours / plain (goal ≤ 1.0). Only the ratio is comparable between machines.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mnist_plain_loop import build_plain_vae, train_epoch_plain  # noqa: E402

from concrete.mnist import DynamicBinarize, exp_anneal, load_mnist, mnist_vae  # noqa: E402
from concrete.train import fit  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--subset", type=int, default=60_000, help="training images per epoch")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    images, _ = load_mnist(train=True)
    images = images[: args.subset]

    plain = build_plain_vae(0)
    plain_opt = torch.optim.Adam(plain.parameters(), lr=1e-3)
    state = {"step": 0, "mark": 0.0}
    ours_s: list[float] = []
    plain_s: list[float] = []

    def interleave(epoch: int, model: torch.nn.Module, metrics: dict[str, float]) -> None:
        ours_s.append(time.perf_counter() - state["mark"])
        t0 = time.perf_counter()
        _, state["step"] = train_epoch_plain(plain, plain_opt, images, state["step"],
                                             args.batch_size)
        plain_s.append(time.perf_counter() - t0)
        print(f"epoch {epoch}: ours {ours_s[-1]:.2f} s (loss {metrics['loss']:.1f}), "
              f"plain {plain_s[-1]:.2f} s", flush=True)
        state["mark"] = time.perf_counter()

    torch.manual_seed(0)
    model = mnist_vae("gumbel_softmax")
    state["mark"] = time.perf_counter()
    fit(model, images, epochs=args.epochs, batch_size=args.batch_size, lr=1e-3,
        weight_decay=0.0, seed=0, device="cpu", temperature_schedule=exp_anneal(3e-5, 0.5),
        transform=DynamicBinarize(), live=False, log=False, callback=interleave)
    ours, base = statistics.median(ours_s), statistics.median(plain_s)
    print(f"\n{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {len(images)} images/epoch, "
          f"batch {args.batch_size}, {args.epochs} epochs each (interleaved)")
    print(f"{'loop':<28}{'s/epoch (median)':>18}")
    print(f"{'plain PyTorch loop':<28}{base:>18.2f}")
    print(f"{'concrete.train.fit':<28}{ours:>18.2f}")
    print(f"ratio ours/plain = {ours / base:.2f}  (goal <= 1.0)")


if __name__ == "__main__":
    main()
