"""A control for chapter 7: train the hand-written plain PyTorch model and estimators.

Run:  CONCRETE_DATA=/work/shared/data taskset -c 1 .venv/bin/python benchmarks/plain_control.py \
          --arch linear --objective nvil --steps 60000 --seed 0

The plain implementation of ``bench_binary_vae.py`` (``PlainModel``, ``PlainNVIL``,
``plain_concrete``: the binary latent-variable model of Maddison et al. 2017, App. D, and its
estimators written with ``torch.nn`` only, no training code of the library) is trained for
``--steps`` minibatches of 64 fixed-binarized training images (uniform with replacement) with
``torch.optim.Adam(lr, fused=True)`` -- the same algorithm as the library's ``fit_steps``,
which samples without replacement within an epoch. The trained weights are then copied into a
:class:`concrete.binary_vae.BinaryVAE` and scored with the same evaluation as every chapter-7
record: −L_1000 with discrete codes on every fifth test image (``test[::5]``, the issue's
calibration images; noise seed 12345, as ``paper_table.py --every-fifth``) and on the 2000
random test images of ``paper_table.py``'s records (``random_subset(test, 2000, seed=0)``).

So a difference between a record of ``paper_table.py`` and this script's record at the same
steps and learning rate is a difference of implementation, not of protocol. ``--baseline-lr``
gives NVIL's baseline network its own Adam learning rate (a diagnostic; default: ``--lr``).
Writes ``<out-dir>/<arch>_<objective>[_blr<r>]_lr<lr>_<steps>_s<seed>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
from bench_binary_vae import PlainModel, PlainNVIL, plain_concrete

from concrete.binary_vae import BinaryVAE, evaluate_bound, load_binarized_mnist, random_subset

RESULTS = Path(__file__).resolve().parent / "results" / "binary" / "plain_control"


def _linear_layers(net: torch.nn.Module) -> list[torch.nn.Linear]:
    """The affine layers of ``net`` in order (``net`` itself when it is one)."""
    return [m for m in net.modules() if isinstance(m, torch.nn.Linear)]


def to_library(plain: PlainModel, arch: str) -> BinaryVAE:
    """The plain model's weights in a :class:`BinaryVAE` (same layers, same order)."""
    model = BinaryVAE(arch)
    with torch.no_grad():
        for src, dst in zip(_linear_layers(plain.enc) + _linear_layers(plain.dec),
                            _linear_layers(model.encoder) + _linear_layers(model.decoder),
                            strict=True):
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)
        model.prior_logits.copy_(plain.prior)
        model.input_mean.copy_(plain.xbar)
    return model.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=["linear", "nonlinear"], default="linear")
    ap.add_argument("--objective", choices=["concrete1", "nvil"], default="nvil")
    ap.add_argument("--steps", type=int, default=60_000)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--baseline-lr", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-k", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out-dir", type=Path, default=RESULTS)
    args = ap.parse_args()
    if args.baseline_lr is not None and args.objective != "nvil":
        raise ValueError(f"--baseline-lr applies to --objective nvil, got {args.objective!r}")
    if args.baseline_lr is not None and not args.baseline_lr > 0:
        raise ValueError(f"--baseline-lr must be positive, got {args.baseline_lr}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data = load_binarized_mnist()
    train = data.train
    plain = PlainModel(args.arch == "nonlinear", data.pixel_means)
    if args.objective == "nvil":
        nvil = PlainNVIL(plain)
        loss_fn = nvil.loss
        base = list(nvil.baseline.parameters())
        rest = [p for p in nvil.parameters() if all(p is not q for q in base)]
        groups = [{"params": rest},
                  {"params": base, "lr": args.lr if args.baseline_lr is None else args.baseline_lr}]
    else:
        def loss_fn(x: torch.Tensor) -> torch.Tensor:
            return plain_concrete(plain, x, 1)
        groups = [{"params": list(plain.parameters())}]
    opt = torch.optim.Adam(groups, lr=args.lr, fused=True)
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        x = train[torch.randint(len(train), (64,), generator=gen)]
        loss = loss_fn(x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 10_000 == 0:
            seconds = time.perf_counter() - t0
            print(f"step {step} ({seconds:.0f} s) loss {float(loss.detach()):.2f}", flush=True)
    seconds = time.perf_counter() - t0
    model = to_library(plain, args.arch)
    every5 = evaluate_bound(model, data.test[::5].contiguous(), k=args.eval_k,
                            generator=torch.Generator().manual_seed(12345))
    rand = evaluate_bound(model, random_subset(data.test, 2000, seed=0), k=args.eval_k,
                          generator=torch.Generator().manual_seed(12345))
    blr = "" if args.baseline_lr is None else f"_blr{args.baseline_lr:g}"
    tag = f"{args.arch}_{args.objective}{blr}_lr{args.lr:g}_{args.steps}_s{args.seed}"
    record = {
        "script": "benchmarks/plain_control.py", "implementation": "bench_binary_vae.Plain*",
        "arch": args.arch, "objective": args.objective, "steps": args.steps, "lr": args.lr,
        "baseline_lr": args.baseline_lr, "seed": args.seed, "batch_size": 64,
        "sampling": "uniform with replacement", "optimizer": "torch.optim.Adam(fused=True)",
        "train_seconds": round(seconds, 1), "steps_per_second": round(args.steps / seconds, 1),
        "eval_k": args.eval_k, "data": data.source, "threads": args.threads,
        "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "every5": {"images": "test[::5]", "n": len(every5.iw),
                   "test_neg_lk": round(every5.neg_log_px, 3),
                   "test_stderr": round(every5.stderr, 3)},
        "random2000": {"images": "random_subset(test, 2000, seed=0)", "n": len(rand.iw),
                       "test_neg_lk": round(rand.neg_log_px, 3),
                       "test_stderr": round(rand.stderr, 3)},
    }
    print(json.dumps(record), flush=True)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{tag}.json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
