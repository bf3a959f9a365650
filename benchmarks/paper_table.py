"""Long runs of Maddison et al. (2017) Table 1, binary MNIST cells: Concrete vs NVIL / VIMCO.

Run one cell (architecture × objective × seed), resumable, one JSON record per run:

    CONCRETE_DATA=/work/shared/data .venv/bin/python benchmarks/paper_table.py \
        --arch nonlinear --objective concrete1 --steps 100000 --eval-every 10000 --seed 0

The records chapter 7 loads (``results/binary/wallclock180/``) are three minutes of training
per run on one core (two runs side by side on the 2-core machine, each pinned with
``taskset``), three seeds, Adam 1e-3:

    .venv/bin/python benchmarks/paper_table.py --arch linear --objective nvil \
        --time-limit 180 --steps 1000000 --lr 1e-3 --eval-every 2000 --eval-k 1000 \
        --eval-n 2000 --eval-sets test --threads 1 \
        --out-dir benchmarks/results/binary/wallclock180 --seeds 0 1 2

and ``--compare-k 1000 10000`` with the same budget flags for two of their checkpoints. The
longer records it also loads (``results/binary/steps200k/``) are 200 000 steps per run, five
seeds of the linear cells and three of the non-linear ones, with −L_1000 curve points:

    .venv/bin/python benchmarks/paper_table.py --arch linear --objective nvil --steps 200000 \
        --lr 1e-3 --eval-every 25000 --curve-k 1000 --curve-n 500 --eval-k 1000 --eval-n 2000 \
        --eval-sets test --threads 1 --out-dir benchmarks/results/binary/steps200k --seeds 0 1 2

Every ``--eval-every`` steps a curve point is recorded (test −L_100 on 500 random test
images of their own, and the relative variance of the encoder's gradient over 16 estimates on
one batch, :func:`concrete.binary_vae.gradient_variance`); the final −L_k is computed once at
the end.

Cells: ``--arch linear`` ("200H–784V") or ``nonlinear`` ("200H∼784V");
``--objective concrete1`` (relaxed L̃_1), ``nvil`` (discrete ELBO, NVIL), ``concrete5``
(relaxed L̃_5), ``vimco5`` (discrete L_5, VIMCO). ``--all`` runs the eight cells in turn.

The protocol of App. D and Sec. 5.2, and where this script departs from it:

* data: the fixed binarization of Salakhutdinov & Murray (2008), 50 000 training images
  (``concrete.binary_vae.load_binarized_mnist``; the seeded fallback is labelled in the
  record);
* model: ``BinaryVAE`` -- 200 binary units on {-1, 1} (D.2), tanh layers of 200 (D.1), Glorot
  weights, zero biases except the decoder output bias at the logit of the training-pixel means
  (D.3), input centring by a running mean with rate 0.9 (D.4);
* Concrete: posterior λ1 = 2/3, prior λ2 = 1/2, fixed (D.5);
* optimiser: Adam β = (0.9, 0.999), batch 64, no weight decay (D.5). Learning rate: default
  the paper's Concrete values, 3·10⁻⁴ linear and 10⁻⁴ non-linear (D.5; the paper does not state
  separate values for NVIL/VIMCO, the same ones are used); ``--lr`` overrides;
* steps: the paper trains 10⁷ steps (D.5); ``--steps`` sets this run's budget;
* evaluation: the paper reports −L_50000 on the whole test set (Sec. 5.2); here −L_k
  (``--eval-k``, default 1000) with discrete codes on ``--eval-n`` test images drawn at random
  (seed 0; the test set is sorted by digit), every ``--eval-every`` steps, and at the same
  steps on as many random training images (the paper's Train column) and validation images
  (for the early stopping the paper used with the score-function estimators, D.5).

The record ``<out-dir>/<arch>_<objective>_lr<lr>_s<seed>.json`` holds the curve (steps,
training seconds without evaluation, test/train/valid −L_k, mean training loss) and is
rewritten after every evaluation; ``<out-dir>/checkpoints/`` holds the state to resume from
(``--resume``, default on: a finished run returns at once). ``--from-checkpoint PATH`` starts a
new run from another run's checkpoint (its model, Adam state, curve and step count) with this
run's ``--lr``: a longer budget or a lower learning rate for a finished run; the record names
the checkpoint, the step and the learning rate it continued from.

``--compare-k 1000 10000`` evaluates a cell's checkpoint instead of training: −L_k for each k
on ``--compare-n`` other random test images (seed 1), the same codes seed for every k, and the
mean ± s.e. of the per-image difference; record ``<tag>_compare_k.json``.
``--every-fifth`` evaluates −L_{eval-k} on every fifth test image (``test[::5]``, the images of
the issue's calibration runs); record ``<tag>_every5.json``. ``--whole-test`` evaluates
−L_{eval-k} on all 10 000 test images, the paper's images (``--test-range START STOP``: a
part, for several processes; parts merge when they tile the set); record
``<tag>_test_k<k>.json`` with the per-image bounds.

``--decay-fraction F`` lowers the learning rate linearly to zero over the final share F of
the budget (of ``--time-limit`` seconds, or of ``--steps``; ``concrete.binary_vae.linear_decay``);
the tag gains ``_decay<F>``. The records ``results/binary/wallclock180_decay/`` are the
three-minute runs above with ``--decay-fraction 0.5``.

``--device cuda`` (or ``auto``: ``concrete.get_device()``) trains and evaluates on that device
(the training data are moved there once; the loss is read back every step, as on the CPU); the
record names the device. The default is the CPU, where every stored record was made.

Diagnostics (each departs from the protocol and adds a suffix to the tag): ``--nvil-decay``,
``--no-nvil-normalise``, ``--nvil-baseline-hidden``, ``--nvil-analytic-kl`` (NVIL's details);
``--torch-init`` (``torch.nn.Linear``'s default initialisation instead of Glorot's) and
``--no-center`` (no input centring), for any objective.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from concrete.binary_vae import (
    PAPER_NAMES,
    BinaryVAE,
    ConcreteObjective,
    NVILObjective,
    VIMCOObjective,
    bernoulli_log_prob,
    evaluate_bound,
    fit_steps,
    gradient_variance,
    linear_decay,
    load_binarized_mnist,
    random_subset,
)
from concrete.device import get_device
from concrete.evaluate import bernoulli_log_likelihood
from concrete.kl import categorical_kl
from concrete.train import make_adam

OBJECTIVES = ("concrete1", "nvil", "concrete5", "vimco5")
PAPER_LR = {"linear": 3e-4, "nonlinear": 1e-4}  # App. D.5, the Concrete relaxations' values
#: Table 1, MNIST test NLL (−L_50000), binary models: {(arch, m): (Concrete, NVIL/VIMCO)}.
PAPER_TABLE1 = {
    ("linear", 1): (107.3, 104.4), ("linear", 5): (104.9, 101.9),
    ("nonlinear", 1): (92.1, 93.8), ("nonlinear", 5): (89.5, 91.4),
}
RESULTS = Path(__file__).resolve().parent / "results" / "binary"


NVIL_DEFAULTS = {"decay": 0.8, "normalise": True, "baseline_hidden": 100, "analytic_kl": False}


class NVILAnalyticKL(NVILObjective):
    r"""A diagnostic variant, *not* the paper's NVIL: the ELBO written as
    :math:`\mathbb E_q[\log p(x\mid b)] - \mathrm{KL}(q(b\mid x)\,\|\,p(b))` with the KL of the
    factorised Bernoullis in closed form (its gradient exact, in the encoder and the prior), so
    NVIL's centred, normalised score-function signal is :math:`\log p(x\mid b)` alone."""

    name = "nvil analytic-KL m=1"

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"loss", "elbo"}`` for a batch ``x`` ``(B, D)``."""
        model = self.model
        logits = model.encode(x)
        b = model.sample_posterior(logits.detach(), 1)[0]
        log_lik = bernoulli_log_likelihood(model.decode(b), x)
        a = model.prior_logits
        # each bit a two-class categorical of logits (0, l) against the prior's (0, a)
        two = torch.stack([torch.zeros_like(logits), logits], -1)
        kl = categorical_kl(two, torch.stack([torch.zeros_like(a), a], -1)).sum(-1)
        log_q = bernoulli_log_prob(logits, b)
        l_hat, c = self.nvil.learning_signal(log_lik.detach(), x)
        surrogate = log_lik + l_hat * (log_q - log_q.detach()) + l_hat * (c - c.detach()) - kl
        return {"loss": -surrogate.sum() / len(x), "elbo": (log_lik - kl).detach().mean()}


def nvil_settings(args: argparse.Namespace) -> dict:
    """NVIL's settings from the command line (defaults: Mnih & Gregor 2014, Alg. 1)."""
    return {
        "decay": args.nvil_decay,
        "normalise": args.nvil_normalise,
        "baseline_hidden": args.nvil_baseline_hidden,
        "analytic_kl": args.nvil_analytic_kl,
    }


def nvil_suffix(objective: str, nvil: dict) -> str:
    """Tag suffix naming the NVIL settings that differ from the defaults ('' if none)."""
    if objective != "nvil":
        return ""
    parts = []
    if nvil["decay"] != NVIL_DEFAULTS["decay"]:
        parts.append(f"decay{nvil['decay']:g}")
    if not nvil["normalise"]:
        parts.append("nonorm")
    if nvil["baseline_hidden"] != NVIL_DEFAULTS["baseline_hidden"]:
        parts.append(f"bh{nvil['baseline_hidden']}")
    if nvil["analytic_kl"]:
        parts.append("akl")
    return "".join(f"_{p}" for p in parts)


def model_suffix(torch_init: bool, center: bool) -> str:
    """Tag suffix naming the model settings that differ from App. D ('' if none)."""
    return ("_tinit" if torch_init else "") + ("" if center else "_nocenter")


def make_objective(
    arch: str, objective: str, pixel_means: torch.Tensor, nvil: dict | None = None,
    *, torch_init: bool = False, center: bool = True,
) -> torch.nn.Module:
    obj = _make_objective(arch, objective, pixel_means, nvil, center)
    if torch_init:  # torch.nn.Linear's own initialisation instead of Glorot's, everywhere
        for layer in obj.modules():
            if isinstance(layer, torch.nn.Linear):
                layer.reset_parameters()
        obj.model.init_output_bias(pixel_means)  # the output bias stays at logit(pixel means)
    return obj


def _make_objective(
    arch: str, objective: str, pixel_means: torch.Tensor, nvil: dict | None, center: bool
) -> torch.nn.Module:
    model = BinaryVAE(arch, pixel_means=pixel_means, center_input=center)
    if objective == "concrete1":
        return ConcreteObjective(model, 1)
    if objective == "concrete5":
        return ConcreteObjective(model, 5)
    if objective == "nvil":
        nvil = NVIL_DEFAULTS if nvil is None else nvil
        cls = NVILAnalyticKL if nvil["analytic_kl"] else NVILObjective
        obj = cls(
            model,
            baseline_hidden=max(1, nvil["baseline_hidden"]),
            decay=nvil["decay"],
            normalise=nvil["normalise"],
        )
        if nvil["baseline_hidden"] == 0:  # no input-dependent baseline: running mean only
            obj.nvil.baseline = None
        return obj
    if objective == "vimco5":
        return VIMCOObjective(model, 5)
    raise ValueError(f"objective must be one of {OBJECTIVES}, got objective={objective!r}")


def cell_tag(args: argparse.Namespace, arch: str, objective: str) -> tuple[str, float]:
    """The run's name (records, checkpoints) and its learning rate."""
    lr = args.lr if args.lr is not None else PAPER_LR[arch]
    budget = f"_t{args.time_limit:g}" if args.time_limit else ""
    if args.decay_fraction:
        budget += f"_decay{args.decay_fraction:g}"
    settings = nvil_suffix(objective, nvil_settings(args)) + model_suffix(
        args.torch_init, args.center)
    return f"{arch}_{objective}{settings}_lr{lr:g}{budget}_s{args.seed}", lr


def resolve_device(name: str) -> torch.device:
    """``--device``: a torch device name, or ``auto`` (``concrete.get_device()``)."""
    try:
        return get_device(None if name == "auto" else name)
    except (ValueError, RuntimeError) as err:
        raise SystemExit(f"--device {name!r} is not usable here: {err}") from err


def note_progress(record: dict, done: int, seconds: float) -> None:
    """Write the run's step count, training seconds, rate, load and date into its record."""
    record["steps_done"] = done
    record["train_seconds"] = round(seconds, 2)
    record["steps_per_second"] = round(done / seconds, 2)
    record["loadavg"] = os.getloadavg()
    record["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def run_cell(args: argparse.Namespace, arch: str, objective: str) -> dict:
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    data = load_binarized_mnist()
    nvil = nvil_settings(args)
    tag, lr = cell_tag(args, arch, objective)
    out = args.out_dir / f"{tag}.json"
    ckpt = args.out_dir / "checkpoints" / f"{tag}.pt"
    torch.manual_seed(args.seed)
    obj = make_objective(arch, objective, data.pixel_means, nvil, torch_init=args.torch_init,
                         center=args.center).to(device)
    opt = make_adam(obj.parameters(), lr=lr, weight_decay=0.0)
    train = data.train.to(device)
    sets = {
        "test": random_subset(data.test, args.eval_n, seed=0),
        "train": random_subset(data.train, args.eval_n, seed=0),
        "valid": random_subset(data.valid, args.eval_n, seed=0),
    }
    curve_images = random_subset(data.test, args.curve_n, seed=2).to(device)  # the curve's own
    grad_batch = random_subset(data.train, 64, seed=3).to(device)
    record = {
        "script": "benchmarks/paper_table.py", "arch": arch, "paper_name": PAPER_NAMES[arch],
        "objective": objective, "m": getattr(obj, "m", 1), "lr": lr, "seed": args.seed,
        "batch_size": 64, "adam_betas": [0.9, 0.999], "weight_decay": 0.0,
        "posterior_temperature": getattr(obj, "posterior_temperature", None),
        "prior_temperature": getattr(obj, "prior_temperature", None),
        "nvil": nvil if objective == "nvil" else None,
        "init": "torch.nn.Linear default" if args.torch_init else "glorot",
        "center_input": args.center,
        "steps_target": args.steps, "time_limit_s": args.time_limit,
        "lr_schedule": ({"linear_decay_fraction": args.decay_fraction}
                        if args.decay_fraction else "constant"),
        "eval_k": args.eval_k, "eval_n": args.eval_n,
        "eval_sets": sorted(s for s in sets if s in args.eval_sets),
        "curve_k": args.curve_k, "curve_n": args.curve_n, "grad_repeats": args.grad_repeats,
        "data": data.source, "threads": args.threads, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        "paper_test_nll": PAPER_TABLE1[(arch, getattr(obj, "m", 1))][
            0 if objective.startswith("concrete") else 1],
        "curve": {"steps": [], "seconds": [], "train_loss": [], "test_neg_lk": [],
                  "encoder_relative_variance": []},
    }
    done = 0
    start = ckpt if args.resume and ckpt.is_file() else args.from_checkpoint
    if start is not None:
        state = torch.load(start, weights_only=False, map_location=device)
        obj.load_state_dict(state["objective"])
        opt.load_state_dict(state["optimizer"])
        record["curve"], done = state["curve"], state["step"]
        if start == ckpt and state.get("final"):
            print(f"{tag}: finished at step {done}", flush=True)
            return json.loads(out.read_text())
        before = opt.param_groups[0]["lr"]
        for group in opt.param_groups:          # this run's learning rate, not the saved one
            group["lr"] = lr
        if start == ckpt:
            record["continued_from"] = state.get("continued_from")
            print(f"{tag}: resumed at step {done}", flush=True)
        else:
            record["continued_from"] = {"checkpoint": str(start), "step": done, "lr": before}
            print(f"{tag}: continues {start} from step {done}, lr {before:g} -> {lr:g}",
                  flush=True)
    curve = record["curve"]
    seconds = curve["seconds"][-1] if curve["seconds"] else 0.0

    def save_checkpoint(final: bool = False) -> None:
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"objective": obj.state_dict(), "optimizer": opt.state_dict(), "curve": curve,
                    "step": done, "continued_from": record.get("continued_from"),
                    "final": final}, ckpt)

    def out_of_time() -> bool:
        return args.time_limit is not None and seconds >= args.time_limit - 1e-9

    while done < args.steps and not out_of_time():
        chunk = min(args.eval_every, args.steps - done)
        left = None if args.time_limit is None else args.time_limit - seconds

        def schedule(taken: int, spent: float, done0: int = done, sec0: float = seconds) -> float:
            progress = (done0 + taken) / args.steps
            if args.time_limit is not None:
                progress = max(progress, (sec0 + spent) / args.time_limit)
            return linear_decay(lr, progress, args.decay_fraction)

        run = fit_steps(obj, train, steps=chunk, lr=lr, batch_size=64,
                        seed=args.seed * 1_000_003 + done, optimizer=opt, time_limit=left,
                        lr_schedule=schedule if args.decay_fraction else None)
        taken = run.steps[-1]
        done += taken
        seconds += run.seconds[-1]
        curve["steps"].append(done)
        curve["seconds"].append(round(seconds, 2))
        curve["train_loss"].append(round(run.train_loss[-1], 3))
        res = evaluate_bound(obj.model, curve_images, k=args.curve_k,
                             generator=torch.Generator(device).manual_seed(12345))
        curve["test_neg_lk"].append(round(res.neg_log_px, 3))
        torch.manual_seed(args.seed + done)
        stats = gradient_variance(obj, grad_batch, repeats=args.grad_repeats)
        curve["encoder_relative_variance"].append(round(stats.relative_variance, 5))
        print(f"{tag}: step {done} ({seconds:.0f} s, {taken / run.seconds[-1]:.1f} steps/s) "
              f"test -L_{args.curve_k} {res.neg_log_px:.2f} rel.var {stats.relative_variance:.3g}"
              f" (loss {run.train_loss[-1]:.2f})", flush=True)
        note_progress(record, done, seconds)
        args.out_dir.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=1))
        save_checkpoint()
    if done:                        # also when a resumed run had all its steps done already
        note_progress(record, done, seconds)
    final = {}
    for name in args.eval_sets:
        res = evaluate_bound(obj.model, sets[name], k=args.eval_k,
                             generator=torch.Generator(device).manual_seed(12345))
        final[f"{name}_neg_lk"] = round(res.neg_log_px, 3)
        final[f"{name}_stderr"] = round(res.stderr, 3)
        final["eval_seconds"] = round(final.get("eval_seconds", 0.0) + res.seconds, 1)
    print(f"{tag}: final after {done} steps / {seconds:.0f} s: {final}", flush=True)
    record["final"] = final
    out.write_text(json.dumps(record, indent=1))
    save_checkpoint(final=True)
    return record


def load_cell(args: argparse.Namespace, arch: str, objective: str):
    """A finished (or interrupted) cell from its checkpoint: objective, state, tag, data, device."""
    torch.set_num_threads(args.threads)
    data = load_binarized_mnist()
    tag, _ = cell_tag(args, arch, objective)
    device = resolve_device(args.device)
    state = torch.load(args.out_dir / "checkpoints" / f"{tag}.pt", weights_only=False,
                       map_location=device)
    obj = make_objective(arch, objective, data.pixel_means, nvil_settings(args),
                         torch_init=args.torch_init, center=args.center).to(device)
    obj.load_state_dict(state["objective"])
    return obj, state, tag, data, device


def compare_k(args: argparse.Namespace, arch: str, objective: str) -> dict:
    """−L_k for several k on the same random test images, from a cell's checkpoint."""
    obj, state, tag, data, device = load_cell(args, arch, objective)
    images = random_subset(data.test, args.compare_n, seed=1)  # not the curve's images
    rows = {}
    for k in args.compare_k:
        res = evaluate_bound(obj.model, images, k=k, chunk=200,
                             generator=torch.Generator(device).manual_seed(7))
        rows[k] = res
        print(f"{tag} step {state['step']}: {res} ({res.seconds:.1f} s)", flush=True)
    k0, k1 = args.compare_k[0], args.compare_k[-1]
    diff = rows[k1].iw - rows[k0].iw
    record = {
        "script": "benchmarks/paper_table.py --compare-k", "cell": tag, "step": state["step"],
        "n": args.compare_n, "subset_seed": 1, "data": data.source,
        "neg_lk": {str(k): round(r.neg_log_px, 3) for k, r in rows.items()},
        "seconds": {str(k): round(r.seconds, 1) for k, r in rows.items()},
        f"L{k1}_minus_L{k0}_mean": round(float(diff.mean()), 3),
        f"L{k1}_minus_L{k0}_stderr": round(float(diff.std() / len(diff) ** 0.5), 3),
    }
    print(json.dumps(record), flush=True)
    (args.out_dir / f"{tag}_compare_k.json").write_text(json.dumps(record, indent=1))
    return record


def every_fifth(args: argparse.Namespace, arch: str, objective: str) -> dict:
    """−L_{eval_k} on every fifth test image (2000, all digits), from a cell's checkpoint.

    The images of the issue's calibration runs (``test[::5]``), so that a cell can be set
    beside the calibration's numbers on the same images; the record's own final value uses
    2000 random test images, whose mean differs from any other 2000 by ~0.5 nats (s.e.).
    """
    obj, state, tag, data, device = load_cell(args, arch, objective)
    res = evaluate_bound(obj.model, data.test[::5].contiguous(), k=args.eval_k,
                         generator=torch.Generator(device).manual_seed(12345))
    record = {
        "script": "benchmarks/paper_table.py --every-fifth", "cell": tag, "step": state["step"],
        "images": "test[::5]", "n": len(res.iw), "k": args.eval_k, "data": data.source,
        "test_neg_lk": round(res.neg_log_px, 3), "test_stderr": round(res.stderr, 3),
        "seconds": round(res.seconds, 1),
    }
    print(json.dumps(record), flush=True)
    (args.out_dir / f"{tag}_every5.json").write_text(json.dumps(record, indent=1))
    return record


def whole_test(args: argparse.Namespace, arch: str, objective: str) -> dict:
    """−L_{eval_k} on the whole test set (the paper's images, Sec. 5.2), from a cell's checkpoint.

    ``--test-range START STOP`` scores ``test[START:STOP]`` only, so that several processes
    can share the work (k = 50 000 is ~2 h of one core for the non-linear model); each
    part's record keeps its per-image bounds, and when the parts on disk tile the test set
    their union is written as the whole-set record (:func:`merge_test_parts`). Codes: seed
    12345 + START.
    """
    obj, state, tag, data, device = load_cell(args, arch, objective)
    n_test = len(data.test)
    start, stop = args.test_range if args.test_range is not None else (0, n_test)
    if not 0 <= start < stop <= n_test:
        raise SystemExit(f"--test-range must satisfy 0 <= START < STOP <= {n_test}, "
                         f"got {start} {stop}")
    res = evaluate_bound(obj.model, data.test[start:stop].contiguous(), k=args.eval_k,
                         chunk=args.eval_chunk,
                         generator=torch.Generator(device).manual_seed(12345 + start))
    record = {
        "script": "benchmarks/paper_table.py --whole-test", "cell": tag, "step": state["step"],
        "images": f"test[{start}:{stop}]", "range": [start, stop], "n": len(res.iw),
        "k": args.eval_k, "data": data.source, "codes_seed": 12345 + start,
        "test_neg_lk": round(res.neg_log_px, 3), "test_stderr": round(res.stderr, 3),
        "seconds": round(res.seconds, 1), "threads": args.threads,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "log_px": [round(float(v), 3) for v in res.iw],
    }
    print(json.dumps({k: v for k, v in record.items() if k != "log_px"}), flush=True)
    whole = (start, stop) == (0, n_test)
    name = f"{tag}_test_k{args.eval_k}" + ("" if whole else f"_{start}-{stop}")
    (args.out_dir / f"{name}.json").write_text(json.dumps(record, indent=1))
    if not whole:
        merged = merge_test_parts(args.out_dir, f"{tag}_test_k{args.eval_k}", n_test)
        if merged is not None:
            print(json.dumps({k: v for k, v in merged.items() if k != "log_px"}), flush=True)
    return record


def merge_test_parts(out_dir: Path, name: str, n_test: int) -> dict | None:
    """The whole-set record ``<name>.json`` from the parts ``<name>_<start>-<stop>.json``.

    Written (and returned) only when the parts' ranges tile ``[0, n_test)`` exactly, without
    gaps or overlaps; ``None`` otherwise. Mean and standard error over all images.
    """
    parts = []
    for path in out_dir.glob(f"{name}_*-*.json"):
        rec = json.loads(path.read_text())
        if rec.get("script") == "benchmarks/paper_table.py --whole-test":
            parts.append(rec)
    parts.sort(key=lambda r: r["range"][0])
    edge = 0
    for rec in parts:
        if rec["range"][0] != edge:
            return None
        edge = rec["range"][1]
    if edge != n_test or not parts:
        return None
    values = [v for rec in parts for v in rec["log_px"]]
    log_px = torch.tensor(values, dtype=torch.float64)
    first = parts[0]
    merged = {key: first[key] for key in ("script", "cell", "step", "k", "data")}
    if any(rec["cell"] != first["cell"] or rec["step"] != first["step"]
           or rec["k"] != first["k"] for rec in parts):
        raise ValueError(f"the parts of {name} come from different checkpoints or k")
    merged.update({
        "images": f"test[0:{n_test}]", "range": [0, n_test], "n": len(log_px),
        "parts": [rec["images"] for rec in parts],
        "codes_seed": [rec["codes_seed"] for rec in parts],
        "test_neg_lk": round(-float(log_px.mean()), 3),
        "test_stderr": round(float(log_px.std() / len(log_px) ** 0.5), 3),
        "seconds": round(sum(rec["seconds"] for rec in parts), 1),
        "log_px": values,
    })
    (out_dir / f"{name}.json").write_text(json.dumps(merged, indent=1))
    return merged


def build_parser() -> argparse.ArgumentParser:
    """The command line (also used by other scripts to name a cell's checkpoint)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=sorted(PAPER_NAMES), default="nonlinear")
    ap.add_argument("--objective", choices=OBJECTIVES, default="concrete1")
    ap.add_argument("--all", action="store_true", help="run all eight cells in turn")
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--lr", type=float, default=None, help="default: the paper's (App. D.5)")
    ap.add_argument("--decay-fraction", type=float, default=0.0,
                    help="the learning rate falls linearly to 0 over this final share of the "
                         "budget (steps, or seconds with --time-limit, whichever is further); "
                         "0: constant")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="several seeds in turn")
    ap.add_argument("--time-limit", type=float, default=None,
                    help="seconds of training (evaluation excluded); the run stops at "
                    "whichever of --steps and --time-limit comes first")
    ap.add_argument("--eval-every", type=int, default=10_000,
                    help="steps between curve points")
    ap.add_argument("--curve-k", type=int, default=100)
    ap.add_argument("--curve-n", type=int, default=500)
    ap.add_argument("--grad-repeats", type=int, default=16)
    ap.add_argument("--eval-k", type=int, default=1000)
    ap.add_argument("--eval-n", type=int, default=2000)
    ap.add_argument("--eval-sets", nargs="+", default=["test", "train", "valid"],
                    choices=["test", "train", "valid"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu",
                    help="cpu, cuda, mps, ... or auto (concrete.get_device())")
    ap.add_argument("--torch-init", action="store_true",
                    help="diagnostic: torch.nn.Linear's default initialisation instead of "
                    "Glorot's (App. D), for every layer; the output bias stays at the pixel logits")
    ap.add_argument("--no-center", dest="center", action="store_false",
                    help="diagnostic: no input centring (App. D.4)")
    ap.add_argument("--nvil-decay", type=float, default=NVIL_DEFAULTS["decay"],
                    help="NVIL: decay of the running moments (Mnih & Gregor 2014: 0.8)")
    ap.add_argument("--no-nvil-normalise", dest="nvil_normalise", action="store_false",
                    help="NVIL: no variance normalisation")
    ap.add_argument("--nvil-baseline-hidden", type=int, default=NVIL_DEFAULTS["baseline_hidden"],
                    help="NVIL: tanh units of the input-dependent baseline (0: none)")
    ap.add_argument("--nvil-analytic-kl", action="store_true",
                    help="NVIL (diagnostic, not the paper's): closed-form KL, signal log p(x|b)")
    ap.add_argument("--out-dir", type=Path, default=RESULTS)
    ap.add_argument("--no-resume", dest="resume", action="store_false")
    ap.add_argument("--from-checkpoint", type=Path, default=None,
                    help="start from another run's checkpoint (model, Adam state, curve, step) "
                         "with this run's --lr")
    ap.add_argument("--compare-k", type=int, nargs="+", default=None,
                    help="instead of training: -L_k for these k from the cell's checkpoint")
    ap.add_argument("--compare-n", type=int, default=200)
    ap.add_argument("--every-fifth", action="store_true",
                    help="instead of training: -L_{eval-k} on test[::5] from the checkpoint")
    ap.add_argument("--whole-test", action="store_true",
                    help="instead of training: -L_{eval-k} on the whole test set (or on "
                    "--test-range) from the checkpoint")
    ap.add_argument("--test-range", type=int, nargs=2, default=None, metavar=("START", "STOP"),
                    help="--whole-test: score test[START:STOP] only (parts merge when they tile)")
    ap.add_argument("--eval-chunk", type=int, default=100,
                    help="codes per pass in the evaluation (memory ~ chunk x 100 x 784 floats)")
    return ap


def main() -> None:
    args = build_parser().parse_args()
    cells = ([(a, o) for a in ("linear", "nonlinear") for o in OBJECTIVES] if args.all
             else [(args.arch, args.objective)])
    seeds = args.seeds if args.seeds is not None else [args.seed]
    for seed in seeds:
        args.seed = seed
        for arch, objective in cells:
            if args.compare_k:
                compare_k(args, arch, objective)
            elif args.every_fifth:
                every_fifth(args, arch, objective)
            elif args.whole_test:
                whole_test(args, arch, objective)
            else:
                run_cell(args, arch, objective)


if __name__ == "__main__":
    main()
