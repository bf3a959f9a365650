"""relaxed_kl and categorical_kl (issue 2: the KL terms of the discrete VAE)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate
from torch.distributions import Categorical, kl_divergence

from concrete import (
    BinaryConcrete,
    Concrete,
    ExpConcrete,
    LogitBinaryConcrete,
    categorical_kl,
    relaxed_kl,
)

F64 = torch.float64


def test_categorical_kl_matches_torch() -> None:
    gen = torch.Generator().manual_seed(0)
    q = 3 * torch.randn(5, 7, dtype=F64, generator=gen)
    p = 3 * torch.randn(5, 7, dtype=F64, generator=gen)
    want = kl_divergence(Categorical(logits=q), Categorical(logits=p))
    torch.testing.assert_close(categorical_kl(q, p), want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(categorical_kl(q + 4.0, p - 2.0), want)  # unnormalised logits
    assert torch.all(categorical_kl(q, q) == 0)
    # broadcasting (uniform prior) and the dim argument
    torch.testing.assert_close(
        categorical_kl(q, torch.zeros(7, dtype=F64)),
        math.log(7) + (q.softmax(-1) * q.log_softmax(-1)).sum(-1),
    )
    torch.testing.assert_close(categorical_kl(q.T, p.T, dim=0), want)


def test_categorical_kl_is_finite_with_huge_gaps() -> None:
    q = torch.tensor([[1e4, -1e4, 0.0], [0.0, 0.0, 0.0]])
    p = torch.tensor([[-1e4, 1e4, 0.0], [1e4, -1e4, -1e4]])
    kl = categorical_kl(q, p)
    assert torch.isfinite(kl).all()
    torch.testing.assert_close(kl[0], torch.tensor(2e4))  # all mass on class 0: 1e4 - (-1e4)
    logits = q.clone().requires_grad_()
    g = torch.autograd.grad(categorical_kl(logits, p).sum(), logits)[0]
    assert torch.isfinite(g).all()


def test_categorical_kl_gradcheck() -> None:
    q = torch.randn(3, 4, dtype=F64, requires_grad=True)
    p = torch.randn(3, 4, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(categorical_kl, (q, p))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: categorical_kl(torch.tensor([0.0, math.nan]), torch.zeros(2)), "q_logits"),
        (lambda: categorical_kl(torch.zeros(2), torch.tensor([math.inf, 0.0])), "p_logits"),
        (lambda: categorical_kl(torch.zeros(2, 3), torch.zeros(4)), "do not broadcast"),
        (lambda: categorical_kl([0.0, 1.0], torch.zeros(2)), r"q_logits must be a Tensor"),
    ],
)
def test_categorical_kl_bad_input(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_relaxed_kl_shape_and_definition() -> None:
    gen = torch.Generator().manual_seed(1)
    q = ExpConcrete(0.5, logits=torch.randn(8, 3, 10, generator=gen))  # 8 x 3 latents, 10 classes
    p = ExpConcrete(1.0, logits=torch.zeros(10))  # a uniform prior, broadcast
    y = q.rsample()
    kl = relaxed_kl(q, p, y)
    assert kl.shape == (8, 3)
    torch.testing.assert_close(kl, q.log_prob(y) - p.log_prob(y))
    assert torch.all(relaxed_kl(q, q, y) == 0)
    y2 = q.rsample((5,))
    assert relaxed_kl(q, p, y2).shape == (5, 8, 3)


def test_relaxed_kl_in_log_space_equals_concrete_space_ratio() -> None:
    """The -sum(y) terms cancel: the ExpConcrete ratio is the Concrete density ratio."""
    logits_q, logits_p = torch.randn(4, 5, dtype=F64), torch.randn(4, 5, dtype=F64)
    q, p = ExpConcrete(0.3, logits=logits_q), ExpConcrete(0.8, logits=logits_p)
    cq, cp = Concrete(0.3, logits=logits_q), Concrete(0.8, logits=logits_p)
    y = q.sample((6,))
    torch.testing.assert_close(relaxed_kl(q, p, y), relaxed_kl(cq, cp, y.exp()))


def test_relaxed_kl_monte_carlo_matches_quadrature_for_binary() -> None:
    """The MC average of relaxed_kl converges to KL(q||p), computed by quadrature."""
    q = LogitBinaryConcrete(torch.tensor(0.5, dtype=F64), logits=torch.tensor(1.0, dtype=F64))
    p = LogitBinaryConcrete(torch.tensor(1.0, dtype=F64), logits=torch.tensor(-0.5, dtype=F64))

    def integrand(t: float) -> float:
        y = torch.tensor(t, dtype=F64)
        lq, lp = float(q.log_prob(y)), float(p.log_prob(y))
        return math.exp(lq) * (lq - lp)

    exact, _ = integrate.quad(integrand, -np.inf, np.inf, limit=200)
    torch.manual_seed(2)
    y = q.sample((200_000,))
    est = relaxed_kl(q, p, y)
    se = float(est.std()) / math.sqrt(est.numel())
    assert abs(float(est.mean()) - exact) < 4 * se  # within 4 standard errors
    assert exact > 0


def test_relaxed_kl_is_differentiable_by_reparameterisation() -> None:
    logits = torch.randn(3, 4, dtype=F64, requires_grad=True)
    prior = ExpConcrete(1.0, logits=torch.zeros(4, dtype=F64))

    def fn(lg):
        torch.manual_seed(3)
        q = ExpConcrete(0.6, logits=lg)
        y, _ = q.rsample_and_log_prob()
        return relaxed_kl(q, prior, y)

    assert torch.autograd.gradcheck(fn, (logits,))


def test_relaxed_kl_bad_input() -> None:
    q = ExpConcrete(0.5, logits=torch.zeros(3))
    with pytest.raises(ValueError, match="same space"):
        relaxed_kl(q, Concrete(0.5, logits=torch.zeros(3)), q.sample())
    with pytest.raises(ValueError, match=r"same event_shape.*\(3,\).*\(4,\)"):
        relaxed_kl(q, ExpConcrete(0.5, logits=torch.zeros(4)), q.sample())
    with pytest.raises(ValueError, match="torch Distributions"):
        relaxed_kl(q, "prior", q.sample())  # type: ignore[arg-type]
    b = BinaryConcrete(0.5, logits=torch.zeros(2))
    assert relaxed_kl(b, b, b.sample()).shape == (2,)
