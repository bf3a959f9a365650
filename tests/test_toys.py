"""concrete.toys: the REBAR/RELAX toy in closed form and the run-wise control variates."""

from __future__ import annotations

import math

import pytest
import torch

from concrete import estimators as est
from concrete.toys import (
    RunwiseMLPControl,
    RunwiseRebarControl,
    square_loss,
    square_loss_expectation,
    square_loss_gradient,
)

T = torch.tensor([0.45, 0.499, 0.2], dtype=torch.float64)
THETA = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)


def test_closed_form_matches_enumeration():
    f = square_loss(T)
    exact_j = est.exact_expectation(THETA, f, kind="bernoulli")
    torch.testing.assert_close(square_loss_expectation(THETA, T), exact_j)
    torch.testing.assert_close(square_loss_gradient(THETA, T),
                               est.exact_gradient(THETA, f, kind="bernoulli"))


def test_gradient_is_autograd_of_expectation_and_sign():
    th = THETA.clone().requires_grad_()
    (g,) = torch.autograd.grad(square_loss_expectation(th, T).sum(), th)
    torch.testing.assert_close(g, square_loss_gradient(THETA, T))
    assert bool((g > 0).all())  # t < 1/2: the loss decreases as theta decreases


def test_square_loss_broadcasts_over_leading_dims():
    f = square_loss(T)
    b = torch.tensor([[0.0, 1.0, 0.5]], dtype=torch.float64).expand(4, 3)
    out = f(b)
    assert out.shape == (4, 3)
    torch.testing.assert_close(out[0], (b[0] - T) ** 2)


@pytest.mark.parametrize("bad", [float("nan"), "x", True, torch.tensor([1, 2])])
def test_bad_targets(bad):
    with pytest.raises(ValueError, match="t must"):
        square_loss(bad)


def test_bad_logits():
    with pytest.raises(ValueError, match="logits"):
        square_loss_gradient([0.0], 0.4)


def test_rebar_control_equals_library_control_for_one_run():
    f = square_loss(0.45)
    lib = est.RelaxControl(f, kind="bernoulli", temperature=0.7, eta=1.3)
    mine = RunwiseRebarControl(f, 1, temperature=0.7, eta=1.3)
    z = torch.randn(5, 1)
    torch.testing.assert_close(mine(z), lib(z))


@pytest.mark.parametrize("make", [
    lambda f, r: RunwiseRebarControl(f, r),
    lambda f, r: RunwiseMLPControl(r, generator=torch.Generator().manual_seed(0)),
])
def test_controls_keep_runs_independent(make):
    runs = 3
    f = square_loss(torch.full((runs,), 0.45))
    control = make(f, runs)
    with torch.no_grad():  # a non-zero scale so that the MLP's output depends on its weights
        for p in control.parameters():
            p.add_(0.3)
    z = torch.randn(4, runs)
    out = control(z)
    assert out.shape == (4, runs)
    for r in range(runs):
        grads = torch.autograd.grad(out[:, r].sum(), list(control.parameters()),
                                    retain_graph=True)
        for g in grads:
            others = torch.cat([g[:r], g[r + 1:]])
            assert bool((others == 0).all())  # run r's output ignores the other runs' weights
            assert bool((g[r] != 0).any())


def test_mlp_control_starts_at_zero_and_reference_shapes():
    control = RunwiseMLPControl(2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(control(torch.randn(3, 2)), torch.zeros(3, 2))  # scale starts at 0
    assert control.w1.shape == (2, 10) and control.w2.shape == (2, 10)
    assert control.w1.abs().max() <= math.sqrt(6 / 11)
    torch.testing.assert_close(control.log_temperature.exp(), torch.full((2,), 0.5))


def test_relax_with_runwise_control_is_unbiased_on_the_toy():
    """Mean of 1e5 RELAX estimates vs the closed form, z-test per run at p > 1e-4."""
    runs = 2
    t = torch.tensor([0.45, 0.3], dtype=torch.float64)
    theta = torch.tensor([0.2, -0.5], dtype=torch.float64)
    f = square_loss(t)
    control = RunwiseMLPControl(runs, generator=torch.Generator().manual_seed(2)).double()
    with torch.no_grad():
        control.scale.fill_(1.0)  # an arbitrary, untrained control variate
    m = 100_000
    g = est.estimate_gradient("relax", theta, f, control, kind="bernoulli", replicates=m,
                              generator=torch.Generator().manual_seed(3))
    z = (g.mean(0) - square_loss_gradient(theta, t)) / (g.std(0) / m**0.5)
    assert z.abs().max().item() < 4.42  # two-sided p > 1e-5 per run, p > 1e-4 overall
    biased = g.mean(0) * 0.9  # the test has power: a 10% shrinkage is rejected
    z_b = (biased - square_loss_gradient(theta, t)) / (g.std(0) / m**0.5)
    assert z_b.abs().max().item() > 4.42


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_runs(bad):
    with pytest.raises(ValueError, match="runs"):
        RunwiseMLPControl(bad)
    with pytest.raises(ValueError, match="runs"):
        RunwiseRebarControl(square_loss(0.4), bad)


def test_bad_temperature_and_eta():
    with pytest.raises(ValueError, match="temperature"):
        RunwiseMLPControl(2, temperature=0.0)
    with pytest.raises(ValueError, match="eta"):
        RunwiseRebarControl(square_loss(0.4), 2, eta=float("inf"))
    with pytest.raises(ValueError, match="hidden"):
        RunwiseMLPControl(2, hidden=0)
