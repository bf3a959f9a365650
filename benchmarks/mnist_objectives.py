"""Train the chapter-5 categorical VAE with ``concrete.train.fit`` under one recipe and evaluate it.

Run (one recipe per call; results accumulate as JSON files):

    CONCRETE_DATA=/work/shared/data .venv/bin/python benchmarks/mnist_objectives.py \
        --objective gumbel_softmax --epochs 100 --lr 2e-3 --lr-final 0.1 \
        --out benchmarks/results/gs_100ep.json

Model: ``concrete.mnist.mnist_vae`` (20 latents × 10 classes, MLP 784-512-256, Bernoulli).
Objectives: ``concrete`` (ExpConcrete posterior at λ1, single-sample log-space KL against an
ExpConcrete prior at λ2), ``gumbel_softmax`` (analytic categorical KL), ``straight_through``.
Temperature: fixed λ1 (``--anneal-rate 0``) or annealed τ_t = max(τ_min, exp(−r t)).
Optimiser: Adam (``--lr``, weight decay 0), optional exponential learning-rate decay to
``lr · lr_final`` at the last step. Training data: the 60 000 torchvision training images with
dynamic binarization. Optional last phases: ``--st-from E`` switches to the straight-through
objective after E epochs; ``--decoder-epochs D`` then trains the decoder alone (encoder frozen)
on exact one-hot samples of q(z|x) at ``--decoder-lr`` (the record then also holds the test
bounds before that phase, ``relaxed_only``). Evaluation:
``concrete.evaluate.evaluate_discrete`` on the fixed binarized test set with discrete codes —
−ELBO (``--elbo-samples`` codes per image, averaged) and the importance-weighted bound with
``--iw-k`` samples. Prints and writes a JSON record.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from concrete.evaluate import evaluate_discrete, inactive_units
from concrete.mnist import (
    DynamicBinarize,
    exp_anneal,
    exp_lr_decay,
    load_binarized_test,
    load_mnist,
    mnist_vae,
)
from concrete.train import fit


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--objective", default="gumbel_softmax",
                   choices=["concrete", "gumbel_softmax", "straight_through"])
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-final", type=float, default=1.0, help="final LR factor (1 = constant)")
    p.add_argument("--hold", type=float, default=0.0,
                   help="fraction of the steps at the full LR before the decay (chapter 5: 0.8)")
    p.add_argument("--tau", type=float, default=1.0, help="λ1 (start of the annealing)")
    p.add_argument("--anneal-rate", type=float, default=3e-5, help="0: fixed temperature")
    p.add_argument("--min-tau", type=float, default=0.5)
    p.add_argument("--prior-tau", type=float, default=2.0, help="λ2 (concrete objective)")
    p.add_argument("--st-from", type=int, default=None,
                   help="switch to the straight-through objective after this many epochs")
    p.add_argument("--data-mean", action="store_true",
                   help="start the decoder as the constant mean training image")
    p.add_argument("--decoder-epochs", type=int, default=0,
                   help="then train the decoder alone on discrete codes (encoder frozen)")
    p.add_argument("--decoder-lr", type=float, default=1e-4)
    p.add_argument("--activation", default="ReLU", choices=["ReLU", "LeakyReLU", "ELU"],
                   help="hidden-layer activation (torch.nn class name)")
    p.add_argument("--warmup", type=int, default=0,
                   help="linear learning-rate warm-up over this many steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iw-k", type=int, default=100)
    p.add_argument("--elbo-samples", type=int, default=10)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--save", type=Path, default=None, help="save the weights here")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    images, labels = load_mnist(train=True)
    test = load_binarized_test()
    n_steps = args.epochs * -(-len(images) // args.batch_size)
    torch.manual_seed(args.seed)
    model = mnist_vae(args.objective, posterior_temperature=args.tau,
                      prior_temperature=args.prior_tau,
                      data_mean=images.mean(0) if args.data_mean else None,
                      activation=getattr(torch.nn, args.activation))
    anneal = exp_anneal(args.anneal_rate, args.min_tau, args.tau) if args.anneal_rate else None
    lr_sched = (exp_lr_decay(n_steps, args.lr_final, args.hold, args.warmup)
                if args.lr_final != 1.0 or args.warmup else None)

    def switch(epoch: int, m: torch.nn.Module, stats: dict[str, float]) -> None:
        if args.st_from is not None and epoch + 1 >= args.st_from:
            m.objective = "straight_through"

    hist = fit(model, images, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
               weight_decay=0.0, seed=args.seed, device="cpu", temperature_schedule=anneal,
               lr_schedule=lr_sched,
               transform=DynamicBinarize(), live=False,
               callback=switch)
    def evaluate() -> dict[str, float]:
        model.eval()
        t0 = time.perf_counter()
        with torch.no_grad():
            res = evaluate_discrete(model.encode, model.decoder_params, test.images, n_class=10,
                                    elbo_samples=args.elbo_samples, iw_samples=args.iw_k,
                                    prior_logits=model.prior_logits,
                                    generator=torch.Generator().manual_seed(1234))
        model.train()
        return {"test_neg_elbo": round(res.neg_elbo, 2), "test_rec": round(res.rec, 2),
                "test_kl": round(res.kl, 2), "test_neg_iw": round(res.neg_log_px, 2),
                "eval_seconds": round(time.perf_counter() - t0, 1)}

    phases = {}
    seconds = hist.seconds
    if args.decoder_epochs:
        phases["relaxed_only"] = evaluate()
        model.encoder.requires_grad_(False)
        dec = fit(model, images, epochs=args.decoder_epochs, batch_size=args.batch_size,
                  lr=args.decoder_lr, weight_decay=0.0, seed=args.seed + 1, device="cpu",
                  transform=DynamicBinarize(), loss_kwargs={"discrete": True}, live=False)
        model.encoder.requires_grad_(True)
        phases["decoder_seconds"] = round(dec.seconds, 1)
        seconds += dec.seconds
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), args.save)
    final = evaluate()
    dead = inactive_units(model, test.images)  # record keys: encoder1, ..., decoder2
    final["dead_units"] = {key.replace(" layer ", ""): d for key, (d, _) in dead.items()}
    record = {
        "run": "concrete.train.fit", **{k: (str(v) if isinstance(v, Path) else v)
                                        for k, v in vars(args).items()},
        "steps": hist.steps, "train_seconds": round(seconds, 1),
        "seconds_per_epoch": round(hist.seconds / args.epochs, 2),
        "test_set": test.source, **final, **phases,
        "train_curve": [round(v, 3) for v in hist["loss"]],
        "machine": platform.processor(), "threads": torch.get_num_threads(),
    }
    print(json.dumps({k: v for k, v in record.items() if k != "train_curve"}))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
