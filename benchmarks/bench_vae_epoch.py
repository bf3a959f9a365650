"""Seconds per epoch: our DiscreteVAE + fit() vs the seed's approach, in the same run.

The baseline re-implements the seed post's discrete VAE plainly: the same MLPs (3072-200-3 and
3-200-3072), ``torch.distributions.RelaxedOneHotCategorical`` for the posterior and the
prior (its ``log_prob`` goes through ExpRelaxedCategorical), a ``DataLoader`` with
``shuffle=True``, Adam (lr 1e-3, weight decay 1e-6), batch 128, and a ``.item()`` per step for
the running averages, as the seed does. Both train on the shapes data (3000 images).

Usage::

    python benchmarks/bench_vae_epoch.py [--epochs 3] [--repeats 3] [--threads 1] [--device cpu]

Prints the median seconds per epoch of each and the ratio ours / baseline (< 1: ours faster).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.distributions as dists
from torch import nn
from torch.utils.data import DataLoader

from concrete import get_device, seed_everything
from concrete.data import shapes_dataset
from concrete.models import DiscreteVAE
from concrete.train import fit


class SeedDiscreteVAE(nn.Module):
    """The seed post's model: RelaxedOneHotCategorical posterior/prior, sigma = 0.1."""

    def __init__(self, d: int = 3 * 32 * 32, k: int = 3, hidden: int = 200) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, k))
        self.decoder = nn.Sequential(nn.Linear(k, hidden), nn.ReLU(), nn.Linear(hidden, d))
        self.register_buffer("lam1", torch.tensor([2 / 3]))
        self.register_buffer("lam2", torch.tensor([2.0]))
        self.register_buffer("prior_probs", torch.ones(k) / k)

    def compute_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        probs = self.encoder(x.flatten(1)).exp()
        q = dists.RelaxedOneHotCategorical(self.lam1, probs)
        z = q.rsample()
        x_tilde = self.decoder(z).view_as(x)
        nll = -dists.Normal(x_tilde, 0.1).log_prob(x).sum((1, 2, 3)).mean()
        p = dists.RelaxedOneHotCategorical(self.lam2, self.prior_probs)
        kl = (q.log_prob(z) - p.log_prob(z)).mean()
        return nll + kl, nll, kl


def plain_epochs(data, epochs: int, device: torch.device) -> list[float]:
    """The seed's loop; returns seconds per epoch."""
    seed_everything(0)
    model = SeedDiscreteVAE().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-6)
    loader = DataLoader(data, batch_size=128, shuffle=True, num_workers=0)
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        avg_kl = avg_nll = 0.0
        for x, _label in loader:
            x = x.to(device)
            opt.zero_grad()
            loss, nll, kl = model.compute_loss(x)
            loss.backward()
            opt.step()
            avg_kl += kl.item() / len(loader)
            avg_nll += nll.item() / len(loader)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return times


def our_epochs(data, epochs: int, device: torch.device) -> list[float]:
    """Our DiscreteVAE trained with fit(); seconds per epoch from the per-epoch callback."""
    seed_everything(0)
    model = DiscreteVAE((3, 32, 32))
    stamps = [time.perf_counter()]

    def tick(epoch: int, model: nn.Module, metrics: dict[str, float]) -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    fit(model, data, epochs=epochs, device=device, log=False, live=False, plot=False, callback=tick)
    # the first interval includes moving the data to the device once
    return [b - a for a, b in zip(stamps[:-1], stamps[1:], strict=True)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3, help="epochs per timed run")
    ap.add_argument("--repeats", type=int, default=3, help="alternating runs of each")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    ap.add_argument("--device", default=None, help="cpu / cuda (default: get_device())")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = get_device(args.device)
    data = shapes_dataset(copies=1000)
    ours: list[float] = []
    plain: list[float] = []
    for _ in range(args.repeats):  # alternate so both see the same machine load
        plain += plain_epochs(data, args.epochs, device)[1:]
        ours += our_epochs(data, args.epochs, device)[1:]
    o, p = statistics.median(ours), statistics.median(plain)
    print(f"device {device}, threads {args.threads}, 3000 images, batch 128 (24 steps/epoch)")
    print(f"seed-style plain loop (RelaxedOneHotCategorical + DataLoader): {p:.3f} s/epoch")
    print(f"concrete DiscreteVAE + fit():                                  {o:.3f} s/epoch")
    print(f"ratio ours / plain: {o / p:.2f}")


if __name__ == "__main__":
    main()
