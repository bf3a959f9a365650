"""Milliseconds per gradient of the ``concrete.estimators`` on the chapter-5 categorical VAE.

Run:

    CONCRETE_DATA=/work/shared/data .venv/bin/python benchmarks/bench_estimators.py \
        [--rounds 5] [--ks 1 10 100] [--threads 1] [--device cpu] \
        [--out benchmarks/results/estimators_speed.json]

Model: ``concrete.mnist.mnist_vae()`` as chapter 5 builds it (20 latents × 10 classes, encoder
784-512-256-200, decoder 200-256-512-784, ReLU, Bernoulli pixels; weights at their seeded
initialisation: speed does not depend on them), on the first 100 images of the fixed binarized
MNIST test set (random binary images of that shape when the data are missing). One *gradient*
is everything a training step needs before the optimiser: encoder forward, the estimator's
surrogate of E_q[-log p(x|b)] (``f`` = the decoder's negative log-likelihood, ``(K, 100)``)
plus the analytic categorical KL, and ``backward()`` into every parameter.

Each estimator runs at K ∈ {1, 10, 100} (K discrete samples averaged; for Gumbel-Rao K is the
number of conditional Gumbel draws for one discrete sample), in two implementations:

* ``vectorised``: the library (``concrete.estimators``): the K samples are stacked on a leading
  dimension, so the decoder runs once on K·100 codes;
* ``looped``: a plain reference written the obvious way, a Python loop over the K samples
  (``torch.distributions.Categorical``, ``torch.nn.functional.gumbel_softmax``, one decoder
  call per sample), computing the same estimate.

Timings interleave the two implementations round by round (the order alternates), each
configuration once per round; the table gives the median over rounds and the median of the
per-round ratios looped / vectorised (> 1: the library is faster). Only ratios from one run are
meaningful: other processes share the machine.

Each round also times the *floor*: the encoder forward and backward, the KL, and ``f`` forward
and backward on fixed one-hot codes -- as many codes as the estimator evaluates ``f`` at (K·100;
100 for Gumbel-Rao) -- and, for REBAR and RELAX, ``f`` and its gradient with respect to the code
at 2·K·100 fixed relaxed codes (their control variate's two relaxed evaluations), with no
sampling and no estimator arithmetic. Every implementation does
at least this work, so ``bound`` = median of the per-round ratios looped / floor is the largest
speed-up over the loop that *any* vectorised implementation could reach on this machine.

``--device cuda`` (or ``mps``) runs model, data and estimators on that device; every timed
gradient then ends with the device's ``synchronize()``, so a time is the work done, not the
launches queued. The default is the CPU; ``--device auto`` takes ``concrete.get_device()``
(``CONCRETE_DEVICE``, else cuda, then mps, then cpu).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

import concrete.estimators as E
from concrete.kl import categorical_kl

TEMPERATURE = 2 / 3  # chapter 5's posterior temperature (lambda_1)
BATCH = 100


def load_batch() -> tuple[Tensor, str]:
    """The first 100 images of the fixed binarized test set, or random binary images."""
    try:
        from concrete.mnist import load_binarized_test

        test = load_binarized_test(download=False)
        return test.images[:BATCH].clone(), f"MNIST ({test.source} binarized test set)"
    except Exception as err:  # noqa: BLE001 - any failure: fall back to random data
        g = torch.Generator().manual_seed(0)
        x = (torch.rand(BATCH, 784, generator=g) < 0.13).float()
        return x, f"random binary images (MNIST unavailable: {type(err).__name__})"


def make_f(model, x: Tensor) -> Callable[[Tensor], Tensor]:
    """f(b) = -log p(x | b): ``(K, B, N, n) -> (K, B)`` (Bernoulli pixels)."""

    def f(b: Tensor) -> Tensor:
        logits_x = model.decoder(b.flatten(-2))
        return F.binary_cross_entropy_with_logits(
            logits_x, x.expand_as(logits_x), reduction="none"
        ).sum(-1)

    return f


# -- the plain references: a Python loop over the K samples -----------------------------------


def _one_hot(idx: Tensor, n: int, like: Tensor) -> Tensor:
    return F.one_hot(idx, n).to(like.dtype)


def _gumbel_like(t: Tensor) -> Tensor:
    u = torch.rand_like(t).clamp_min(torch.finfo(t.dtype).tiny)
    return -torch.log(-torch.log(u))


def _conditional_gumbel(logits: Tensor, b: Tensor) -> Tensor:
    """z ~ p(z | argmax z = b), the textbook formula (Tucker et al. 2017, App. C)."""
    v = torch.rand_like(logits).clamp_min(torch.finfo(logits.dtype).tiny)
    top = torch.logsumexp(logits, -1, keepdim=True) - torch.log(-torch.log(v))
    z_k = (top * b).sum(-1, keepdim=True)
    others = -torch.log(torch.exp(-z_k) - torch.log(v) * torch.exp(-logits))
    return b * z_k + (1 - b) * others


def loop_score(logits: Tensor, f, k: int, loo: bool) -> Tensor:
    d = torch.distributions.Categorical(logits=logits)
    n = logits.shape[-1]
    fs, lps = [], []
    for _ in range(k):
        idx = d.sample()
        fs.append(f(_one_hot(idx, n, logits).unsqueeze(0))[0])
        lps.append(d.log_prob(idx).sum(-1))
    total = 0.0
    fsum = sum(fb.detach() for fb in fs)
    for fb, lp in zip(fs, lps, strict=True):
        base = (fsum - fb.detach()) / (k - 1) if loo else 0.0
        total = total + fb + (fb.detach() - base) * (lp - lp.detach())
    return total.sum() / k


def loop_straight_through(logits: Tensor, f, k: int) -> Tensor:
    d = torch.distributions.Categorical(logits=logits)
    p = torch.softmax(logits, -1)
    total = 0.0
    for _ in range(k):
        b = _one_hot(d.sample(), logits.shape[-1], logits)
        total = total + f((b + p - p.detach()).unsqueeze(0))[0]
    return total.sum() / k


def loop_gumbel_softmax(logits: Tensor, f, k: int, hard: bool) -> Tensor:
    total = 0.0
    for _ in range(k):
        total = total + f(F.gumbel_softmax(logits, tau=TEMPERATURE, hard=hard).unsqueeze(0))[0]
    return total.sum() / k


def loop_gumbel_rao(logits: Tensor, f, k: int) -> Tensor:
    z = logits.detach() + _gumbel_like(logits)
    b = _one_hot(z.argmax(-1), logits.shape[-1], logits)
    soft = torch.softmax((logits + (z - logits.detach())) / TEMPERATURE, -1)
    for _ in range(k - 1):
        zc = _conditional_gumbel(logits.detach(), b)
        soft = soft + torch.softmax((logits + (zc - logits.detach())) / TEMPERATURE, -1)
    soft = soft / k
    return f((b + soft - soft.detach()).unsqueeze(0))[0].sum()


def loop_control(logits: Tensor, f, k: int, control, params: list[Tensor] | None) -> Tensor:
    """REBAR (``params=None``) / RELAX: per-sample estimate w.r.t. the logits, averaged."""
    n = logits.shape[-1]
    theta = logits.detach().requires_grad_()
    p = torch.softmax(theta, -1)
    g = 0.0
    fsum = 0.0
    for _ in range(k):
        z = theta + _gumbel_like(theta)
        b = _one_hot(z.detach().argmax(-1), n, theta)
        zc = theta + (_conditional_gumbel(theta, b) - theta)  # reparameterised in theta
        fb = f(b.unsqueeze(0))[0]
        c_z, c_c = control(z.unsqueeze(0))[0], control(zc.unsqueeze(0))[0]
        score = (fb.detach() - c_c).reshape(-1, 1, 1) * (b - p.detach())
        (rep,) = torch.autograd.grad((c_z - c_c).sum(), theta, create_graph=params is not None)
        g = g + score + rep
        fsum = fsum + fb
    g = g / k
    out = fsum.sum() / k + (g.detach() * logits).sum() - (g.detach() * logits.detach()).sum()
    if params:
        grads = torch.autograd.grad((g**2).sum(), params)
        for q, gq in zip(params, grads, strict=True):
            out = out + (gq.detach() * q).sum() - (gq.detach() * q.detach()).sum()
    return out


# -- the benchmark ------------------------------------------------------------------------------


def configurations(f, ks: list[int]):
    """(name, K, vectorised surrogate fn, looped surrogate fn) for every case."""
    rebar_control = E.RelaxControl(
        f, kind="categorical", temperature=TEMPERATURE, learn_temperature=False, learn_eta=False
    )
    relax_control = E.RelaxControl(f, kind="categorical", temperature=TEMPERATURE)
    relax_params = list(relax_control.parameters())
    lam = TEMPERATURE
    cases = []
    for k in ks:
        vec = {
            "reinforce": lambda lg, k=k: E.score_function(lg, f, samples=k),
            "rloo": lambda lg, k=k: E.score_function(lg, f, samples=k, baseline="loo"),
            "straight_through": lambda lg, k=k: E.straight_through(lg, f, samples=k),
            "gumbel_softmax": lambda lg, k=k: E.gumbel_softmax_estimator(
                lg, f, temperature=lam, samples=k
            ),
            "st_gumbel_softmax": lambda lg, k=k: E.st_gumbel_softmax(
                lg, f, temperature=lam, samples=k
            ),
            "gumbel_rao": lambda lg, k=k: E.gumbel_rao(lg, f, temperature=lam, rao_samples=k),
            "rebar": lambda lg, k=k: E.rebar(lg, f, temperature=lam, samples=k),
            "relax": lambda lg, k=k: E.relax(lg, f, relax_control, samples=k),
        }
        loop = {
            "reinforce": lambda lg, k=k: loop_score(lg, f, k, loo=False),
            "rloo": lambda lg, k=k: loop_score(lg, f, k, loo=True),
            "straight_through": lambda lg, k=k: loop_straight_through(lg, f, k),
            "gumbel_softmax": lambda lg, k=k: loop_gumbel_softmax(lg, f, k, hard=False),
            "st_gumbel_softmax": lambda lg, k=k: loop_gumbel_softmax(lg, f, k, hard=True),
            "gumbel_rao": lambda lg, k=k: loop_gumbel_rao(lg, f, k),
            "rebar": lambda lg, k=k: loop_control(lg, f, k, rebar_control, None),
            "relax": lambda lg, k=k: loop_control(lg, f, k, relax_control, relax_params),
        }
        for name in vec:
            if name == "rloo" and k < 2:
                continue
            cases.append((name, k, vec[name], loop[name]))
    return cases, [relax_control]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--ks", type=int, nargs="+", default=[1, 10, 100])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--only", nargs="*", default=None, help="estimator names to run")
    p.add_argument(
        "--f",
        default="decoder",
        choices=["decoder", "linear"],
        help="decoder: f = -log p(x|b) (the model); linear: f = a fixed linear function of the "
        "code (the estimators' own cost: sampling, relaxations, conditional draws, autograd)",
    )
    p.add_argument(
        "--device",
        default="cpu",
        help="cpu, cuda, mps, ... or auto (concrete.get_device(): cuda, then mps, then cpu)",
    )
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from concrete import get_device
    from concrete.mnist import mnist_vae

    try:
        device = get_device(None if args.device == "auto" else args.device)
    except (ValueError, RuntimeError) as err:
        raise SystemExit(f"--device {args.device!r} is not usable here: {err}") from err

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elif device.type == "mps":
            torch.mps.synchronize()

    model = mnist_vae().to(device)
    x, data = load_batch()
    x = x.to(device)
    if args.f == "decoder":
        f = make_f(model, x)
    else:
        w = torch.randn(
            model.n_latents, model.n_classes, generator=torch.Generator().manual_seed(1)
        ).to(device)

        def f(b: Tensor) -> Tensor:
            return (b * w).sum((-1, -2))

    cases, extra = configurations(f, args.ks)
    if args.only:
        cases = [c for c in cases if c[0] in args.only]
    for m in extra:
        m.to(device)
    params = list(model.parameters()) + [q for m in extra for q in m.parameters()]

    def step(surrogate_fn) -> float:
        for q in params:
            q.grad = None
        sync()
        t0 = time.perf_counter()
        logits = model.encode(x)
        loss = surrogate_fn(logits) + categorical_kl(logits, model.prior_logits).sum()
        loss.backward()
        sync()
        return time.perf_counter() - t0

    # The floor: the arithmetic every implementation of an estimator must do -- the encoder
    # forward and backward, the KL, and f forward and backward on the codes it evaluates f at
    # (K·100 fixed one-hot codes; 100 for Gumbel-Rao, which evaluates f at one discrete
    # sample; REBAR and RELAX also evaluate f at 2·K·100 relaxed codes and need its gradient
    # with respect to them), with no sampling and no estimator work. looped / floor bounds the
    # speed-up that any vectorisation could reach over the loop on this machine.
    gen = torch.Generator().manual_seed(2)
    upstream = torch.randn(BATCH, model.n_latents, model.n_classes, generator=gen).to(device)
    shape = (BATCH, model.n_latents, model.n_classes)

    def floor_fn(k: int, control: bool):
        idx = torch.randint(model.n_classes, (k, BATCH, model.n_latents), generator=gen)
        codes = F.one_hot(idx, model.n_classes).float().to(device)
        relaxed = torch.softmax(torch.randn((2 * k, *shape), generator=gen), -1).to(device)

        def surrogate(logits: Tensor) -> Tensor:
            if control:
                soft = relaxed.clone().requires_grad_()
                torch.autograd.grad(f(soft).sum(), soft)
            return f(codes).sum() / k + (logits * upstream).sum()

        return surrogate

    def floor_key(name: str, k: int) -> tuple[int, bool]:
        if name == "gumbel_rao":
            return (1, False)
        return (k, name in ("rebar", "relax"))

    floors = {key: floor_fn(*key) for key in sorted({floor_key(n, k) for n, k, _, _ in cases})}

    for _, _, vec, loop in cases:  # warm-up
        step(vec)
        step(loop)
    for fl in floors.values():
        step(fl)
    times: dict[tuple[str, int], dict[str, list[float]]] = {
        (name, k): {"vectorised": [], "looped": []} for name, k, _, _ in cases
    }
    floor_times: dict[tuple[int, bool], list[float]] = {key: [] for key in floors}
    loads = [os.getloadavg()[0]]
    for r in range(args.rounds):
        for name, k, vec, loop in cases:
            pair = [("vectorised", vec), ("looped", loop)]
            if r % 2:
                pair.reverse()
            for label, fn in pair:
                times[(name, k)][label].append(step(fn))
        for key, fl in floors.items():
            floor_times[key].append(step(fl))
        loads.append(os.getloadavg()[0])
        print(f"round {r + 1}/{args.rounds} done, load average {loads[-1]:.1f}", flush=True)

    rows = []
    print(
        f"\n{'estimator':18s} {'K':>4s} {'vectorised ms':>14s} {'looped ms':>10s} {'ratio':>7s}"
        f" {'floor ms':>9s} {'bound':>7s}"
    )
    for (name, k), t in times.items():
        ratios = [lo / ve for lo, ve in zip(t["looped"], t["vectorised"], strict=True)]
        fl = floor_times[floor_key(name, k)]
        bounds = [lo / f0 for lo, f0 in zip(t["looped"], fl, strict=True)]
        row = {
            "estimator": name,
            "K": k,
            "vectorised_ms": 1e3 * statistics.median(t["vectorised"]),
            "looped_ms": 1e3 * statistics.median(t["looped"]),
            "ratio_median": statistics.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
            "vectorised_ms_all": [1e3 * v for v in t["vectorised"]],
            "looped_ms_all": [1e3 * v for v in t["looped"]],
            "floor_codes": floor_key(name, k)[0] * BATCH,
            "floor_relaxed_codes": 2 * k * BATCH if floor_key(name, k)[1] else 0,
            "floor_ms": 1e3 * statistics.median(fl),
            "bound_median": statistics.median(bounds),
            "bound_max": max(bounds),
        }
        rows.append(row)
        print(
            f"{name:18s} {k:4d} {row['vectorised_ms']:14.1f} {row['looped_ms']:10.1f} "
            f"{row['ratio_median']:6.2f}x {row['floor_ms']:9.1f} {row['bound_median']:6.2f}x"
        )
    record = {
        "script": "benchmarks/bench_estimators.py",
        "model": "concrete.mnist.mnist_vae() (20 x 10 categorical, 784-512-256, Bernoulli)",
        "data": data,
        "f": args.f,
        "batch": BATCH,
        "temperature": TEMPERATURE,
        "rounds": args.rounds,
        "threads": args.threads,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_during": loads,
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "rows": rows,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
