"""ExpConcrete, Concrete, BinaryConcrete, LogitBinaryConcrete (issue 2, criteria 1-6 and 8).

Statistical tests use fixed seeds and reject at p < 1e-3; each shows its power by rejecting a
slightly wrong law on the same samples.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from torch.distributions import RelaxedBernoulli
from torch.distributions.relaxed_bernoulli import LogitRelaxedBernoulli
from torch.distributions.relaxed_categorical import ExpRelaxedCategorical

from concrete import BinaryConcrete, Concrete, ExpConcrete, LogitBinaryConcrete
from concrete.distributions import exp_concrete_log_prob

P_MIN = 1e-3
F64 = torch.float64


def _chisquare(counts: torch.Tensor, probs: torch.Tensor) -> float:
    c = counts.double().numpy()
    return float(stats.chisquare(c, probs.double().numpy() * c.sum()).pvalue)


# --------------------------------------------------------------------------- 1. agreement
@pytest.mark.parametrize("n", [2, 3, 10, 100])
def test_exp_concrete_log_prob_agrees_with_torch(n: int) -> None:
    gen = torch.Generator().manual_seed(n)
    for lam in (0.1, 0.37, 1.0, 2.5, 10.0):
        logits = 2 * torch.randn(6, n, dtype=F64, generator=gen)
        ours = ExpConcrete(lam, logits=logits)
        ref = ExpRelaxedCategorical(torch.tensor(lam, dtype=F64), logits=logits)
        for y in (ours.rsample((4,)), ref.rsample((4,))):  # our samples and torch's
            torch.testing.assert_close(ours.log_prob(y), ref.log_prob(y), rtol=0, atol=1e-6)
        # tensor temperatures of batch shape: compare row by row
        lam_b = torch.linspace(0.1, 10.0, 6, dtype=F64)
        ours_b = ExpConcrete(lam_b, logits=logits)
        y = ours_b.rsample((3,))
        # torch cannot score a batch of temperatures (its log_scale broadcasts wrongly): per row
        ref_rows = [
            ExpRelaxedCategorical(lam_b[i], logits=logits[i]).log_prob(y[:, i]) for i in range(6)
        ]
        torch.testing.assert_close(ours_b.log_prob(y), torch.stack(ref_rows, -1), rtol=0, atol=1e-6)


def test_exp_concrete_probs_parameterisation_agrees_with_torch() -> None:
    probs = torch.tensor([[0.2, 0.3, 0.5], [0.9, 0.05, 0.05]], dtype=F64)
    ours = ExpConcrete(0.7, probs=probs)
    ref = ExpRelaxedCategorical(torch.tensor(0.7, dtype=F64), probs=probs)
    y = ours.rsample((5,))
    torch.testing.assert_close(ours.log_prob(y), ref.log_prob(y), rtol=0, atol=1e-6)
    torch.testing.assert_close(ours.probs, probs)
    torch.testing.assert_close(ours.logits, ref.logits)


@pytest.mark.parametrize("lam", [0.1, 0.5, 1.0, 3.0, 10.0])
def test_binary_concrete_agrees_with_torch(lam: float) -> None:
    gen = torch.Generator().manual_seed(11)
    logits = 3 * torch.randn(50, dtype=F64, generator=gen)
    ours = BinaryConcrete(lam, logits=logits)
    ref = RelaxedBernoulli(torch.tensor(lam, dtype=F64), logits=logits)
    x = ours.rsample((20,))
    want = ref.log_prob(x)
    # External values: both compute logit(x) from x (torch clamps x to [tiny, 1 - eps]).
    inside = (x > torch.finfo(F64).tiny) & (x < 1 - torch.finfo(F64).eps)
    assert torch.isfinite(want).all() and inside.float().mean() > 0.5
    torch.testing.assert_close(ours.log_prob(x.clone())[inside], want[inside], rtol=0, atol=1e-6)
    # Own samples: ours uses the stored logit, exact even where x has rounded towards 0 or 1;
    # away from the ends (where logit(x) is well conditioned) it agrees with torch.
    safe = (x > 1e-6) & (x < 1 - 1e-6)
    assert safe.any()
    torch.testing.assert_close(ours.log_prob(x)[safe], want[safe], rtol=0, atol=1e-6)
    logit_ours = LogitBinaryConcrete(lam, logits=logits)
    logit_ref = LogitRelaxedBernoulli(torch.tensor(lam, dtype=F64), logits=logits)
    y = logit_ours.rsample((20,))
    torch.testing.assert_close(logit_ours.log_prob(y), logit_ref.log_prob(y), rtol=0, atol=1e-6)


def test_binary_concrete_is_the_two_class_concrete() -> None:
    """x ~ BinaryConcrete(l) has the law of x_1 for Concrete(logits=(l, 0)): equal densities."""
    logits = torch.tensor([-1.0, 0.3, 2.0], dtype=F64)
    lam = 0.6
    b = BinaryConcrete(lam, logits=logits)
    c = Concrete(lam, logits=torch.stack([logits, torch.zeros_like(logits)], -1))
    x = b.sample((7,)).clamp(1e-6, 1 - 1e-6)
    pair = torch.stack([x, 1 - x], -1)
    # the Concrete density on the 1-simplex is w.r.t. dx_1, so the densities coincide
    torch.testing.assert_close(b.log_prob(x), c.log_prob(pair), rtol=1e-9, atol=1e-9)


# --------------------------------------------------------------------------- 2. identity
@pytest.mark.parametrize("n", [2, 3, 10])
def test_concrete_log_prob_identity(n: int) -> None:
    gen = torch.Generator().manual_seed(20 + n)
    logits = torch.randn(4, n, dtype=F64, generator=gen)
    lam = torch.tensor([0.2, 0.5, 1.0, 4.0], dtype=F64)
    c, e = Concrete(lam, logits=logits), ExpConcrete(lam, logits=logits)
    x = torch.distributions.Dirichlet(torch.ones(n, dtype=F64)).sample((5, 4))
    torch.testing.assert_close(c.log_prob(x), e.log_prob(x.log()) - x.log().sum(-1))
    x = c.rsample((5,))  # own samples (cached log-sample path)
    torch.testing.assert_close(c.log_prob(x), e.log_prob(x.log()) - x.log().sum(-1))


# --------------------------------------------------------------------------- 3. normalisation
NORMALISATION_CASES = [
    # (alpha, lam): lam < 1 makes the density singular at the vertices
    ((2.0, 0.5), 0.7),
    ((1.0, 1.0), 0.2),
    ((0.1, 5.0), 1.0),
    ((3.0, 1.0), 2.5),
    ((1.0, 2.0, 3.0), 0.4),
    ((1.0, 1.0, 1.0), 1.0),
    ((0.2, 1.0, 4.0), 2.0),
    ((5.0, 0.5, 1.0), 0.8),
]


def _logratio_integral(alpha: tuple[float, ...], lam: float, h: float) -> float:
    """Integral of p(x) dx_1..dx_{n-1} by the change of variables x = softmax(u, 0).

    dx_1..dx_{n-1} = (prod_k x_k) du_1..du_{n-1}, and the integrand is smooth and decays
    exponentially in u, so the trapezoidal rule on a truncated box converges geometrically.
    """
    n = len(alpha)
    logits = torch.tensor(alpha, dtype=F64).log()
    half = (float(logits.abs().max()) + 45.0) / lam  # the tails beyond hold < e^-40 mass
    m = int(2 * half / h) + 1
    u = torch.linspace(-half, half, m, dtype=F64)
    grids = torch.meshgrid(*([u] * (n - 1)), indexing="ij")
    uu = torch.stack([*grids, torch.zeros_like(grids[0])], -1).reshape(-1, n)
    x = torch.softmax(uu, -1)
    log_p = Concrete(lam, logits=logits, validate_args=False).log_prob(x)
    vals = (log_p + torch.log_softmax(uu, -1).sum(-1)).exp()
    step = float(u[1] - u[0])
    return float(vals.sum()) * step ** (n - 1)


@pytest.mark.parametrize(("alpha", "lam"), NORMALISATION_CASES)
def test_concrete_density_integrates_to_one(alpha: tuple[float, ...], lam: float) -> None:
    n = len(alpha)
    h = 0.25 / max(lam, 0.25) if n == 2 else 0.5 / max(lam, 0.5)
    coarse, fine = _logratio_integral(alpha, lam, 2 * h), _logratio_integral(alpha, lam, h)
    assert abs(fine - coarse) < 1e-4  # error control: halving the step changes little
    assert abs(1.0 - fine) < 1e-3


@pytest.mark.parametrize(("alpha", "lam"), [((2.0, 0.5), 1.0), ((0.3, 1.0), 2.0)])
def test_concrete_density_integrates_to_one_in_x_on_the_segment(alpha, lam) -> None:
    """Direct Lebesgue quadrature in x_1 (lam >= 1: no singularity at the ends)."""
    d = Concrete(lam, logits=torch.tensor(alpha, dtype=F64).log(), validate_args=False)

    def f(x1: float) -> float:
        x = torch.tensor([x1, 1.0 - x1], dtype=F64)
        return math.exp(float(d.log_prob(x)))

    value, err = integrate.quad(f, 0.0, 1.0, epsabs=1e-9, limit=200)
    assert err < 1e-6
    assert abs(1.0 - value) < 1e-3


def test_concrete_density_integrates_to_one_in_x_on_the_triangle() -> None:
    """Direct Lebesgue quadrature dx_1 dx_2 over the 2-simplex (lam = 1.5, smooth)."""
    d = Concrete(1.5, logits=torch.tensor([0.3, 1.0, 2.0], dtype=F64).log(), validate_args=False)

    def f(x2: float, x1: float) -> float:
        x = torch.tensor([x1, x2, max(1.0 - x1 - x2, 0.0)], dtype=F64)
        return math.exp(float(d.log_prob(x)))

    value, err = integrate.dblquad(f, 0.0, 1.0, 0.0, lambda x1: 1.0 - x1, epsabs=1e-7)
    assert err < 1e-5
    assert abs(1.0 - value) < 1e-3


def test_exp_concrete_kappa_is_not_lebesgue_normalised() -> None:
    """n=2, alpha=(2, .5), lam=.7: the naive integral of kappa over y_1 is about 0.252,
    while the integral against dmu = dy_1 / x_2 is 1 (BOOK_GUIDE math note)."""
    d = ExpConcrete(0.7, logits=torch.tensor([2.0, 0.5], dtype=F64).log(), validate_args=False)

    def kappa(y1: float) -> tuple[float, float]:
        x1 = math.exp(y1)
        y = torch.tensor([y1, math.log1p(-x1)], dtype=F64)
        return math.exp(float(d.log_prob(y))), 1.0 - x1

    naive, _ = integrate.quad(lambda t: kappa(t)[0], -np.inf, 0.0, limit=200)
    proper, _ = integrate.quad(lambda t: kappa(t)[0] / kappa(t)[1], -np.inf, 0.0, limit=200)
    assert abs(naive - 0.252) < 1e-3
    assert abs(proper - 1.0) < 1e-3


# --------------------------------------------------------------------------- 4. laws
@pytest.mark.parametrize("lam", [0.1, 1.0, 5.0])
def test_rounding_concrete_samples_follows_softmax(lam: float) -> None:
    logits = torch.tensor([0.5, -1.0, 1.2, 0.0])
    torch.manual_seed(40)
    x = Concrete(lam, logits=logits).sample((100_000,))
    counts = torch.bincount(x.argmax(-1), minlength=4)
    probs = torch.softmax(logits.double(), -1)
    assert _chisquare(counts, probs) > P_MIN
    wrong = probs.clone()
    wrong[0] += 0.01
    wrong[2] -= 0.01
    assert _chisquare(counts, wrong) < P_MIN


@pytest.mark.parametrize("lam", [0.3, 2.0])
def test_binary_concrete_law_ks_and_rounding(lam: float) -> None:
    d = BinaryConcrete(lam, logits=torch.tensor(0.8, dtype=F64))
    torch.manual_seed(41)
    x = d.sample((20_000,))
    assert stats.kstest(x.numpy(), lambda v: d.cdf(torch.as_tensor(v)).numpy()).pvalue > P_MIN
    ones = int((x > 0.5).sum())
    p = float(torch.sigmoid(torch.tensor(0.8)))
    assert stats.binomtest(ones, x.numel(), p).pvalue > P_MIN
    assert stats.binomtest(ones, x.numel(), p + 0.015).pvalue < P_MIN  # power
    wrong = BinaryConcrete(lam * 1.1, logits=torch.tensor(0.8, dtype=F64))
    assert stats.kstest(x.numpy(), lambda v: wrong.cdf(torch.as_tensor(v)).numpy()).pvalue < P_MIN


def test_exp_concrete_and_fused_sample_the_same_law() -> None:
    """Fused samples equal rsample draws for the same RNG state (so they share the law)."""
    d = ExpConcrete(torch.tensor([0.3, 2.0]), logits=torch.randn(2, 5))
    torch.manual_seed(42)
    y1 = d.rsample((3,))
    torch.manual_seed(42)
    y2, lp = d.rsample_and_log_prob((3,))
    torch.testing.assert_close(y1, y2)
    torch.testing.assert_close(lp, d.log_prob(y1), rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- 5. log-convexity
def _second_differences(d: Concrete, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    t = torch.linspace(0.02, 0.98, 97, dtype=F64).unsqueeze(-1)
    x = (1 - t) * a + t * b
    f = d.log_prob(x)
    return f[:-2] - 2 * f[1:-1] + f[2:]


@pytest.mark.parametrize("n", [2, 3, 5])
def test_log_convex_for_small_temperature(n: int) -> None:
    gen = torch.Generator().manual_seed(50 + n)
    dirichlet = torch.distributions.Dirichlet(torch.ones(n, dtype=F64))
    for lam in (1.0 / (n - 1), 0.5 / (n - 1), 0.1):
        for _ in range(10):
            logits = 2 * torch.randn(n, dtype=F64, generator=gen)
            d = Concrete(lam, logits=logits, validate_args=False)
            torch.manual_seed(int(torch.randint(0, 10**6, (1,), generator=gen)))
            a, b = dirichlet.sample(), dirichlet.sample()
            assert _second_differences(d, a, b).min() >= -1e-9


def test_interior_mode_for_large_temperature() -> None:
    """n=3, lam=2 > 1/(n-1): log p has a strict interior maximum (so it is not convex)."""
    d = Concrete(2.0, logits=torch.zeros(3, dtype=F64), validate_args=False)
    centre = torch.full((3,), 1 / 3, dtype=F64)
    gen = torch.Generator().manual_seed(51)
    for _ in range(20):
        v = torch.randn(3, dtype=F64, generator=gen)
        v = v - v.mean()  # a direction inside the plane of the simplex
        v = 0.05 * v / v.norm()
        assert d.log_prob(centre) > d.log_prob(centre + v)
        assert d.log_prob(centre) > d.log_prob(centre - v)
    # along a segment through the mode the second difference is negative: not log-convex
    a, b = torch.tensor([0.6, 0.2, 0.2], dtype=F64), torch.tensor([0.1, 0.45, 0.45], dtype=F64)
    assert _second_differences(d, a, b).min() < 0


# --------------------------------------------------------------------------- 6. gradients
def _seeded(fn):
    def wrapped(*args):
        torch.manual_seed(60)
        return fn(*args)

    return wrapped


@pytest.mark.parametrize("cls", [ExpConcrete, Concrete])
@pytest.mark.parametrize("n", [3, 20])  # below and above the fused-kernel threshold
def test_gradcheck_categorical_family(cls, n: int) -> None:
    gen = torch.Generator().manual_seed(61)
    logits = torch.randn(2, n, dtype=F64, generator=gen).requires_grad_()
    lam = torch.tensor([0.4, 1.7], dtype=F64, requires_grad=True)

    @_seeded
    def rsample(lg, lm):
        return cls(lm, logits=lg).rsample((2,))

    @_seeded
    def rsample_log_prob(lg, lm):
        d = cls(lm, logits=lg)
        x = d.rsample((2,))
        return x, d.log_prob(x)

    @_seeded
    def fused(lg, lm):
        return cls(lm, logits=lg).rsample_and_log_prob((2,))

    @_seeded
    def log_prob_external(lg, lm):
        x = torch.distributions.Dirichlet(torch.ones(n, dtype=F64)).sample((2, 2))
        v = x.log() if cls is ExpConcrete else x
        return cls(lm, logits=lg).log_prob(v)

    @_seeded
    def float_temperature(lg):
        d = cls(0.8, logits=lg)
        x = d.rsample((2,))
        return x, d.log_prob(x)

    fast = n > 10  # fast mode (random projections) keeps the larger case quick
    for fn in (rsample, rsample_log_prob, fused, log_prob_external):
        assert torch.autograd.gradcheck(fn, (logits, lam), fast_mode=fast)
    assert torch.autograd.gradcheck(float_temperature, (logits,), fast_mode=fast)


@pytest.mark.parametrize("n", [3, 20])
def test_gradcheck_exp_concrete_log_prob_wrt_value(n: int) -> None:
    """log_prob has a hand-derived backward: check it w.r.t. the value, logits, temperature."""
    gen = torch.Generator().manual_seed(64)
    logits = torch.randn(2, n, dtype=F64, generator=gen).requires_grad_()
    lam = torch.tensor([0.4, 1.7], dtype=F64, requires_grad=True)
    torch.manual_seed(65)
    x = torch.distributions.Dirichlet(torch.ones(n, dtype=F64)).sample((3, 2))
    y = x.log().requires_grad_()
    xs = x.clone().requires_grad_()
    fast = n > 10
    assert torch.autograd.gradcheck(
        lambda lg, lm, v: ExpConcrete(lm, logits=lg).log_prob(v), (logits, lam, y), fast_mode=fast
    )
    assert torch.autograd.gradcheck(
        lambda lg, v: ExpConcrete(0.6, logits=lg).log_prob(v), (logits, y), fast_mode=fast
    )
    assert torch.autograd.gradcheck(
        lambda lg, lm, v: Concrete(lm, logits=lg, validate_args=False).log_prob(v),
        (logits, lam, xs),
        fast_mode=fast,
    )


def test_fused_and_unfused_gradients_agree() -> None:
    gen = torch.Generator().manual_seed(62)
    for cls in (ExpConcrete, Concrete):
        for n in (3, 40):
            logits = torch.randn(4, n, dtype=F64, generator=gen).requires_grad_()
            lam = torch.tensor([0.1, 0.5, 1.0, 3.0], dtype=F64, requires_grad=True)
            w = torch.randn(2, 4, n, dtype=F64, generator=gen)
            v = torch.randn(2, 4, dtype=F64, generator=gen)
            grads = []
            for fused in (False, True):
                torch.manual_seed(63)
                d = cls(lam, logits=logits)
                if fused:
                    x, lp = d.rsample_and_log_prob((2,))
                else:
                    x = d.rsample((2,))
                    lp = d.log_prob(x)
                loss = (x * w).sum() + (lp * v).sum()
                grads.append(torch.autograd.grad(loss, (logits, lam)))
            for g_unfused, g_fused in zip(*grads, strict=True):
                torch.testing.assert_close(g_fused, g_unfused, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("cls", [BinaryConcrete, LogitBinaryConcrete])
def test_gradcheck_binary_family(cls) -> None:
    logits = torch.tensor([-1.0, 0.2, 2.0], dtype=F64, requires_grad=True)
    lam = torch.tensor([0.3, 1.0, 2.5], dtype=F64, requires_grad=True)

    @_seeded
    def fn(lg, lm):
        d = cls(lm, logits=lg)
        x = d.rsample((4,))
        return x, d.log_prob(x)

    def external(lg, lm):
        v = torch.tensor([[0.2, 0.5, 0.9], [0.01, 0.7, 0.3]], dtype=F64)
        return cls(lm, logits=lg).log_prob(v if cls is BinaryConcrete else v.logit())

    assert torch.autograd.gradcheck(fn, (logits, lam))
    assert torch.autograd.gradcheck(external, (logits, lam))


# --------------------------------------------------------------------------- API conventions
def test_batch_shape_includes_temperature_shape() -> None:
    """pytorch#37162: torch ignores the temperature's shape in batch_shape; we do not."""
    lam = torch.tensor([0.1, 1.0, 10.0])
    assert ExpRelaxedCategorical(lam, logits=torch.zeros(4)).batch_shape == ()  # torch's bug
    for cls in (ExpConcrete, Concrete):
        d = cls(lam, logits=torch.zeros(4))
        assert d.batch_shape == (3,) and d.event_shape == (4,)
        assert d.temperature.shape == (3,)
        assert d.rsample((2,)).shape == (2, 3, 4)
        assert d.log_prob(d.rsample((2,))).shape == (2, 3)
    b = BinaryConcrete(lam.unsqueeze(-1), logits=torch.zeros(5))
    assert b.batch_shape == (3, 5) and b.rsample().shape == (3, 5)


def test_torch_style_temperature_with_event_dimension_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"temperature of shape \(4, 1\).*squeeze"):
        Concrete(torch.ones(4, 1), logits=torch.zeros(4, 3))


def test_parameters_and_support_conventions() -> None:
    d = ExpConcrete(0.5, logits=torch.tensor([[1.0, 2.0, 3.0]]))
    assert d.has_rsample
    assert set(d.arg_constraints) == {"probs", "logits", "temperature"}
    assert d.arg_constraints["temperature"].check(torch.tensor([1.0, 0.0, math.inf])).tolist() == [
        True,
        False,
        False,
    ]
    torch.testing.assert_close(d.probs, torch.softmax(torch.tensor([[1.0, 2.0, 3.0]]), -1))
    torch.testing.assert_close(d.logits.logsumexp(-1), torch.zeros(1))  # normalised
    assert isinstance(d.temperature, torch.Tensor) and d.temperature.shape == (1,)
    y = d.sample((3,))
    assert not y.requires_grad and d.support.check(y).all()
    assert Concrete(0.5, logits=torch.zeros(3)).support.check(torch.tensor([0.0, 0.0, 1.0]))
    assert BinaryConcrete(0.5, logits=torch.zeros(2)).support.check(torch.tensor([0.0, 1.0])).all()
    e = d.expand((4, 1))
    assert e.batch_shape == (4, 1) and e.temperature.shape == (4, 1)
    assert e.rsample().shape == (4, 1, 3)
    assert "temperature" in repr(d)


def test_expand_gives_the_same_log_prob() -> None:
    logits = torch.randn(2, 3, dtype=F64)
    lam = torch.tensor([0.5, 2.0], dtype=F64)
    for cls in (ExpConcrete, Concrete):
        d = cls(lam, logits=logits)
        e = d.expand((5, 2))
        v = d.sample((5,))
        torch.testing.assert_close(e.log_prob(v.clone()), d.log_prob(v.clone()))
    b = BinaryConcrete(lam, probs=torch.tensor([0.2, 0.7], dtype=F64))
    x = b.sample((5,))
    torch.testing.assert_close(b.expand((5, 2)).log_prob(x.clone()), b.log_prob(x.clone()))


@pytest.mark.parametrize("cls", [ExpConcrete, Concrete, BinaryConcrete])
def test_mean_and_variance_are_not_faked(cls) -> None:
    d = cls(0.5, logits=torch.zeros(3))
    with pytest.raises(NotImplementedError, match="Monte Carlo"):
        _ = d.mean
    with pytest.raises(NotImplementedError, match="Monte Carlo"):
        _ = d.variance


def test_logit_binary_concrete_closed_forms() -> None:
    d = LogitBinaryConcrete(torch.tensor(0.5, dtype=F64), logits=torch.tensor(1.5, dtype=F64))
    torch.manual_seed(70)
    y = d.sample((100_000,))
    assert abs(float(y.mean()) - 3.0) < 5 * math.sqrt(float(d.variance) / y.numel())
    torch.testing.assert_close(d.mean, torch.tensor(3.0, dtype=F64))
    torch.testing.assert_close(d.variance, torch.tensor(math.pi**2 / 3 / 0.25, dtype=F64))
    # entropy 2 - log(lam) against a Monte Carlo estimate -E[log p]
    mc = -float(d.log_prob(y).mean())
    assert abs(mc - float(d.entropy())) < 0.02
    q = torch.tensor([0.1, 0.5, 0.9], dtype=F64)
    torch.testing.assert_close(d.cdf(d.icdf(q)), q)


def test_concrete_log_prob_of_external_zeros_is_clamped() -> None:
    """Documented behaviour: entries below tiny are replaced by tiny before the log."""
    d = Concrete(0.5, logits=torch.zeros(3))
    x = torch.tensor([0.0, 0.25, 0.75])
    tiny = torch.finfo(torch.float32).tiny
    nudged = torch.tensor([tiny, 0.25, 0.75])
    assert torch.isfinite(d.log_prob(x))
    torch.testing.assert_close(d.log_prob(x), d.log_prob(nudged))


def test_concrete_cache_is_used_only_for_the_untouched_sample() -> None:
    d = Concrete(0.01, logits=torch.tensor([0.0, 30.0, -30.0]))
    torch.manual_seed(71)
    x = d.rsample((200,))
    assert (x == 0).any()  # coordinates underflowed at this temperature
    lp = d.log_prob(x)
    assert torch.isfinite(lp).all()
    e = ExpConcrete(0.01, logits=torch.tensor([0.0, 30.0, -30.0]))
    y = d._cache[2]
    torch.testing.assert_close(lp, e.log_prob(y) - y.sum(-1))
    x.mul_(1.0)  # an in-place change invalidates the cache: clamped external path
    assert not torch.equal(d.log_prob(x), lp)


def test_float_and_tensor_temperatures_agree() -> None:
    logits = torch.randn(3, 4, dtype=F64)
    for cls in (ExpConcrete, Concrete):
        a, b = cls(0.3, logits=logits), cls(torch.tensor(0.3, dtype=F64), logits=logits)
        torch.manual_seed(72)
        xa, la = a.rsample_and_log_prob((2,))
        torch.manual_seed(72)
        xb, lb = b.rsample_and_log_prob((2,))
        torch.testing.assert_close(xa, xb)
        torch.testing.assert_close(la, lb)
        v = a.sample((2,))
        torch.testing.assert_close(a.log_prob(v.clone()), b.log_prob(v.clone()))


def test_exp_concrete_log_prob_function_matches_formula() -> None:
    """The closed form of the issue, term by term, in float64."""
    n, lam = 4, 0.8
    logits = torch.tensor([0.1, -0.4, 1.0, 0.3], dtype=F64)
    y = ExpConcrete(lam, logits=logits).sample()
    s = logits - lam * y
    want = math.lgamma(n) + (n - 1) * math.log(lam) + s.sum() - n * s.logsumexp(-1)
    torch.testing.assert_close(exp_concrete_log_prob(logits, lam, y), want)
    torch.testing.assert_close(exp_concrete_log_prob(logits, torch.tensor(lam, dtype=F64), y), want)


# --------------------------------------------------------------------------- 8. bad input
BAD = [
    (lambda: ExpConcrete(0.0, logits=torch.zeros(3)), r"temperature must be positive.*0\.0"),
    (lambda: Concrete(-1.0, logits=torch.zeros(3)), r"temperature must be positive.*-1\.0"),
    (lambda: ExpConcrete(float("nan"), logits=torch.zeros(3)), r"temperature.*nan"),
    (lambda: Concrete(float("inf"), logits=torch.zeros(3)), r"temperature.*inf"),
    (
        lambda: Concrete(torch.tensor([0.5, -0.1]), logits=torch.zeros(2, 3)),
        r"temperature.*-0\.1",
    ),
    (lambda: BinaryConcrete(0.0, logits=torch.zeros(3)), r"temperature.*0\.0"),
    (lambda: LogitBinaryConcrete(math.inf, logits=torch.zeros(3)), r"temperature.*inf"),
    (lambda: ExpConcrete(0.5, logits=torch.tensor([0.0, math.nan])), r"logits must be finite.*nan"),
    (lambda: Concrete(0.5, logits=torch.tensor([0.0, -math.inf])), r"logits must be finite.*inf"),
    (lambda: BinaryConcrete(0.5, logits=torch.tensor([math.inf])), r"logits must be finite.*inf"),
    (lambda: Concrete(0.5, probs=torch.tensor([0.5, 0.7, -0.2])), r"probs.*-0\.2"),
    (
        lambda: Concrete(0.5, probs=torch.tensor([0.5, 0.4])),
        r"probs must sum to 1.*sums: tensor\(\[0\.9000\]\)",
    ),
    (lambda: BinaryConcrete(0.5, probs=torch.tensor([1.5])), r"probs must lie in \[0, 1\].*1\.5"),
    (lambda: Concrete(0.5), r"exactly one of probs or logits.*probs=None, logits=None"),
    (
        lambda: Concrete(0.5, probs=torch.ones(2) / 2, logits=torch.zeros(2)),
        r"exactly one of probs or logits.*probs=Tensor\(shape=\(2,\)",
    ),
    (lambda: BinaryConcrete(0.5), r"exactly one of probs or logits"),
    (lambda: Concrete(0.5, logits=torch.zeros(1)), r"n >= 2 classes.*\(1,\)"),
    (lambda: Concrete(0.5, logits=torch.tensor(1.0)), r"logits of shape \(\)"),
    (lambda: Concrete("hot", logits=torch.zeros(2)), r"temperature.*'hot'"),
    (lambda: Concrete(True, logits=torch.zeros(2)), r"temperature.*True"),
    (
        lambda: Concrete(torch.ones(3), logits=torch.zeros(2, 4)),
        r"temperature of shape \(3,\) does not broadcast",
    ),
]


@pytest.mark.parametrize(("make", "match"), BAD)
def test_bad_parameters_raise_value_error(make, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_values_raise_with_validate_args() -> None:
    c = Concrete(0.5, logits=torch.zeros(3), validate_args=True)
    with pytest.raises(ValueError, match=r"value of shape \(4,\).*event shape \(3,\)"):
        c.log_prob(torch.ones(4) / 4)
    with pytest.raises(ValueError, match=r"value must lie in the support.*value=tensor"):
        c.log_prob(torch.tensor([0.5, 0.6, -0.1]))
    with pytest.raises(ValueError, match=r"value must lie in the support"):
        c.log_prob(torch.tensor([0.5, 0.2, 0.2]))  # does not sum to one
    with pytest.raises(ValueError, match=r"does not broadcast"):
        Concrete(0.5, logits=torch.zeros(2, 3)).log_prob(torch.ones(5, 3) / 3)
    e = ExpConcrete(0.5, logits=torch.zeros(3), validate_args=True)
    with pytest.raises(ValueError, match=r"value must lie in the support.*LogSimplex"):
        e.log_prob(torch.tensor([0.1, -1.0, -2.0]))  # a positive coordinate
    with pytest.raises(ValueError, match=r"value must be a Tensor.*value=\[0.5, 0.5\]"):
        Concrete(0.5, logits=torch.zeros(2)).log_prob([0.5, 0.5])
    b = BinaryConcrete(0.5, logits=torch.zeros(2), validate_args=True)
    with pytest.raises(ValueError, match=r"value must lie in the support"):
        b.log_prob(torch.tensor([0.5, 1.5]))
    # a number temperature is checked even with validate_args=False (it costs nothing)
    with pytest.raises(ValueError, match="temperature"):
        Concrete(0.0, logits=torch.zeros(3), validate_args=False)
    # otherwise validate_args=False turns the checks off, like torch
    assert (
        Concrete(0.5, logits=torch.zeros(3), validate_args=False)
        .log_prob(torch.tensor([0.5, 0.2, 0.2]))
        .isfinite()
    )


def test_public_names_and_companion_distributions() -> None:
    import concrete

    for name in (
        "sample_gumbel",
        "gumbel_max",
        "exponential_race",
        "gumbel_softmax",
        "validate_temperature",
        "ExpConcrete",
        "Concrete",
        "BinaryConcrete",
        "LogitBinaryConcrete",
        "relaxed_kl",
        "categorical_kl",
    ):
        assert name in concrete.__all__ and hasattr(concrete, name)
    logits = torch.randn(2, 3, dtype=F64)
    c = Concrete(0.4, logits=logits)
    x = c.sample((4,))
    e = c.exp_concrete
    assert isinstance(e, ExpConcrete) and e.batch_shape == c.batch_shape
    torch.testing.assert_close(c.log_prob(x), e.log_prob(x.log()) - x.log().sum(-1))
    b = BinaryConcrete(torch.tensor([0.3, 2.0], dtype=F64), logits=torch.tensor([1.0, -1.0]))
    lb = b.logit_binary_concrete
    v = b.sample((4,)).clamp(1e-6, 1 - 1e-6)
    y = v.logit()
    # change of variables: log p_X(x) = log p_Y(logit x) - log x - log(1 - x)
    torch.testing.assert_close(b.log_prob(v), lb.log_prob(y) - v.log() - (-v).log1p())


@pytest.mark.parametrize("n", [3, 20])
def test_second_derivatives_gradgradcheck(n: int) -> None:
    """The hand-written backwards are themselves differentiable (Hessians, double backward)."""
    from torch.autograd import gradgradcheck

    gen = torch.Generator().manual_seed(80)
    logits = torch.randn(2, n, dtype=F64, generator=gen).requires_grad_()
    lam = torch.tensor([0.5, 1.5], dtype=F64, requires_grad=True)
    torch.manual_seed(81)
    x = torch.distributions.Dirichlet(torch.ones(n, dtype=F64)).sample((2,))
    y, xs = x.log().requires_grad_(), x.clone().requires_grad_()
    fast = True  # random projections: the full Jacobian of Jacobians is slow
    assert gradgradcheck(
        lambda lg, lm, v: ExpConcrete(lm, logits=lg).log_prob(v), (logits, lam, y), fast_mode=fast
    )
    assert gradgradcheck(
        lambda lg, v: Concrete(0.6, logits=lg, validate_args=False).log_prob(v),
        (logits, xs),
        fast_mode=fast,
    )
    for cls in (ExpConcrete, Concrete):

        @_seeded
        def two_calls(lg, lm, cls=cls):
            d = cls(lm, logits=lg)
            v = d.rsample((2,))
            return v, d.log_prob(v)

        @_seeded
        def fused(lg, lm, cls=cls):
            return cls(lm, logits=lg).rsample_and_log_prob((2,))

        assert gradgradcheck(two_calls, (logits, lam), fast_mode=fast)
        assert gradgradcheck(fused, (logits, lam), fast_mode=fast)


def test_hessian_of_log_density_matches_plain_autograd() -> None:
    """Chapter use: the Hessian at the interior mode, against the formula in plain torch ops."""
    lam, logits = 2.0, torch.tensor([0.2, -0.1, 0.0], dtype=F64)
    d = Concrete(lam, logits=logits, validate_args=False)

    def reference(x: torch.Tensor) -> torch.Tensor:
        s = logits - lam * x.log()
        return torch.log_softmax(s, -1).sum(-1) + 2 * math.log(lam) + math.lgamma(3) - x.log().sum()

    x0 = torch.tensor([0.3, 0.3, 0.4], dtype=F64)
    h = torch.autograd.functional.hessian(d.log_prob, x0)
    torch.testing.assert_close(h, torch.autograd.functional.hessian(reference, x0))
    assert h.abs().max() > 1.0  # not the zero matrix


@pytest.mark.parametrize("cls", [ExpConcrete, Concrete])
def test_backward_makes_no_zero_gradients_for_unused_outputs(cls) -> None:
    """The sampler returns y (and x, and the log-density) from one autograd node; outputs the
    caller never uses must not get a zero-filled gradient (a fill and a full pass each)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    zero_makers = {
        torch.ops.aten.zeros.default,
        torch.ops.aten.zeros_like.default,
        torch.ops.aten.new_zeros.default,
        torch.ops.aten.fill_.Scalar,
    }

    class Record(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func in zero_makers:
                self.calls.append(str(func))
            return func(*args, **(kwargs or {}))

    logits = torch.randn(64, 10, requires_grad=True)
    w = torch.randn(64, 10)
    for use_log_prob in (False, True):
        d = cls(0.5, logits=logits)
        x = d.rsample()  # its log-density comes out too (gradients are on), unused here
        loss = (x * w).sum() + (d.log_prob(x).sum() if use_log_prob else 0.0)
        with Record() as rec:
            loss.backward()
        assert rec.calls == [], rec.calls
        assert torch.isfinite(logits.grad).all()
        logits.grad = None
