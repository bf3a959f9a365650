"""gumbel_softmax and validate_temperature (issue 2, criteria 4, 6 and 8)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from concrete import Concrete, gumbel_max, gumbel_softmax, validate_temperature

P_MIN = 1e-3
F64 = torch.float64


def test_soft_sample_lies_on_the_simplex() -> None:
    logits = torch.randn(5, 7)
    x = gumbel_softmax(logits, 0.5, generator=torch.Generator().manual_seed(0))
    assert x.shape == logits.shape and x.dtype == logits.dtype
    assert torch.all(x >= 0)
    torch.testing.assert_close(x.sum(-1), torch.ones(5))


def test_same_draw_as_concrete_and_gumbel_max() -> None:
    """gumbel_softmax, Concrete.rsample and gumbel_max use the same noise for the same seed."""
    logits = torch.randn(6, 5, dtype=F64)
    torch.manual_seed(1)
    x = gumbel_softmax(logits, 0.7)
    torch.manual_seed(1)
    torch.testing.assert_close(x, Concrete(0.7, logits=logits).rsample())
    torch.manual_seed(1)
    hard = gumbel_softmax(logits, 0.7, hard=True)
    torch.manual_seed(1)
    assert torch.equal(hard.argmax(-1), gumbel_max(logits))


def test_hard_is_exactly_one_hot_with_soft_gradient() -> None:
    logits = torch.randn(8, 6, dtype=F64, requires_grad=True)
    w = torch.randn(8, 6, dtype=F64)
    gen = torch.Generator().manual_seed(2)
    state = gen.get_state()
    hard = gumbel_softmax(logits, 0.5, hard=True, generator=gen)
    assert torch.all((hard == 0) | (hard == 1)) and torch.all(hard.sum(-1) == 1)
    g_hard = torch.autograd.grad((hard * w).sum(), logits)[0]
    gen.set_state(state)
    soft = gumbel_softmax(logits, 0.5, generator=gen)
    assert torch.equal(hard.argmax(-1), soft.argmax(-1))
    g_soft = torch.autograd.grad((soft * w).sum(), logits)[0]
    torch.testing.assert_close(g_hard, g_soft)  # straight-through: the relaxed gradient


def test_hard_breaks_ties_with_exactly_one_one() -> None:
    """At a huge temperature all soft coordinates are equal: still exactly one 1 per row."""
    x = gumbel_softmax(torch.zeros(50, 4), 1e30, hard=True)
    soft = gumbel_softmax(torch.zeros(50, 4), 1e30)
    assert torch.all(soft == 0.25)  # genuine ties
    assert torch.all(x.sum(-1) == 1) and torch.all((x == 0) | (x == 1))
    assert torch.all(x[:, 0] == 1)  # the first maximiser wins


def test_hard_frequencies_follow_softmax() -> None:
    logits = torch.tensor([0.3, -0.7, 1.1])
    x = gumbel_softmax(
        logits.expand(100_000, 3), 0.4, hard=True, generator=torch.Generator().manual_seed(4)
    )
    counts = x.sum(0).double().numpy()
    probs = torch.softmax(logits.double(), -1).numpy()
    assert stats.chisquare(counts, probs * counts.sum()).pvalue > P_MIN
    wrong = probs + [0.01, -0.01, 0.0]
    assert stats.chisquare(counts, wrong * counts.sum()).pvalue < P_MIN


def test_dim_argument_and_tensor_temperature() -> None:
    logits = torch.randn(3, 5, 4, dtype=F64)  # classes in dim 1
    lam = torch.tensor([[0.1, 1.0, 2.0, 5.0]] * 3, dtype=F64)  # batch shape (3, 4)
    torch.manual_seed(5)
    x = gumbel_softmax(logits, lam, dim=1)
    assert x.shape == logits.shape
    torch.testing.assert_close(x.sum(1), torch.ones(3, 4, dtype=F64))
    torch.manual_seed(5)
    y = gumbel_softmax(logits.movedim(1, -1), lam)
    torch.testing.assert_close(x, y.movedim(-1, 1))
    with pytest.raises(ValueError, match=r"temperature of shape \(3, 1\) must broadcast"):
        gumbel_softmax(torch.zeros(3, 5), torch.ones(3, 1))


def test_half_precision_inputs() -> None:
    for dtype in (torch.float16, torch.bfloat16):
        logits = torch.randn(4, 6).to(dtype).requires_grad_()
        x = gumbel_softmax(logits, 0.5)
        assert x.dtype == dtype and torch.isfinite(x).all()
        x.float().sum().backward()
        assert logits.grad is not None and logits.grad.dtype == dtype


def test_gradcheck_gumbel_softmax() -> None:
    logits = torch.randn(3, 4, dtype=F64, requires_grad=True)
    lam = torch.tensor([0.3, 1.0, 4.0], dtype=F64, requires_grad=True)

    def fn(lg, lm):
        return gumbel_softmax(lg, lm, generator=torch.Generator().manual_seed(6))

    def fn_hard(lg, lm):
        # straight-through: the gradient is the soft one, so check the soft part numerically
        return gumbel_softmax(lg, lm, generator=torch.Generator().manual_seed(6), dim=-1)

    assert torch.autograd.gradcheck(fn, (logits, lam))
    assert torch.autograd.gradcheck(fn_hard, (logits, lam))
    assert torch.autograd.gradcheck(
        lambda lg: gumbel_softmax(lg, 0.25, generator=torch.Generator().manual_seed(7)), (logits,)
    )


@pytest.mark.parametrize("bad", [0.0, -0.5, math.nan, math.inf, -math.inf])
def test_bad_temperature_raises_where_torch_returns_nan(bad: float) -> None:
    logits = torch.randn(2, 3)
    if bad <= 0 or math.isnan(bad):
        # pytorch#184031: torch silently returns NaN (or garbage) for such temperatures
        assert not torch.isfinite(F.gumbel_softmax(logits, tau=bad)).all() or bad < 0
    with pytest.raises(ValueError, match=rf"temperature must be positive and finite.*{bad}"):
        gumbel_softmax(logits, bad)
    with pytest.raises(ValueError, match="temperature"):
        gumbel_softmax(logits, torch.tensor([1.0, bad]))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: gumbel_softmax(torch.tensor([0.0, math.nan]), 1.0), r"logits must be finite"),
        (lambda: gumbel_softmax(torch.tensor(1.0), 1.0), "at least one dimension"),
        (lambda: gumbel_softmax(torch.zeros(2, 3), 1.0, dim=3), "dim=3 is out of range"),
        (lambda: gumbel_softmax(torch.zeros(3), "1"), r"temperature.*'1'"),
    ],
)
def test_bad_input(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_validate_temperature() -> None:
    t = validate_temperature(0.5)
    assert t.dtype == torch.get_default_dtype() and t.shape == ()
    t = validate_temperature(torch.tensor([1, 2]))  # integer tensors are converted
    assert t.dtype.is_floating_point
    t = validate_temperature(2, dtype=F64)
    assert t.dtype == F64
    src = torch.tensor([0.5, 1.0], requires_grad=True)
    validate_temperature(src).sum().backward()  # gradients flow through
    assert src.grad is not None
    with pytest.raises(ValueError, match=r"tau must be positive and finite, got tau=0"):
        validate_temperature(0, name="tau")
    with pytest.raises(ValueError, match=r"invalid entries: \[-1.0\]"):
        validate_temperature(torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="temperature"):
        validate_temperature(None)  # type: ignore[arg-type]
