"""Steps per second of the binary latent-variable model's objectives vs a plain PyTorch loop.

Run:  CONCRETE_DATA=/work/shared/data .venv/bin/python benchmarks/bench_binary_vae.py \
          [--threads 1] [--rounds 7] [--steps 40] [--out benchmarks/results/binary/speed.json]

For both architectures of Maddison et al. (2017, App. D) -- "200H–784V" (linear) and
"200H∼784V" (two tanh layers of 200) -- and each objective of Table 1 -- Concrete m = 1, NVIL,
Concrete m = 5, VIMCO m = 5 -- one training step (batch 64 of the fixed binarized training set,
loss, backward, Adam step, the loss read back as a float) is timed

* **library**: ``concrete.binary_vae`` (``BinaryVAE`` + ``ConcreteObjective`` /
  ``NVILObjective`` / ``VIMCOObjective``, trained by ``fit_steps``, whose Adam is
  ``concrete.train.make_adam``, i.e. fused);
* **plain**: the same model and estimators written by hand below with ``torch.nn`` and
  ``torch.optim.Adam`` (its default implementation), the way one writes it without the
  library;
* **plain+fused**: the plain code with ``torch.optim.Adam(fused=True)``, to separate the
  objective's cost from the optimiser's.

Rounds are interleaved (library, plain, plain+fused, rotating the order each round) so that
machine load hits all three alike; a ratio is plain seconds / library seconds of the same
round (> 1: the library is faster), reported as the median over rounds, and steps/s as
``steps`` / the median round time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from concrete.binary_vae import (
    BinaryVAE,
    ConcreteObjective,
    NVILObjective,
    VIMCOObjective,
    fit_steps,
    load_binarized_mnist,
)
from concrete.train import make_adam

LAM1, LAM2 = 2.0 / 3.0, 0.5
OBJECTIVES = ("concrete1", "nvil", "concrete5", "vimco5")


# ------------------------------------------------------------------ the plain implementation
class PlainModel(nn.Module):
    """The same model by hand: encoder/decoder MLPs, prior logits, input centring (App. D)."""

    def __init__(self, nonlinear: bool, pixel_means: torch.Tensor) -> None:
        super().__init__()
        if nonlinear:
            self.enc = nn.Sequential(nn.Linear(784, 200), nn.Tanh(), nn.Linear(200, 200),
                                     nn.Tanh(), nn.Linear(200, 200))
            self.dec = nn.Sequential(nn.Linear(200, 200), nn.Tanh(), nn.Linear(200, 200),
                                     nn.Tanh(), nn.Linear(200, 784))
        else:
            self.enc, self.dec = nn.Linear(784, 200), nn.Linear(200, 784)
        for mod in self.modules():
            if isinstance(mod, nn.Linear):
                nn.init.xavier_uniform_(mod.weight)
                nn.init.zeros_(mod.bias)
        p = pixel_means.clamp(1e-3, 1 - 1e-3)
        with torch.no_grad():
            (self.dec[-1] if nonlinear else self.dec).bias.copy_(torch.log(p / (1 - p)))
        self.prior = nn.Parameter(torch.zeros(200))
        self.register_buffer("xbar", pixel_means.clone())

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        out = self.enc(x - self.xbar)
        with torch.no_grad():
            self.xbar.mul_(0.9).add_(0.1 * x.mean(0))
        return out

    def log_px(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        logits = self.dec(2 * z - 1)
        return -F.binary_cross_entropy_with_logits(
            logits, x.expand_as(logits), reduction="none").sum(-1)


def log_logistic(y: torch.Tensor, loc_logit: torch.Tensor, lam: float) -> torch.Tensor:
    d = loc_logit - lam * y
    return (math.log(lam) + d - 2 * F.softplus(d)).sum(-1)


def plain_concrete(model: PlainModel, x: torch.Tensor, m: int) -> torch.Tensor:
    logits = model.encode(x)
    u = torch.rand(m, *logits.shape).clamp_min(1e-38)
    y = (logits + torch.log(u) - torch.log1p(-u)) / LAM1
    log_w = (model.log_px(torch.sigmoid(y), x) + log_logistic(y, model.prior, LAM2)
             - log_logistic(y, logits, LAM1))
    return -(torch.logsumexp(log_w, 0) - math.log(m)).mean()


def bern_log_prob(logits: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return -F.binary_cross_entropy_with_logits(logits.expand_as(b), b, reduction="none").sum(-1)


class PlainNVIL(nn.Module):
    """NVIL by hand: baseline MLP 784-100-1, running mean/variance (alpha 0.8), normalisation."""

    def __init__(self, model: PlainModel) -> None:
        super().__init__()
        self.model = model
        self.baseline = nn.Sequential(nn.Linear(784, 100), nn.Tanh(), nn.Linear(100, 1))
        self.c, self.v = 0.0, 1.0

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model.encode(x)
        b = torch.bernoulli(torch.sigmoid(logits.detach()))
        log_q = bern_log_prob(logits, b)
        log_p = self.model.log_px(b, x) + bern_log_prob(self.model.prior, b)
        cx = self.baseline(x).squeeze(-1)
        lc = (log_p - log_q).detach() - cx.detach()
        self.c = 0.8 * self.c + 0.2 * lc.mean().item()
        self.v = 0.8 * self.v + 0.2 * lc.var(unbiased=False).item()
        signal = (lc - self.c) / max(1.0, math.sqrt(self.v))
        return -(log_p + signal * log_q + signal * cx).mean()


def plain_vimco(model: PlainModel, x: torch.Tensor, m: int) -> torch.Tensor:
    logits = model.encode(x)
    b = torch.bernoulli(torch.sigmoid(logits.detach()).expand(m, *logits.shape))
    log_q = bern_log_prob(logits, b)
    log_w = model.log_px(b, x) + bern_log_prob(model.prior, b) - log_q  # (m, B)
    bound = torch.logsumexp(log_w, 0) - math.log(m)
    lw = log_w.detach()
    signals = []
    for j in range(m):  # leave sample j out, put the geometric mean of the others in its place
        others = torch.cat([lw[:j], lw[j + 1:]])
        loo = torch.logsumexp(torch.cat([others, others.mean(0, keepdim=True)]), 0)
        signals.append(bound.detach() - (loo - math.log(m)))
    signal = torch.stack(signals)
    return -(bound + (signal * log_q).sum(0)).mean()


# ------------------------------------------------------------------ timing
def make_library(arch: str, objective: str, means: torch.Tensor):
    model = BinaryVAE(arch, pixel_means=means)
    obj = {"concrete1": lambda: ConcreteObjective(model, 1),
           "concrete5": lambda: ConcreteObjective(model, 5),
           "nvil": lambda: NVILObjective(model),
           "vimco5": lambda: VIMCOObjective(model, 5)}[objective]()
    return obj, make_adam(obj.parameters(), lr=1e-4)


def make_plain(arch: str, objective: str, means: torch.Tensor, fused: bool):
    model = PlainModel(arch == "nonlinear", means)
    if objective == "nvil":
        nvil = PlainNVIL(model)
        loss, params = nvil.loss, nvil.parameters()
    else:
        m = 5 if objective.endswith("5") else 1
        fn = plain_concrete if objective.startswith("concrete") else plain_vimco
        loss, params = (lambda x: fn(model, x, m)), model.parameters()
    return loss, torch.optim.Adam(params, lr=1e-4, fused=fused or None)


def time_plain(loss, opt, train: torch.Tensor, steps: int, gen: torch.Generator) -> float:
    idx = torch.randint(len(train), (steps, 64), generator=gen)
    t0 = time.perf_counter()
    for i in range(steps):
        value = loss(train[idx[i]])
        opt.zero_grad()
        value.backward()
        opt.step()
        value.item()
    return time.perf_counter() - t0


def time_library(obj, opt, train: torch.Tensor, steps: int, seed: int) -> float:
    t0 = time.perf_counter()
    fit_steps(obj, train, steps=steps, lr=1e-4, batch_size=64, seed=seed, optimizer=opt)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=40, help="steps per timed block")
    ap.add_argument("--archs", nargs="+", default=["linear", "nonlinear"])
    ap.add_argument("--objectives", nargs="+", default=list(OBJECTIVES))
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_binarized_mnist()
    train, means = data.train, data.pixel_means
    rows = []
    for arch in args.archs:
        for objective in args.objectives:
            torch.manual_seed(0)
            runners = {
                "library": make_library(arch, objective, means),
                "plain": make_plain(arch, objective, means, fused=False),
                "plain+fused": make_plain(arch, objective, means, fused=True),
            }
            gen = torch.Generator().manual_seed(1)
            times: dict[str, list[float]] = {k: [] for k in runners}
            names = list(runners)
            for r in range(args.rounds + 1):  # round 0: warm-up, not counted
                order = names[r % 3:] + names[: r % 3]
                for name in order:
                    a, b = runners[name]
                    if name == "library":
                        t = time_library(a, b, train, args.steps, seed=r)
                    else:
                        t = time_plain(a, b, train, args.steps, gen)
                    if r:
                        times[name].append(t)
            lib = times["library"]
            row = {
                "arch": arch, "objective": objective,
                "steps_per_s": {k: round(args.steps / statistics.median(v), 1)
                                for k, v in times.items()},
                "ratio_plain": round(statistics.median(
                    p / q for p, q in zip(times["plain"], lib, strict=True)), 3),
                "ratio_plain_fused": round(statistics.median(
                    p / q for p, q in zip(times["plain+fused"], lib, strict=True)), 3),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    record = {
        "script": "benchmarks/bench_binary_vae.py", "threads": args.threads,
        "rounds": args.rounds, "steps_per_block": args.steps, "batch_size": 64,
        "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(), "loadavg_end": os.getloadavg(), "data": data.source,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": rows,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1))
    print("| arch | objective | library steps/s | plain steps/s | plain+fused steps/s | "
          "plain / library | plain+fused / library |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        s = r["steps_per_s"]
        print(f"| {r['arch']} | {r['objective']} | {s['library']} | {s['plain']} | "
              f"{s['plain+fused']} | {r['ratio_plain']:.2f}x | {r['ratio_plain_fused']:.2f}x |")


if __name__ == "__main__":
    main()
