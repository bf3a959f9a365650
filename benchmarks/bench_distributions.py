"""Speed of the concrete distributions against torch, forward + backward, CPU float32.

Run:  .venv/bin/python benchmarks/bench_distributions.py [--quick]

For a batch of 4096 rows and n in {10, 100, 1000} classes, each case builds the distribution
from a leaf ``logits`` tensor (as a model would), draws one reparameterised sample, optionally
scores it, reduces to a scalar loss and backpropagates. It prints milliseconds per call for
torch and for ours and the speed-up ratio torch / ours (> 1: ours is faster). Timings
interleave the implementations round by round; the table gives the fastest round of each
(least disturbed by other processes) and, as the ratio, the median over rounds of torch / ours
from neighbouring measurements, so that load from other processes hits both alike. Only ratios
from one run are meaningful. Distributions are built with ``validate_args=False`` on both
sides: with validation on, torch's
``RelaxedOneHotCategorical.log_prob`` rejects its own float32 samples at n = 1000 (their sums
miss 1 by more than its fixed 1e-6 tolerance).

Cases
* ``rsample``: ``RelaxedOneHotCategorical.rsample`` vs ``Concrete.rsample``.
* ``rsample+log_prob``: ``RelaxedOneHotCategorical`` rsample then log_prob vs ours as two
  calls (``Concrete.rsample``, which computes the sample's log-density from the noise in the
  same pass when gradients are on, then ``log_prob``, which returns it for that very tensor;
  each call is an autograd Function with a hand-derived backward, no compiler) and ours fused
  (``Concrete.rsample_and_log_prob``: sample and closed-form log-density in one pass).
* ``exp rsample+log_prob``: ``ExpRelaxedCategorical`` vs ``ExpConcrete`` (eager, fused).
* ``api rsample+log_prob``: the plain public API with default arguments, as a reader writes it:
  ``d = Concrete(0.5, logits=logits); x = d.rsample(); d.log_prob(x)`` (validation on: our
  constructor checks the parameters) against ``RelaxedOneHotCategorical`` with
  ``validate_args=False`` (the cheapest torch can be; its validation rejects its own samples
  at n = 1000).
* ``gumbel_softmax``: ``torch.nn.functional.gumbel_softmax`` vs ``concrete.gumbel_softmax``.

``--threads 1 2`` runs the whole table once per intra-op thread count, in one process.
"""

from __future__ import annotations

import argparse
import importlib
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable
from types import ModuleType

import torch
import torch.nn.functional as F
from torch.distributions import RelaxedOneHotCategorical
from torch.distributions.relaxed_categorical import ExpRelaxedCategorical

import concrete

BATCH = 4096
TEMPERATURE = 0.5


def _time_rounds(
    fns: dict[str, Callable[[], None]], rounds: int, inner: int
) -> dict[str, list[float]]:
    """Per-round mean time of ``inner`` calls, interleaving the functions round by round."""
    for fn in fns.values():  # warm-up
        fn()
        fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            samples[name].append((time.perf_counter() - t0) / inner)
    return samples


def _ratios(base: list[float], other: list[float]) -> list[float]:
    """Per-round ratios base/other (their median is the table's ratio: load spikes hit
    neighbouring measurements alike)."""
    return [b / o for b, o in zip(base, other, strict=True)]


def _median_ci(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """Distribution-free confidence interval for the median: order statistics ``(j, n+1-j)``.

    ``j`` is the largest rank with ``P(Binomial(n, 1/2) < j) <= (1 - level) / 2``; the
    interval covers the median with probability at least ``level`` for any continuous
    distribution of independent rounds (n >= 6 for 95 %; shorter lists give their range).
    """
    xs = sorted(values)
    n = len(xs)
    tail, j, cdf = (1 - level) / 2, 0, 0.0
    while j < n:
        cdf_next = cdf + math.comb(n, j) / 2**n       # P(Binomial < j + 1)
        if cdf_next > tail:
            break
        cdf, j = cdf_next, j + 1
    j = max(j, 1)
    return xs[j - 1], xs[n - j]


def _load_library(src: str) -> ModuleType:
    """Import a second copy of the ``concrete`` package from the folder ``src`` (e.g. the
    ``src/`` of a checkout of an older commit), without disturbing the one already imported."""
    def ours(name: str) -> bool:
        return name == "concrete" or name.startswith("concrete.")

    current = {k: sys.modules.pop(k) for k in list(sys.modules) if ours(k)}
    sys.path.insert(0, src)
    try:
        lib = importlib.import_module("concrete")
    finally:
        sys.path.remove(src)
        for k in [k for k in sys.modules if ours(k)]:
            del sys.modules[k]
        sys.modules.update(current)
    if lib.__file__ is None or not lib.__file__.startswith(src):
        raise ValueError(f"--before {src!r} holds no concrete package (got {lib.__file__})")
    return lib


def _ours(lib: ModuleType, logits, w) -> dict[str, Callable[[], None]]:
    """The library's side of every case, for the library module ``lib``."""
    Conc, Exp, gs = lib.Concrete, lib.ExpConcrete, lib.gumbel_softmax

    def rsample() -> None:
        x = Conc(TEMPERATURE, logits=logits, validate_args=False).rsample()
        (x * w).sum().backward()

    def rsample_lp() -> None:
        d = Conc(TEMPERATURE, logits=logits, validate_args=False)
        x = d.rsample()
        ((x * w).sum() + d.log_prob(x).sum()).backward()

    def api() -> None:
        d = Conc(TEMPERATURE, logits=logits)
        x = d.rsample()
        ((x * w).sum() + d.log_prob(x).sum()).backward()

    def fused() -> None:
        x, lp = Conc(TEMPERATURE, logits=logits, validate_args=False).rsample_and_log_prob()
        ((x * w).sum() + lp.sum()).backward()

    def exp_lp() -> None:
        d = Exp(TEMPERATURE, logits=logits, validate_args=False)
        y = d.rsample()
        ((y * w).sum() + d.log_prob(y).sum()).backward()

    def exp_fused() -> None:
        y, lp = Exp(TEMPERATURE, logits=logits, validate_args=False).rsample_and_log_prob()
        ((y * w).sum() + lp.sum()).backward()

    def gumbel() -> None:
        (gs(logits, TEMPERATURE) * w).sum().backward()

    return {
        "rsample": rsample,
        "rsample+log_prob": rsample_lp,
        "rsample+log_prob fused": fused,
        "api rsample+log_prob": api,
        "exp rsample+log_prob": exp_lp,
        "exp rsample+log_prob fused": exp_fused,
        "gumbel_softmax": gumbel,
    }


CASES = ("rsample", "rsample+log_prob", "api rsample+log_prob", "exp rsample+log_prob",
         "gumbel_softmax")


def _cases(n: int, before: ModuleType | None) -> dict[str, dict[str, Callable[[], None]]]:
    gen = torch.Generator().manual_seed(n)
    logits = torch.randn(BATCH, n, generator=gen).requires_grad_()
    w = torch.randn(BATCH, n, generator=gen)
    tau = torch.tensor(TEMPERATURE)

    def torch_rsample() -> None:
        x = RelaxedOneHotCategorical(tau, logits=logits, validate_args=False).rsample()
        (x * w).sum().backward()

    def torch_rsample_lp() -> None:
        d = RelaxedOneHotCategorical(tau, logits=logits, validate_args=False)
        x = d.rsample()
        ((x * w).sum() + d.log_prob(x).sum()).backward()

    def torch_exp_lp() -> None:
        d = ExpRelaxedCategorical(tau, logits=logits, validate_args=False)
        y = d.rsample()
        ((y * w).sum() + d.log_prob(y).sum()).backward()

    def torch_gs() -> None:
        (F.gumbel_softmax(logits, tau=TEMPERATURE) * w).sum().backward()

    ours = _ours(concrete, logits, w)
    old = _ours(before, logits, w) if before is not None else {}
    cases: dict[str, dict[str, Callable[[], None]]] = {}
    bases = (torch_rsample, torch_rsample_lp, torch_rsample_lp, torch_exp_lp, torch_gs)
    for case, base in zip(CASES, bases, strict=True):
        fns = {"torch": base, "ours": ours[case]}
        if case in old:
            fns["before"] = old[case]
        if f"{case} fused" in ours:
            fns["ours fused"] = ours[f"{case} fused"]
        cases[case] = fns
    return cases


def main() -> None:
    """Run all cases and print a Markdown table of times and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (noisier)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=None,
        help="torch intra-op thread counts, one table each (1 is far less noisy under load)",
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument(
        "--cases",
        nargs="+",
        default=None,
        choices=CASES,
        help="only these rows (e.g. 'api rsample+log_prob'); default all",
    )
    parser.add_argument(
        "--before",
        default=None,
        metavar="SRC",
        help="also time the concrete package found in SRC (e.g. an older commit's src/) in the "
        "same rounds: columns 'before ms' and 'before ratio' (torch / before)",
    )
    args = parser.parse_args()
    before = _load_library(args.before) if args.before else None
    rounds = args.rounds or (5 if args.quick else 15)
    print(f"ours: {concrete.__file__}" + (f"; before: {before.__file__}" if before else ""))
    for threads in args.threads or [torch.get_num_threads()]:
        torch.set_num_threads(threads)
        _table(args.sizes, rounds, before, args.cases)


def _table(
    sizes: list[int], rounds: int, before: ModuleType | None, only: list[str] | None = None
) -> None:
    """One Markdown table of times and ratios at the current thread count."""
    torch.manual_seed(0)
    print(
        f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}, python {platform.python_version()}"
    )
    print(
        f"batch {BATCH}, temperature {TEMPERATURE}, float32, forward+backward, {rounds} "
        "interleaved rounds; ms = fastest round; ratio = median over rounds of torch / ours "
        "(> 1: ours faster), with its 95 % distribution-free interval [lo, hi]\n"
    )
    cols = ["torch ms", "ours ms", "ratio"]
    cols += ["before ms", "before ratio"] if before is not None else []
    cols += ["ours fused ms", "fused ratio"]
    print("| case | n | " + " | ".join(cols) + " |")
    print("|---|---:|" + "---:|" * len(cols))
    for n in sizes:
        inner = max(1, 400 // n)
        for case, fns in _cases(n, before).items():
            if only is not None and case not in only:
                continue
            t = _time_rounds(fns, rounds, inner)
            cells = [f"{1e3 * min(t['torch']):.2f}"]
            for key in ("ours", "before", "ours fused"):
                if key == "before" and before is None:
                    continue
                if key in t:
                    ratios = _ratios(t["torch"], t[key])
                    ratio = statistics.median(ratios)
                    lo, hi = _median_ci(ratios)
                    cells += [f"{1e3 * min(t[key]):.2f}", f"{ratio:.2f}x [{lo:.2f}, {hi:.2f}]"]
                else:
                    cells += ["", ""]
            print(f"| {case} | {n} | " + " | ".join(cells) + " |", flush=True)

if __name__ == "__main__":
    main()
