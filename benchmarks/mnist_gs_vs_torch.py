"""Does ``concrete.gumbel_softmax`` train the chapter-5 model like ``F.gumbel_softmax``?

Run:  CONCRETE_DATA=/work/shared/data .venv/bin/python benchmarks/mnist_gs_vs_torch.py \
          [--epochs 2] [--seeds 0 1 2 3] [--subset 60000]

Trains ``concrete.mnist.mnist_vae("gumbel_softmax")`` with ``concrete.train.fit`` (batch 100,
Adam 1e-3, τ_t = max(0.5, exp(−3e-5 t)), dynamic binarization) once with the library's
``gumbel_softmax`` and once with ``torch.nn.functional.gumbel_softmax`` swapped into
``concrete.models`` — same seed, same initial weights, same batches; only the relaxation
function (and so its noise draws) differs. Reports the discrete test −ELBO (1 code per image)
of each run and the paired differences ours − torch with their mean and standard error: a
mean difference within ~2 standard errors of 0 says the two train alike.
"""

from __future__ import annotations

import argparse
import math
import statistics

import torch
import torch.nn.functional as F

import concrete.models as models_module
from concrete.evaluate import evaluate_discrete
from concrete.mnist import DynamicBinarize, exp_anneal, load_binarized_test, load_mnist, mnist_vae
from concrete.train import fit


def run(images: torch.Tensor, test: torch.Tensor, seed: int, epochs: int, use_torch: bool) -> float:
    original = models_module.gumbel_softmax
    if use_torch:
        models_module.gumbel_softmax = lambda logits, tau, hard=False: F.gumbel_softmax(
            logits, tau=tau, hard=hard)
    try:
        torch.manual_seed(seed)
        model = mnist_vae("gumbel_softmax")
        fit(model, images, epochs=epochs, batch_size=100, lr=1e-3, weight_decay=0.0, seed=seed,
            device="cpu", temperature_schedule=exp_anneal(3e-5, 0.5), transform=DynamicBinarize(),
            live=False, log=False, plot=False)
    finally:
        models_module.gumbel_softmax = original
    model.eval()
    with torch.no_grad():
        res = evaluate_discrete(model.encode, model.decoder_params, test, n_class=10,
                                elbo_samples=1, iw_samples=1, prior_logits=model.prior_logits,
                                generator=torch.Generator().manual_seed(0))
    return res.neg_elbo


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    p.add_argument("--subset", type=int, default=60_000)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    images, _ = load_mnist(train=True)
    images = images[: args.subset]
    test = load_binarized_test().images
    diffs = []
    print(f"{'seed':>4} {'ours':>9} {'torch':>9} {'ours-torch':>11}")
    for seed in args.seeds:
        ours = run(images, test, seed, args.epochs, use_torch=False)
        ref = run(images, test, seed, args.epochs, use_torch=True)
        diffs.append(ours - ref)
        print(f"{seed:>4} {ours:9.2f} {ref:9.2f} {ours - ref:11.2f}", flush=True)
    mean = statistics.fmean(diffs)
    se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else float("nan")
    print(f"mean difference {mean:.2f} nats, standard error {se:.2f} "
          f"({len(diffs)} seeds, {args.epochs} epochs, {len(images)} images/epoch)")


if __name__ == "__main__":
    main()
