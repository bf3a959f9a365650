"""Baseline: the categorical VAE on binarized MNIST as a plain PyTorch loop (no ``concrete.train``).

Run:  CONCRETE_DATA=/work/shared/data .venv/bin/python benchmarks/mnist_plain_loop.py \
          --epochs 25 --out benchmarks/results/plain_25.json

The model and recipe of Jang et al. (2017), written the way one would write it by hand:

* 20 categorical latents × 10 classes; encoder MLP 784-512-256-200 (ReLU), decoder mirrored
  200-256-512-784 (ReLU), Bernoulli likelihood with logits;
* Gumbel-Softmax samples (``torch.nn.functional.gumbel_softmax``, soft) with the temperature
  annealed per step, τ_t = max(0.5, exp(−3·10⁻⁵ t));
* loss = −ELBO with the analytic KL of the categorical posterior to a uniform prior,
  Σ_n Σ_k q_nk (log q_nk + log K), averaged over the batch;
* Adam, learning rate 1e-3, batch 100, dynamic binarization (a fresh Bernoulli draw of the
  grey levels at every batch) from the in-memory training images.

After training it evaluates on the fixed binarized test set with *discrete* codes
(``concrete.evaluate``: −ELBO and the importance-weighted bound with ``k`` samples) and writes a
JSON record (epochs, seconds per epoch, training curve, test numbers). ``--save`` keeps the
weights. The same module provides :func:`build_plain_vae` and :func:`train_epoch_plain` for
``bench_mnist_epoch.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

N_LATENT, N_CLASS, N_PIXEL = 20, 10, 784


class PlainVAE(nn.Module):
    """Encoder 784-512-256-(N·K) and decoder (N·K)-256-512-784, ReLU, Bernoulli logits."""

    def __init__(self, n_latent: int = N_LATENT, n_class: int = N_CLASS) -> None:
        super().__init__()
        self.n_latent, self.n_class = n_latent, n_class
        self.encoder = nn.Sequential(
            nn.Linear(N_PIXEL, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
            nn.Linear(256, n_latent * n_class),
        )
        self.decoder = nn.Sequential(
            nn.Linear(n_latent * n_class, 256), nn.ReLU(), nn.Linear(256, 512), nn.ReLU(),
            nn.Linear(512, N_PIXEL),
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior logits, (B, 784) → (B, N, K)."""
        return self.encoder(x).view(-1, self.n_latent, self.n_class)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits of the pixels, (..., N, K) → (..., 784)."""
        return self.decoder(z.flatten(-2))


def build_plain_vae(seed: int = 0) -> PlainVAE:
    """The baseline model, initialised under ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    return PlainVAE()


def plain_loss(model: PlainVAE, x: torch.Tensor, tau: float) -> torch.Tensor:
    """−ELBO per image (mean over the batch) with soft Gumbel-Softmax codes and analytic KL."""
    logits = model.encode(x)
    z = F.gumbel_softmax(logits, tau=tau, hard=False, dim=-1)
    x_logits = model.decode(z)
    rec = F.binary_cross_entropy_with_logits(x_logits, x, reduction="none").sum(-1)
    log_q = F.log_softmax(logits, dim=-1)
    kl = (log_q.exp() * (log_q + math.log(model.n_class))).sum((-2, -1))
    return (rec + kl).mean()


def train_epoch_plain(
    model: PlainVAE,
    opt: torch.optim.Optimizer,
    images: torch.Tensor,
    step: int,
    batch_size: int = 100,
    anneal_rate: float = 3e-5,
    min_tau: float = 0.5,
) -> tuple[float, int]:
    """One pass over ``images`` (grey levels, (n, 784)); returns (mean loss, new step count)."""
    model.train()
    perm = torch.randperm(len(images))
    total, count = 0.0, 0
    for start in range(0, len(images), batch_size):
        x = torch.bernoulli(images[perm[start:start + batch_size]])
        tau = max(min_tau, math.exp(-anneal_rate * step))
        loss = plain_loss(model, x, tau)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.item() * len(x)
        count += len(x)
        step += 1
    return total / count, step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iw-k", type=int, default=100, help="importance samples for log p(x)")
    parser.add_argument("--elbo-samples", type=int, default=10,
                        help="discrete codes per test image for the ELBO (averaged)")
    parser.add_argument("--out", type=Path, default=None, help="JSON record of the run")
    parser.add_argument("--save", type=Path, default=None, help="save the weights here")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from concrete.evaluate import evaluate_discrete
    from concrete.mnist import load_binarized_test, load_mnist

    images, _ = load_mnist(train=True)
    test = load_binarized_test()
    model = build_plain_vae(args.seed)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    step, curve, epoch_s = 0, [], []
    t_start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        loss, step = train_epoch_plain(model, opt, images, step, args.batch_size)
        epoch_s.append(time.perf_counter() - t0)
        curve.append(loss)
        print(f"epoch {epoch:3d}  train -ELBO {loss:8.2f}  {epoch_s[-1]:.1f} s", flush=True)
    train_s = time.perf_counter() - t_start
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), args.save)
    t0 = time.perf_counter()
    res = evaluate_discrete(model.encode, model.decode, test.images, n_class=N_CLASS,
                            elbo_samples=args.elbo_samples, iw_samples=args.iw_k,
                            generator=torch.Generator().manual_seed(1234))
    eval_s = time.perf_counter() - t0
    record = {
        "run": "plain loop (Gumbel-Softmax, analytic KL, Adam 1e-3, anneal 3e-5)",
        "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
        "steps": step, "train_seconds": round(train_s, 1),
        "seconds_per_epoch_median": round(sorted(epoch_s)[len(epoch_s) // 2], 2),
        "test_set": test.source, "test_neg_elbo": round(res.neg_elbo, 2),
        "test_neg_iw": round(res.neg_log_px, 2), "iw_k": args.iw_k,
        "elbo_samples": args.elbo_samples, "eval_seconds": round(eval_s, 1),
        "train_curve": [round(v, 3) for v in curve], "machine": platform.processor(),
        "threads": torch.get_num_threads(),
    }
    print(json.dumps({k: v for k, v in record.items() if k != "train_curve"}))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
