"""Tests of concrete.estimators: unbiasedness, bias, variance identities, conditional laws.

Statistical tests (all with fixed seeds):

* **Unbiasedness**: R = 10^5 independent estimates in one batched call
  (``estimate_gradient(..., replicates=R)``); per coordinate the z statistic
  ``(mean - exact) / (sd / sqrt(R))``; two-sided p-values, Bonferroni over the coordinates;
  pass at p > 1e-4. The power is shown by the same test on a deliberately biased variant
  of each family, which must give p < 1e-4.
* **Variance orderings** that are identities (Rao-Blackwellisation, antithetics, baselines):
  the two estimators are run on the *same* noise (same generator seed), both have the same
  mean, so ``Var_A - Var_B = E||g_A||^2 - E||g_B||^2`` is estimated by a paired mean of
  ``||g_A||^2 - ||g_B||^2``; the ordering must hold with z > 3.72 (one-sided p < 1e-4).
* **Conditional laws**: Kolmogorov-Smirnov tests at p > 1e-4 (Bonferroni), power shown on a
  wrong conditional.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

import concrete
import concrete.estimators as E

R = 100_000  # estimates per unbiasedness test
ALPHA = 1e-4
Z_ONE_SIDED = stats.norm.isf(ALPHA)  # 3.72
DT = torch.float64


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- toy problems ------------------------------------------------------------------------------


def weights(n: int) -> torch.Tensor:
    return torch.linspace(-1.0, 1.5, n, dtype=DT)


def quadratic(n: int, t: float = 0.45):
    """f(b) = (w . b - t)^2 (couples the Bernoulli variables; a function of the class index)."""
    w = weights(n)
    return lambda b: ((b * w).sum(-1) - t) ** 2


def nonlinear(n: int):
    """f(b) = sin(3 w . b) + exp(-(w . b)^2)."""
    w = weights(n)

    def f(b):
        s = (b * w).sum(-1)
        return torch.sin(3 * s) + torch.exp(-(s**2))

    return f


FUNCTIONS = {"quadratic": quadratic, "nonlinear": nonlinear}


def logits_for(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, generator=gen(100 + seed), dtype=DT)


class SmallNet(nn.Module):
    """A RELAX control-variate network r(z): (K, R, n) -> (K, R)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.net = nn.Sequential(nn.Linear(n, 8), nn.Tanh(), nn.Linear(8, 1)).to(DT)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).squeeze(-1)


def bonferroni_p(g: torch.Tensor, target: torch.Tensor) -> float:
    """Two-sided z-test per coordinate of the mean of g (R, m) against target, Bonferroni."""
    m = g.mean(0)
    se = g.std(0) / math.sqrt(g.shape[0])
    z = ((m - target) / se.clamp_min(1e-300)).abs().max().item()
    return min(1.0, target.numel() * 2 * stats.norm.sf(z))


def paired_variance_z(ga: torch.Tensor, gb: torch.Tensor) -> float:
    """z statistic of Var(ga) - Var(gb) > 0 for estimators with the same mean, paired."""
    d = (ga**2).sum(-1) - (gb**2).sum(-1)
    return (d.mean() / (d.std() / math.sqrt(d.numel()))).item()


# -- unbiasedness ------------------------------------------------------------------------------

UNBIASED = {
    "reinforce": ("reinforce", {}),
    "reinforce_ema": ("reinforce", {}),  # baseline set in the test (a running EMA value)
    "rloo": ("rloo", {"samples": 2}),
    "rebar": ("rebar", {"temperature": 0.5, "eta": 1.0}),
    "relax": ("relax", {}),
    "arm": ("arm", {}),
    "disarm": ("disarm", {}),
}


def run_estimator(key: str, theta, f, kind: str, n: int, seed: int, reps: int = R):
    name, kw = UNBIASED[key]
    kw = dict(kw)
    args = ()
    if key == "reinforce_ema":
        ema = E.EMABaseline(0.9)
        ema.update(torch.tensor(0.7, dtype=DT))  # a running value from "earlier steps"
        kw["baseline"] = ema
    if key == "relax":
        args = (E.RelaxControl(f, SmallNet(n), kind=kind, temperature=0.7, eta=0.8),)
    return E.estimate_gradient(
        name, theta, f, *args, kind=kind, replicates=reps, generator=gen(seed), **kw
    )


CASES = [
    (key, kind, n, fname)
    for key in UNBIASED
    for kind in ("categorical", "bernoulli")
    for n in (2, 3, 5)
    for fname in FUNCTIONS
    if not (key in ("arm", "disarm") and kind == "categorical")
]


@pytest.mark.parametrize("key,kind,n,fname", CASES)
def test_unbiased(key, kind, n, fname):
    theta = logits_for(n)
    f = FUNCTIONS[fname](n)
    exact = E.exact_gradient(theta, f, kind=kind)
    g = run_estimator(
        key, theta, f, kind, n, seed=zlib.crc32(f"{key}{kind}{n}{fname}".encode()) % 10_000
    )
    assert g.shape == (R, n)
    assert torch.isfinite(g).all()
    p = bonferroni_p(g, exact)
    assert p > ALPHA, f"{key} {kind} n={n} {fname}: p={p:.2e}, mean={g.mean(0)}, exact={exact}"


def biased_self_baseline(theta, f, kind, seed):
    """Score function whose baseline includes the sample itself: mean over K=2 samples.

    (f_k - mean_j f_j) grad log p(b_k), averaged over k, equals (K-1)/K times RLOO: half the
    gradient for K = 2.
    """
    return 0.5 * E.estimate_gradient(
        "rloo", theta, f, kind=kind, samples=2, replicates=R, generator=gen(seed)
    )


def biased_relaxed_baseline(theta, f, kind, seed, temperature=0.5):
    """REBAR's mistake: use c(z) of the *same* noise as a baseline, without the correction.

    g = [f(b) - f(sigma(z))] grad log p(b): the baseline depends on b, so it is biased by
    -E[f(sigma(z)) grad log p(b)].
    """
    th = theta.detach().expand(R, *theta.shape).clone().requires_grad_()
    shape = (1, *th.shape)
    g_ = gen(seed)
    if kind == "categorical":
        z = th.detach() + concrete.sample_gumbel(shape, dtype=DT, generator=g_)
        b = torch.zeros_like(z).scatter_(-1, z.argmax(-1, keepdim=True), 1.0)
    else:
        u = torch.rand(shape, dtype=DT, generator=g_).clamp_min(1e-300)
        z = th.detach() + u.log() - torch.log1p(-u)
        b = (z > 0).to(DT)
    c = f(E.relaxed_sample(z, temperature, kind=kind))
    lp = E.log_prob(th, b, kind=kind)
    lp = lp.sum(-1) if kind == "bernoulli" else lp
    (g,) = torch.autograd.grad(((f(b) - c) * lp).sum(), th)
    return g


def biased_independent_arm(theta, f, seed):
    """ARM with independent uniforms for its two evaluations: mean = half the gradient."""
    g_ = gen(seed)
    th = theta.expand(R, *theta.shape)
    u = torch.rand(th.shape, dtype=DT, generator=g_)
    u2 = torch.rand(th.shape, dtype=DT, generator=g_)
    b1 = (u2 > torch.sigmoid(-th)).to(DT)
    b2 = (u < torch.sigmoid(th)).to(DT)
    return ((f(b1) - f(b2)).unsqueeze(-1)) * (u - 0.5)


@pytest.mark.parametrize("kind", ["categorical", "bernoulli"])
@pytest.mark.parametrize("fname", list(FUNCTIONS))
def test_unbiasedness_test_has_power(kind, fname):
    """The same z-test rejects deliberately biased variants of each family (n = 3)."""
    n = 3
    theta = logits_for(n)
    f = FUNCTIONS[fname](n)
    exact = E.exact_gradient(theta, f, kind=kind)
    variants = {
        "self-including baseline": biased_self_baseline(theta, f, kind, 11),
        "relaxed baseline without correction": biased_relaxed_baseline(theta, f, kind, 12),
    }
    if kind == "bernoulli":
        variants["ARM with independent uniforms"] = biased_independent_arm(theta, f, 13)
    for label, g in variants.items():
        p = bonferroni_p(g, exact)
        assert p < ALPHA, f"{label}: the test does not detect the bias (p={p:.2e})"


# -- bias where theory says so ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["categorical", "bernoulli"])
def test_straight_through_and_gumbel_softmax_are_biased(kind):
    n = 3
    theta = logits_for(n)
    f = nonlinear(n)
    exact = E.exact_gradient(theta, f, kind=kind)
    for name, kw in [
        ("straight_through", {}),
        ("gumbel_softmax", {"temperature": 1.0}),
        ("st_gumbel_softmax", {"temperature": 1.0}),
    ]:
        g = E.estimate_gradient(name, theta, f, kind=kind, replicates=R, generator=gen(5), **kw)
        p = bonferroni_p(g, exact)
        assert p < ALPHA, f"{name} ({kind}): bias not detected, p={p:.2e}"


@pytest.mark.parametrize("kind", ["categorical", "bernoulli"])
def test_gumbel_softmax_bias_shrinks_with_temperature(kind):
    """||E[g_GS] - grad J|| falls at lambda = 1, 0.5, 0.25, 0.1, each step beyond noise."""
    n = 3
    theta = logits_for(n)
    f = nonlinear(n)
    exact = E.exact_gradient(theta, f, kind=kind)
    norms, ses = [], []
    for lam in (1.0, 0.5, 0.25, 0.1):
        g = E.estimate_gradient(
            "gumbel_softmax",
            theta,
            f,
            kind=kind,
            temperature=lam,
            replicates=R,
            generator=gen(7),
        )
        bias = g.mean(0) - exact
        cov = torch.cov(g.T) / R
        norm = bias.norm()
        # delta method: se of ||bias|| = sqrt(u^T C u), u = bias / ||bias||
        u = bias / norm
        norms.append(norm.item())
        ses.append(math.sqrt((u @ cov @ u).item()))
    for i in range(len(norms) - 1):
        z = (norms[i] - norms[i + 1]) / math.hypot(ses[i], ses[i + 1])
        assert z > Z_ONE_SIDED, f"bias {norms} (se {ses}) does not fall at step {i}"


# -- variance identities ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["categorical", "bernoulli"])
def test_gumbel_rao_one_sample_is_st_gumbel_softmax(kind):
    theta = torch.randn(4, 5, dtype=DT) if kind == "categorical" else torch.randn(4, 5, dtype=DT)
    w = torch.arange(5, dtype=DT)
    f = (lambda b: (b * w).sum(-1).sin()) if kind == "categorical" else (lambda b: b.sin())
    kw = {"kind": kind, "samples": 3, "temperature": 0.7}
    a = E.estimate_gradient("st_gumbel_softmax", theta, f, generator=gen(1), **kw)
    b = E.estimate_gradient("gumbel_rao", theta, f, rao_samples=1, generator=gen(1), **kw)
    assert torch.equal(a, b)
    c = E.estimate_gradient("gumbel_rao", theta, f, rao_samples=2, generator=gen(1), **kw)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("kind", ["categorical", "bernoulli"])
def test_gumbel_rao_variance_falls_with_rao_samples(kind):
    """Var(ST-GS) = Var(GR, R=1) > Var(GR, R=10) > Var(GR, R=100), paired on the same noise.

    With one seed the R=100 draws extend the R=10 ones, so the three share the discrete
    sample and are conditional averages of one another.
    """
    n = 3
    theta = logits_for(n)
    f = quadratic(n)
    reps = 20_000
    gs = {}
    for k in (1, 10, 100):
        gs[k] = E.estimate_gradient(
            "gumbel_rao",
            theta,
            f,
            kind=kind,
            temperature=0.5,
            rao_samples=k,
            replicates=reps,
            generator=gen(21),
        )
    st = E.estimate_gradient(
        "st_gumbel_softmax",
        theta,
        f,
        kind=kind,
        temperature=0.5,
        replicates=reps,
        generator=gen(21),
    )
    assert torch.equal(st, gs[1])
    assert paired_variance_z(gs[1], gs[10]) > Z_ONE_SIDED
    assert paired_variance_z(gs[10], gs[100]) > Z_ONE_SIDED
    v = [gs[k].var(0).sum().item() for k in (1, 10, 100)]
    assert v[0] > v[1] > v[2]


def test_disarm_variance_below_arm():
    for n in (2, 3, 5):
        theta = logits_for(n)
        for fname, make in FUNCTIONS.items():
            f = make(n)
            a = E.estimate_gradient("arm", theta, f, replicates=R, generator=gen(31))
            d = E.estimate_gradient("disarm", theta, f, replicates=R, generator=gen(31))
            # DisARM is E[ARM | b, b~] on the same uniforms: never larger per pair on average
            z = paired_variance_z(a, d)
            assert z > Z_ONE_SIDED, f"n={n} {fname}: z={z:.2f}"


@pytest.mark.parametrize("kind", ["categorical", "bernoulli"])
def test_rloo_beats_independent_reinforce(kind):
    """RLOO with K = 4 samples vs the mean of 4 REINFORCE estimates without baseline."""
    n = 3
    theta = logits_for(n)
    f = quadratic(n)
    kw = {"kind": kind, "samples": 4, "replicates": R, "generator": gen(41)}
    plain = E.estimate_gradient("reinforce", theta, f, **kw)
    rloo = E.estimate_gradient("rloo", theta, f, **kw)
    assert paired_variance_z(plain, rloo) > Z_ONE_SIDED


# -- the conditional reparameterisations ---------------------------------------------------------


def _ks_pvalues_conditional(z_cond, b_cond, z_free, b_free, n_classes):
    ps = []
    for k in range(n_classes):
        mc, mf = b_cond == k, b_free == k
        for i in range(z_cond.shape[-1]):
            ps.append(stats.ks_2samp(z_cond[mc, i], z_free[mf, i]).pvalue)
    return np.array(ps)


def test_conditional_gumbel_reproduces_the_joint_law():
    n, m = 4, 50_000
    theta = torch.tensor([0.5, -1.0, 2.0, 0.0], dtype=DT)
    g_ = gen(51)
    # the joint law: z = theta + G, b = argmax z
    z_free = theta + concrete.sample_gumbel((m, n), dtype=DT, generator=g_)
    b_free = z_free.argmax(-1)
    # b first, then z ~ p(z | b)
    b = E.sample(theta, m, generator=g_)
    z_cond = E.conditional_gumbel(theta, b, generator=g_)
    assert torch.equal(z_cond.argmax(-1), b.argmax(-1))
    # marginals against the exact Gumbel(theta_i) CDF
    for i in range(n):
        p = stats.kstest(z_cond[:, i].numpy(), stats.gumbel_r(loc=theta[i].item()).cdf).pvalue
        assert p * n > ALPHA
    # every conditional marginal z_i | b = k against the joint law's
    ps = _ks_pvalues_conditional(
        z_cond.numpy(), b.argmax(-1).numpy(), z_free.numpy(), b_free.numpy(), n
    )
    assert ps.min() * ps.size > ALPHA, ps.min()
    # power: a wrong conditional (maximum located at theta_k instead of logsumexp theta)
    e = torch.empty(m, n, dtype=DT).exponential_(generator=g_)
    top = theta - e.log()
    zk = (top * b).sum(-1, keepdim=True)
    wrong = torch.where(b > 0.5, zk, -torch.logaddexp(-zk, e.log() - theta))
    ps = _ks_pvalues_conditional(
        wrong.numpy(), b.argmax(-1).numpy(), z_free.numpy(), b_free.numpy(), n
    )
    assert ps.min() * ps.size < ALPHA


def test_conditional_logistic_reproduces_the_joint_law():
    m = 50_000
    theta = torch.tensor([0.3, -2.0, 4.0], dtype=DT)
    g_ = gen(52)
    u = torch.rand(m, 3, dtype=DT, generator=g_)
    z_free = theta + u.log() - torch.log1p(-u)
    b = E.sample(theta, m, kind="bernoulli", generator=g_)
    z_cond = E.conditional_logistic(theta, b, generator=g_)
    assert torch.equal((z_cond > 0).to(DT), b)
    assert torch.isfinite(z_cond).all()
    ps = []
    for i in range(3):
        ps.append(
            stats.kstest(z_cond[:, i].numpy(), stats.logistic(loc=theta[i].item()).cdf).pvalue
        )
        for v in (0.0, 1.0):
            ps.append(
                stats.ks_2samp(
                    z_cond[b[:, i] == v, i].numpy(),
                    z_free[(z_free[:, i] > 0).to(DT) == v, i].numpy(),
                ).pvalue
            )
    assert min(ps) * len(ps) > ALPHA
    # power: the untruncated logistic given b (ignores the conditioning) fails
    wrong = theta + u.log() - torch.log1p(-u)
    p = stats.ks_2samp(wrong[b[:, 0] == 1, 0].numpy(), z_free[z_free[:, 0] > 0, 0].numpy()).pvalue
    assert p < ALPHA


def test_conditional_samples_are_finite_for_extreme_logits():
    theta = torch.tensor([60.0, -60.0, 0.0], dtype=torch.float32)
    b = E.sample(theta, 1000, generator=gen(53))
    b[0] = torch.tensor([0.0, 1.0, 0.0])  # a (practically impossible) class, still finite
    assert torch.isfinite(E.conditional_gumbel(theta, b, generator=gen(54))).all()
    bb = torch.zeros(1000, 3)
    bb[::2] = 1.0
    z = E.conditional_logistic(theta, bb, generator=gen(55))
    assert torch.isfinite(z).all()
    assert torch.equal((z > 0).float(), bb)


# -- exact enumeration ----------------------------------------------------------------------------


def test_exact_gradient_matches_closed_form_bernoulli():
    theta = torch.tensor([0.3, -1.2, 2.0, 0.1], dtype=DT, requires_grad=True)
    w, t = torch.tensor([1.0, -0.5, 2.0, 0.7], dtype=DT), 0.45
    f = lambda b: ((b * w).sum(-1) - t) ** 2  # noqa: E731
    p = torch.sigmoid(theta)
    closed = (w**2 * p * (1 - p)).sum() + ((w * p).sum() - t) ** 2  # Var + mean^2
    (g_closed,) = torch.autograd.grad(closed, theta)
    got = E.exact_expectation(theta, f, kind="bernoulli")
    torch.testing.assert_close(got, closed.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(E.exact_gradient(theta, f, kind="bernoulli"), g_closed)
    # d/dtheta sigma = sigma (1 - sigma) for a linear f
    lin = E.exact_gradient(theta, lambda b: (b * w).sum(-1), kind="bernoulli")
    torch.testing.assert_close(lin, (w * p * (1 - p)).detach())


def test_exact_gradient_matches_closed_form_categorical_with_events():
    """Two categorical variables per output element (event), batch of 2 elements."""
    theta = torch.randn(2, 2, 3, dtype=DT, generator=gen(61))
    a = torch.tensor([1.0, -2.0, 0.5], dtype=DT)
    c = torch.tensor([0.3, 1.0, -1.0], dtype=DT)

    def f(b):  # (C, 2, 2, 3) -> (C, 2): h(k, l) = (a_k + c_l)^2
        return ((b[..., 0, :] * a).sum(-1) + (b[..., 1, :] * c).sum(-1)) ** 2

    leaf = theta.clone().requires_grad_()
    p = torch.softmax(leaf, -1)
    h = (a[:, None] + c[None, :]) ** 2
    closed = torch.einsum("bk,bl,kl->b", p[:, 0], p[:, 1], h)
    (g_closed,) = torch.autograd.grad(closed.sum(), leaf)
    torch.testing.assert_close(E.exact_expectation(theta, f), closed.detach())
    torch.testing.assert_close(E.exact_gradient(theta, f), g_closed)
    s = E.exact(leaf, f)
    s.backward()
    torch.testing.assert_close(leaf.grad, g_closed)


def test_exact_refuses_huge_spaces():
    with pytest.raises(ValueError, match="MAX_CONFIGURATIONS"):
        E.exact_expectation(torch.zeros(20, 10, dtype=DT), lambda b: b.sum((-1, -2)))


# -- surrogates: gradients land where they should ----------------------------------------------


@pytest.mark.parametrize(
    "name,kind,kw",
    [
        ("reinforce", "categorical", {}),
        ("rloo", "bernoulli", {"samples": 3}),
        ("straight_through", "categorical", {}),
        ("gumbel_softmax", "bernoulli", {"temperature": 0.5}),
        ("st_gumbel_softmax", "categorical", {"temperature": 0.5}),
        ("gumbel_rao", "categorical", {"temperature": 0.5, "rao_samples": 4}),
        ("rebar", "bernoulli", {}),
        ("arm", "bernoulli", {}),
        ("disarm", "bernoulli", {}),
    ],
)
def test_surrogate_backward_fills_logits_and_f_parameters(name, kind, kw):
    """S.backward() = estimate_gradient on the same noise; f's parameter gets its gradient."""
    shape = (6, 4) if kind == "categorical" else (6,)
    theta = torch.randn(shape, dtype=DT, generator=gen(71))
    w = torch.linspace(-1, 1, 4, dtype=DT)
    scale = nn.Parameter(torch.tensor(1.5, dtype=DT))

    def f(b):
        s = (b * w).sum(-1) if kind == "categorical" else b * 0.7
        return scale * (s - 0.2) ** 2

    kw = {"samples": 2, **kw}
    leaf = theta.clone().requires_grad_()
    s = E.ESTIMATORS[name](leaf, f, kind=kind, generator=gen(72), **kw)
    assert s.dim() == 0
    s.backward()
    expected = E.estimate_gradient(name, theta, f, kind=kind, generator=gen(72), **kw)
    torch.testing.assert_close(leaf.grad, expected)
    assert scale.grad is not None and torch.isfinite(scale.grad) and scale.grad != 0


@pytest.mark.parametrize(
    "name,kind,args",
    [
        ("reinforce", "categorical", 0),
        ("rebar", "categorical", 0),
        ("relax", "bernoulli", 1),
        ("arm", "bernoulli", 0),
        ("gumbel_rao", "categorical", 0),
    ],
)
def test_gradient_reaches_an_encoder_through_the_logits(name, kind, args):
    """logits = encoder(x) (not a leaf): the encoder's .grad is J^T g for the same noise."""
    torch.manual_seed(0)
    out = 3 * 4 if kind == "categorical" else 3
    enc = nn.Linear(5, out).to(DT)
    x = torch.randn(6, 5, dtype=DT)
    shape = (6, 3, 4) if kind == "categorical" else (6, 3)
    w = torch.linspace(-1, 1, shape[-1], dtype=DT)

    def f(b):
        s = (b * w).sum((-1, -2)) if kind == "categorical" else (b * w).sum(-1)
        return torch.sin(s)

    extra = (E.RelaxControl(f, kind=kind).to(DT),) if args else ()
    logits = enc(x).reshape(shape)
    E.ESTIMATORS[name](logits, f, *extra, kind=kind, samples=3, generator=gen(75)).backward()
    g = E.estimate_gradient(
        name, logits.detach(), f, *extra, kind=kind, samples=3, generator=gen(75)
    )
    (expected,) = torch.autograd.grad(enc(x).reshape(shape), enc.weight, g)
    torch.testing.assert_close(enc.weight.grad, expected)


def test_surrogate_value_is_the_monte_carlo_objective():
    theta = torch.randn(5, 3, dtype=DT, generator=gen(73), requires_grad=True)
    f = lambda b: (b * torch.arange(3, dtype=DT)).sum(-1)  # noqa: E731
    b = E.sample(theta, 7, generator=gen(74))
    s = E.score_function(theta, f, samples=7, generator=gen(74))
    torch.testing.assert_close(s, f(b).mean(0).sum())
    s2 = E.rebar(theta, f, samples=7, generator=gen(74))
    torch.testing.assert_close(s2, f(b).mean(0).sum())


def test_relax_trains_the_control_on_the_variance():
    """The control's .grad is d/dphi ||g||^2 (finite differences on the same noise)."""
    n = 3
    theta = logits_for(n).expand(50, n).clone()
    f = nonlinear(n)
    control = E.RelaxControl(f, kind="categorical", temperature=0.6, eta=0.9).to(DT)
    leaf = theta.clone().requires_grad_()
    E.relax(leaf, f, control, generator=gen(81)).backward()
    assert control.eta.grad is not None and control.log_temperature.grad is not None

    def var_at(eta: float, log_t: float) -> float:
        c = E.RelaxControl(f, kind="categorical").to(DT)
        with torch.no_grad():
            c.eta.fill_(eta)
            c.log_temperature.fill_(log_t)
        g = E.estimate_gradient("relax", theta, f, c, generator=gen(81))
        return (g**2).sum().item()

    eps = 1e-5
    eta0, lt0 = control.eta.item(), control.log_temperature.item()
    fd_eta = (var_at(eta0 + eps, lt0) - var_at(eta0 - eps, lt0)) / (2 * eps)
    fd_lt = (var_at(eta0, lt0 + eps) - var_at(eta0, lt0 - eps)) / (2 * eps)
    assert control.eta.grad.item() == pytest.approx(fd_eta, rel=1e-4, abs=1e-8)
    assert control.log_temperature.grad.item() == pytest.approx(fd_lt, rel=1e-4, abs=1e-8)
    # f's own parameters are not the control's
    assert {id(p) for p in control.parameters()} == {id(control.eta), id(control.log_temperature)}


def test_score_function_ema_baseline_updates_after_use():
    ema = E.EMABaseline(0.5)
    theta = torch.zeros(4, 2, dtype=DT, requires_grad=True)
    f = lambda b: b[..., 0] * 2.0  # noqa: E731
    E.score_function(theta, f, baseline=ema, samples=3, generator=gen(91))
    b = E.sample(theta, 3, generator=gen(91))
    first = f(b).mean()
    torch.testing.assert_close(ema.value, first)
    E.score_function(theta, f, baseline=ema, samples=3, generator=gen(92))
    b2 = E.sample(theta, 3, generator=gen(92))
    torch.testing.assert_close(ema.value, 0.5 * first + 0.5 * f(b2).mean())


# -- NVIL and VIMCO -------------------------------------------------------------------------------


def test_vimco_signals_match_a_loop_reference():
    log_w = torch.randn(6, 4, dtype=DT, generator=gen(101)) * 4
    got = E.vimco_learning_signals(log_w)
    k = log_w.shape[0]
    for j in range(k):
        others = torch.cat([log_w[:j], log_w[j + 1 :]])
        geo = others.mean(0, keepdim=True)
        loo = torch.cat([others, geo]).logsumexp(0) - math.log(k)
        torch.testing.assert_close(got[j], log_w.logsumexp(0) - math.log(k) - loo)
    # extreme log-weights stay finite
    assert torch.isfinite(E.vimco_learning_signals(log_w * 1e3)).all()


def test_vimco_surrogate_gradient():
    """Gradient = sum_k l_k grad log q_k + sum_k w~_k grad log w_k (Mnih & Rezende 2016)."""
    k = 5
    phi = torch.randn(k, 3, dtype=DT, generator=gen(102), requires_grad=True)
    log_q = torch.log_softmax(phi, 0)  # any differentiable log q
    log_p = torch.randn(k, 3, dtype=DT, generator=gen(103))
    log_w = log_p - log_q
    s = E.vimco_surrogate(log_w, log_q)
    torch.testing.assert_close(s, (log_w.logsumexp(0) - math.log(k)).sum())
    (g,) = torch.autograd.grad(s, phi, retain_graph=True)
    sig = E.vimco_learning_signals(log_w)
    wt = torch.softmax(log_w.detach(), 0)
    (ref,) = torch.autograd.grad((sig * log_q).sum() + (wt * log_w).sum(), phi)
    torch.testing.assert_close(g, ref)


def test_nvil_moments_normalisation_and_gradients():
    torch.manual_seed(0)
    base = nn.Linear(2, 1).to(DT)
    nvil = E.NVIL(base, decay=0.8).to(DT)
    x = torch.randn(16, 2, dtype=DT)
    enc = nn.Parameter(torch.zeros(16, dtype=DT))
    log_q = enc * 1.0
    log_p = torch.randn(16, dtype=DT) * 5
    l_raw = log_p - log_q.detach()
    c = base(x).squeeze(-1).detach()
    lc = l_raw - c
    mean = 0.2 * lc.mean()
    var = 0.8 * 1.0 + 0.2 * lc.var(unbiased=False)
    expected = (lc - mean) / max(1.0, math.sqrt(var.item()))
    s = nvil.surrogate(log_p, log_q, x)
    torch.testing.assert_close(nvil.running_mean, mean)
    torch.testing.assert_close(nvil.running_var, var)
    torch.testing.assert_close(s, l_raw.sum())
    s.backward()
    torch.testing.assert_close(enc.grad, expected)
    torch.testing.assert_close(base.bias.grad, expected.sum().reshape(1))
    nvil.eval()  # moments frozen in eval mode
    nvil.surrogate(log_p, log_q, x)
    torch.testing.assert_close(nvil.running_mean, mean)


# -- bad input ----------------------------------------------------------------------------------


def _f(b):
    return b.sum(-1)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: E.score_function(torch.tensor([0.0, float("nan")]), _f), "logits"),
        (lambda: E.score_function(torch.tensor([0.0, float("inf")]), _f), "logits"),
        (lambda: E.score_function(torch.zeros(()), _f), "logits"),
        (lambda: E.score_function(torch.zeros(3, 1), _f), "logits"),
        (lambda: E.score_function(torch.zeros(3, dtype=torch.long), _f), "logits"),
        (lambda: E.score_function([0.0, 1.0], _f), "logits"),
        (lambda: E.score_function(torch.zeros(3), _f, samples=0), "samples=0"),
        (lambda: E.score_function(torch.zeros(3), _f, samples=2.0), "samples=2.0"),
        (lambda: E.score_function(torch.zeros(3), _f, baseline="loo"), "samples=1"),
        (lambda: E.score_function(torch.zeros(3), _f, baseline="mean"), "baseline='mean'"),
        (lambda: E.score_function(torch.zeros(3), _f, kind="gaussian"), "kind='gaussian'"),
        (lambda: E.score_function(torch.zeros(3), "f"), "f="),
        (lambda: E.score_function(torch.zeros(2, 3), lambda b: b.sum()), "f"),
        (lambda: E.score_function(torch.zeros(2, 3), lambda b: b), "f"),
        (lambda: E.gumbel_softmax_estimator(torch.zeros(3), _f, temperature=0.0), "temperature"),
        (lambda: E.st_gumbel_softmax(torch.zeros(3), _f, temperature=-1.0), "temperature"),
        (lambda: E.gumbel_rao(torch.zeros(3), _f, temperature=float("nan")), "temperature"),
        (lambda: E.gumbel_rao(torch.zeros(3), _f, rao_samples=0), "rao_samples=0"),
        (lambda: E.rebar(torch.zeros(3), _f, temperature=0), "temperature"),
        (lambda: E.relax(torch.zeros(3), _f, control=_f), "control"),
        (lambda: E.arm(torch.zeros(3), _f, kind="categorical"), "kind='categorical'"),
        (lambda: E.disarm(torch.zeros(3), _f, samples=-1), "samples=-1"),
        (lambda: E.estimate_gradient("nope", torch.zeros(3), _f), "estimator='nope'"),
        (
            lambda: E.estimate_gradient("reinforce", torch.zeros(3), _f, replicates=0),
            "replicates=0",
        ),
        (lambda: E.conditional_gumbel(torch.zeros(3), torch.zeros(4)), "b must"),
        (lambda: E.vimco_learning_signals(torch.zeros(1, 3)), "log_w.shape"),
        (lambda: E.vimco_learning_signals(torch.tensor([[0.0], [float("nan")]])), "log_w"),
        (lambda: E.EMABaseline(1.0), "decay=1.0"),
        (lambda: E.NVIL(decay=-0.1), "decay=-0.1"),
        (lambda: E.RelaxControl(_f, temperature=0.0), "temperature"),
    ],
)
def test_bad_input_raises_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_public_api_is_exported():
    for name in E.__all__:
        assert hasattr(E, name)
    assert concrete.estimate_gradient is E.estimate_gradient
    assert set(E.ESTIMATORS) == {
        "exact",
        "reinforce",
        "rloo",
        "straight_through",
        "gumbel_softmax",
        "st_gumbel_softmax",
        "gumbel_rao",
        "rebar",
        "relax",
        "arm",
        "disarm",
    }
