"""Torture tests (issue 2, criterion 7): float32, extreme temperatures and logits.

For every temperature in {1e-3, 1e-2, 0.1, 1, 10, 1e3}, n in {2, 10, 1000} and logits in
[-1e4, 1e4] (uniform spread, one class far above the rest, two huge blocks, all equal):
samples, log-densities of the distribution's own samples (plain and fused paths) and the
gradients of both with respect to the logits and the temperature contain no NaN and no inf.
"""

from __future__ import annotations

import pytest
import torch
from torch.distributions import RelaxedOneHotCategorical

from concrete import BinaryConcrete, Concrete, ExpConcrete, LogitBinaryConcrete, gumbel_softmax

TEMPERATURES = [1e-3, 1e-2, 0.1, 1.0, 10.0, 1e3]
SIZES = [2, 10, 1000]
ROWS = 4  # rows of logits per family


def _logit_families(n: int, gen: torch.Generator) -> torch.Tensor:
    """(4 families * ROWS, n) float32 logits in [-1e4, 1e4]."""
    spread = (torch.rand(ROWS, n, generator=gen) * 2 - 1) * 1e4
    gap = torch.full((ROWS, n), -1e4)
    gap[torch.arange(ROWS), torch.randint(0, n, (ROWS,), generator=gen)] = 1e4
    blocks = torch.where(torch.rand(ROWS, n, generator=gen) < 0.5, 1e4, -1e4)
    equal = torch.zeros(ROWS, n)
    return torch.cat([spread, gap, blocks, equal])


def _all_finite(*tensors: torch.Tensor) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("lam", TEMPERATURES)
def test_categorical_family_never_produces_nan_or_inf(lam: float, n: int) -> None:
    gen = torch.Generator().manual_seed(int(n + 1e4 * lam))
    base = _logit_families(n, gen)
    torch.manual_seed(int(7 * n + 3))
    for cls in (ExpConcrete, Concrete):
        for fused in (False, True):
            logits = base.clone().requires_grad_()
            temp = torch.tensor(lam, requires_grad=True)
            d = cls(temp, logits=logits)
            if fused:
                v, lp = d.rsample_and_log_prob((2,))
            else:
                v = d.rsample((2,))
                lp = d.log_prob(v)
            assert _all_finite(v, lp), (cls.__name__, fused)
            if cls is Concrete:
                assert torch.all(v >= 0) and torch.allclose(v.sum(-1), torch.ones(()), atol=1e-4)
            else:
                assert torch.all(v <= 0)
            w = torch.randn(v.shape, generator=gen)
            loss = (v * w).sum() + lp.sum()
            g_logits, g_temp = torch.autograd.grad(loss, (logits, temp))
            assert _all_finite(g_logits, g_temp), (cls.__name__, fused)


@pytest.mark.parametrize("lam", TEMPERATURES)
def test_scalar_float_temperature_path_is_finite(lam: float) -> None:
    gen = torch.Generator().manual_seed(1)
    logits = _logit_families(10, gen).requires_grad_()
    d = Concrete(lam, logits=logits)
    x = d.rsample((3,))
    lp = d.log_prob(x)
    g = torch.autograd.grad((x * x).sum() + lp.sum(), logits)[0]
    assert _all_finite(x, lp, g)


@pytest.mark.parametrize("lam", TEMPERATURES)
def test_binary_family_never_produces_nan_or_inf(lam: float) -> None:
    gen = torch.Generator().manual_seed(2)
    base = torch.cat(
        [
            (torch.rand(64, generator=gen) * 2 - 1) * 1e4,
            torch.tensor([1e4, -1e4, 0.0, 9999.5, -9999.5]),
        ]
    )
    torch.manual_seed(3)
    for cls in (BinaryConcrete, LogitBinaryConcrete):
        logits = base.clone().requires_grad_()
        temp = torch.tensor(lam, requires_grad=True)
        d = cls(temp, logits=logits)
        v = d.rsample((4,))
        lp = d.log_prob(v)
        assert _all_finite(v, lp), cls.__name__
        g_logits, g_temp = torch.autograd.grad(v.sum() + lp.sum(), (logits, temp))
        assert _all_finite(g_logits, g_temp), cls.__name__


def test_logit_binary_log_prob_does_not_overflow_for_huge_arguments() -> None:
    """|logits - lam * y| up to 1e4 and beyond: softplus form, no log1p(exp(.)) overflow."""
    d = LogitBinaryConcrete(1.0, logits=torch.tensor([0.0, 0.0, 0.0]))
    y = torch.tensor([-1e4, 1e4, -3e37])
    lp = d.log_prob(y)
    assert torch.isfinite(lp).all()
    # the logistic log-density is -|y| + O(e^-|y|) far in the tails
    torch.testing.assert_close(lp[:2], torch.tensor([-1e4, -1e4]))


@pytest.mark.parametrize("lam", TEMPERATURES)
def test_gumbel_softmax_is_finite(lam: float) -> None:
    gen = torch.Generator().manual_seed(4)
    for n in SIZES:
        logits = _logit_families(n, gen).requires_grad_()
        for hard in (False, True):
            x = gumbel_softmax(logits, lam, hard=hard, generator=gen)
            g = torch.autograd.grad((x * torch.randn(x.shape, generator=gen)).sum(), logits)[0]
            assert _all_finite(x, g)
            if hard:
                assert torch.all(x.sum(-1) == 1) and torch.all((x == 0) | (x == 1))


def test_torch_relaxed_one_hot_log_prob_goes_non_finite_where_ours_does_not() -> None:
    """torch scores log(x) of its own underflowed samples: -inf/NaN; ours keeps log x."""
    logits = torch.tensor([[0.0, 50.0, -50.0, 10.0]]).expand(64, 4)
    lam = 0.01
    torch.manual_seed(5)
    ref = RelaxedOneHotCategorical(torch.tensor(lam), logits=logits, validate_args=False)
    x_ref = ref.rsample()
    assert (x_ref == 0).any()  # coordinates underflow at this temperature
    assert not torch.isfinite(ref.log_prob(x_ref)).all()
    torch.manual_seed(5)
    ours = Concrete(lam, logits=logits)
    x = ours.rsample()
    torch.testing.assert_close(x, x_ref)  # the same sample ...
    assert torch.isfinite(ours.log_prob(x)).all()  # ... but a finite log-density
    assert torch.isfinite(ours.rsample_and_log_prob()[1]).all()
