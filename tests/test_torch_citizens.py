"""The concrete distributions and gumbel_softmax with the rest of PyTorch (issue 12).

One section per acceptance criterion: transforms registered for every support constraint;
the sample cache invisible to autograd; batched and functional autodiff (``vmap=True``
Jacobians, gradcheck's batched-grad check, ``torch.func``); outputs safe to modify in place and
``torch.jit.trace`` giving eager values; ``torch.compile`` giving eager values and gradients.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from scipy import integrate
from torch.distributions import Distribution, biject_to, constraints, transform_to

from concrete import BinaryConcrete, Concrete, ExpConcrete, LogitBinaryConcrete, gumbel_softmax
from concrete.distributions import finite_real, log_simplex, positive_finite, simplex

F64 = torch.float64
CATEGORICAL = (ExpConcrete, Concrete)
BINARY = (BinaryConcrete, LogitBinaryConcrete)
ALL = CATEGORICAL + BINARY


def _logits(cls, gen: torch.Generator) -> torch.Tensor:
    shape = (2, 4) if cls in CATEGORICAL else (3,)
    return torch.randn(*shape, dtype=F64, generator=gen)


# --------------------------------------------------------------------------- 1. transforms
@pytest.mark.parametrize("cls", ALL)
def test_support_and_parameters_have_registered_transforms(cls) -> None:
    gen = torch.Generator().manual_seed(0)
    d = cls(0.7, logits=_logits(cls, gen))
    for registry in (biject_to, transform_to):
        t = registry(d.support)
        in_shape = t.inverse_shape(d.batch_shape + d.event_shape)
        u = 3 * torch.randn(in_shape, dtype=F64, generator=gen)
        v = t(u)
        assert v.shape == d.batch_shape + d.event_shape
        assert d.support.check(v).all()
        assert torch.isfinite(d.log_prob(v)).all()
        torch.testing.assert_close(t(t.inv(v)), v)  # inv is a right inverse in both cases
        if registry is biject_to:
            torch.testing.assert_close(t.inv(v), u)  # and a left inverse for the bijection
            ladj = t.log_abs_det_jacobian(u, v)
            assert ladj.shape == d.batch_shape and torch.isfinite(ladj).all()
    for name, c in d.arg_constraints.items():
        t = transform_to(c)
        value = getattr(d, name)
        assert c.check(t(torch.randn_like(value))).all(), name


def test_torch_constraints_are_reused_where_the_support_is_torchs() -> None:
    assert BinaryConcrete.support is constraints.unit_interval
    assert isinstance(biject_to(BinaryConcrete.support), torch.distributions.SigmoidTransform)
    assert isinstance(biject_to(simplex), torch.distributions.StickBreakingTransform)
    assert isinstance(transform_to(simplex), torch.distributions.SoftmaxTransform)
    assert isinstance(biject_to(positive_finite), torch.distributions.ExpTransform)
    assert biject_to(finite_real) is torch.distributions.transforms.identity_transform


def test_log_stick_breaking_is_the_log_of_torchs_stick_breaking() -> None:
    """Same map and the same log-Jacobian as StickBreaking followed by log where that is
    accurate, and exact where torch's clipped sigmoid loses the value."""
    gen = torch.Generator().manual_seed(1)
    u = 2 * torch.randn(50, 4, dtype=F64, generator=gen)
    t = biject_to(log_simplex)
    ref = torch.distributions.ComposeTransform(
        [torch.distributions.StickBreakingTransform(), torch.distributions.ExpTransform().inv]
    )
    y = t(u)
    torch.testing.assert_close(y, ref(u))
    torch.testing.assert_close(t.log_abs_det_jacobian(u, y), ref.log_abs_det_jacobian(u, y))
    far = torch.tensor([[800.0, -5.0], [-800.0, 3.0]], dtype=F64)
    exact = torch.nn.functional.logsigmoid(torch.tensor(-800.0 - math.log(2), dtype=F64))
    torch.testing.assert_close(t(far)[1, 0], exact)  # log y_1 = log sigmoid(u_1 - log 2)
    assert ref(far)[1, 0] > exact + 50  # torch clips the sigmoid at the smallest float
    assert log_simplex.check(t(far)).all()
    torch.testing.assert_close(t.inv(t(far)), far)


@pytest.mark.parametrize("cls", [ExpConcrete, Concrete, BinaryConcrete, LogitBinaryConcrete])
def test_density_pushed_through_biject_to_integrates_to_one(cls) -> None:
    """log_prob(T(u)) + log|det J_T(u)| is a density on the unconstrained line (n = 2): the
    ladj of the log-simplex bijection matches the measure ExpConcrete's density is taken in."""
    logits = torch.tensor([0.7, -0.4], dtype=F64) if cls in CATEGORICAL else torch.tensor(0.3)
    d = cls(0.6, logits=logits.to(F64), validate_args=False)
    t = biject_to(d.support)

    def density(u: float) -> float:
        x = torch.tensor([u] if cls in CATEGORICAL else u, dtype=F64)
        v = t(x)
        return math.exp(float(d.log_prob(v) + t.log_abs_det_jacobian(x, v)))

    total, err = integrate.quad(density, -60, 60, limit=200)
    assert abs(total - 1.0) < 1e-6 and err < 1e-6


# --------------------------------------------------------------------------- 2. sample cache
@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("method", ["log_prob", "cdf"])
def test_gradient_wrt_own_sample_equals_that_of_a_copy(cls, method: str) -> None:
    if method == "cdf" and cls in CATEGORICAL:
        pytest.skip("no cdf for the categorical family (torch defines none either)")
    torch.manual_seed(2)
    d = cls(0.8, logits=_logits(cls, torch.Generator().manual_seed(3)))
    x = d.sample()
    x.requires_grad_()
    got_value = getattr(d, method)(x)
    (got,) = torch.autograd.grad(got_value.sum(), x)
    xc = x.detach().clone().requires_grad_()
    want_value = getattr(d, method)(xc)
    (want,) = torch.autograd.grad(want_value.sum(), xc)
    torch.testing.assert_close(got_value, want_value)
    torch.testing.assert_close(got, want)
    assert got.abs().sum() > 0


def test_cache_still_serves_the_untouched_sample() -> None:
    """Without requires_grad_ the stored log-sample is still used (finite at low temperature)."""
    d = Concrete(0.01, logits=torch.tensor([0.0, 30.0, -30.0]))
    torch.manual_seed(4)
    x = d.sample((200,))
    assert (x == 0).any()
    assert torch.isfinite(d.log_prob(x)).all()
    x.requires_grad_()  # now autograd must see x: the clamped external path, as for a copy
    torch.testing.assert_close(d.log_prob(x), d.log_prob(x.detach().clone()))


def test_log_prob_of_the_own_rsample_is_the_closed_form_with_the_same_gradients() -> None:
    """``log_prob(rsample())`` returns the log-density computed from the noise in the same
    pass; value and gradients (logits and a tensor temperature) equal the recomputation from a
    stored copy of the log-sample, and the fallbacks (a modified result, a sample drawn without
    gradients) recompute."""
    gen = torch.Generator().manual_seed(6)
    logits = torch.randn(64, 5, generator=gen, dtype=torch.float64).requires_grad_()
    lam = torch.full((64,), 0.6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(64, 5, generator=gen, dtype=torch.float64)
    d = Concrete(lam, logits=logits)
    torch.manual_seed(7)
    x = d.rsample()
    fast = d.log_prob(x)
    assert fast is d.log_prob(x)  # stored, no recomputation
    slow = d.log_prob(x.log().exp())  # another tensor: computed from the value
    torch.testing.assert_close(fast, slow)
    g_fast = torch.autograd.grad(((x * w).sum() + fast.sum()), (logits, lam), retain_graph=True)
    g_slow = torch.autograd.grad(((x * w).sum() + slow.sum()), (logits, lam))
    for a, b in zip(g_fast, g_slow, strict=True):
        torch.testing.assert_close(a, b)
    fast.add_(1.0)  # a caller modified the returned tensor: it is not served again
    torch.testing.assert_close(d.log_prob(x), slow)
    with torch.no_grad():
        assert not d.log_prob(d.rsample()).requires_grad
    xs = d.sample()  # no graph: log_prob must still differentiate in the logits
    (g,) = torch.autograd.grad(d.log_prob(xs).sum(), logits)
    assert g.abs().sum() > 0


# --------------------------------------------------------------------------- 3. batched autodiff
def _seeded(cls, sample_shape=()):
    def fn(logits):
        torch.manual_seed(5)
        d = cls(0.7, logits=logits, validate_args=False)
        x = d.rsample(sample_shape)
        return x, d.log_prob(x)

    return fn


@pytest.mark.parametrize("cls", ALL)
def test_vectorized_jacobian_and_batched_gradcheck(cls) -> None:
    logits = _logits(cls, torch.Generator().manual_seed(6)).requires_grad_()
    fn = _seeded(cls, (2,))
    jv = torch.autograd.functional.jacobian(fn, logits, vectorize=True)
    jl = torch.autograd.functional.jacobian(fn, logits)
    for a, b in zip(jv, jl, strict=True):
        torch.testing.assert_close(a, b)
    assert torch.autograd.gradcheck(fn, (logits,), check_batched_grad=True)
    # the log-density w.r.t. an external value, and the fused path
    v = cls(0.7, logits=logits.detach()).sample((2,)).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda lg, val: cls(0.7, logits=lg, validate_args=False).log_prob(val),
        (logits, v),
        check_batched_grad=True,
    )


def test_gumbel_softmax_batched_gradcheck() -> None:
    logits = torch.randn(2, 5, dtype=F64, generator=torch.Generator().manual_seed(7))

    def fn(lg, lam):
        torch.manual_seed(8)
        return gumbel_softmax(lg, lam)

    lam = torch.tensor([0.5, 1.5], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (logits.requires_grad_(), lam), check_batched_grad=True)


@pytest.mark.parametrize("cls", ALL)
def test_torch_func_grad_jacrev_vmap_agree_with_autograd(cls) -> None:
    logits = _logits(cls, torch.Generator().manual_seed(9))
    value = cls(0.7, logits=logits).sample((3,))

    def score(lg):
        return cls(0.7, logits=lg, validate_args=False).log_prob(value).sum()

    leaf = logits.clone().requires_grad_()
    (want,) = torch.autograd.grad(score(leaf), leaf)
    torch.testing.assert_close(torch.func.grad(score)(logits), want)

    def sample(lg):  # a fixed RNG state: the reparameterised sample as a function of logits
        torch.manual_seed(10)
        return cls(0.7, logits=lg, validate_args=False).rsample()

    torch.testing.assert_close(
        torch.func.jacrev(sample)(logits), torch.autograd.functional.jacobian(sample, logits)
    )

    def sample_score(lg):
        torch.manual_seed(10)
        d = cls(0.7, logits=lg, validate_args=False)
        return d.log_prob(d.rsample()).sum()

    leaf = logits.clone().requires_grad_()
    (want,) = torch.autograd.grad(sample_score(leaf), leaf)
    torch.testing.assert_close(torch.func.grad(sample_score)(logits), want)

    # vmap over a batch of logits: log_prob of fixed values, and rsample with the same noise
    batch = torch.randn((5, *logits.shape), dtype=F64, generator=torch.Generator().manual_seed(11))
    lp = torch.func.vmap(lambda lg: cls(0.7, logits=lg, validate_args=False).log_prob(value))
    rows = torch.stack([cls(0.7, logits=lg).log_prob(value) for lg in batch])
    torch.testing.assert_close(lp(batch), rows)
    torch.manual_seed(12)
    got = torch.func.vmap(sample, randomness="same")(batch)
    torch.testing.assert_close(got, torch.stack([sample(lg) for lg in batch]))
    # and per-example gradients: vmap of grad
    per_example = torch.func.vmap(torch.func.grad(score))(batch)
    assert per_example.shape == batch.shape
    torch.testing.assert_close(per_example[1], torch.func.grad(score)(batch[1]))


def test_gumbel_softmax_under_vmap_and_jacrev() -> None:
    logits = torch.randn(3, 4, dtype=F64, generator=torch.Generator().manual_seed(13))

    def f(lg):
        torch.manual_seed(14)
        return gumbel_softmax(lg, 0.5)

    rows = torch.stack([f(lg) for lg in logits])
    torch.manual_seed(14)
    torch.testing.assert_close(torch.func.vmap(f, randomness="same")(logits), rows)
    torch.testing.assert_close(
        torch.func.jacrev(f)(logits), torch.autograd.functional.jacobian(f, logits)
    )


# --------------------------------------------------------------------------- 4. in place, jit
def _in_place_then_backward(make, logits: torch.Tensor) -> None:
    """``make(logits)`` returns a new sample: clamp it in place and backpropagate. Either the
    gradient equals that of the out-of-place clamp, or autograd refuses with its usual
    version-counter error (a tensor its backward needs was modified, exactly as for
    ``torch.softmax(x).clamp_()``); never a silently wrong gradient."""
    torch.manual_seed(19)
    ref = make(logits).clamp(0.05, 0.6)
    (want,) = torch.autograd.grad(ref.sum(), logits)
    torch.manual_seed(19)
    x = make(logits)
    x.clamp_(0.05, 0.6)  # the in-place call itself always works
    torch.testing.assert_close(x, ref)
    try:
        (got,) = torch.autograd.grad(x.sum(), logits)
    except RuntimeError as exc:
        assert "modified by an inplace operation" in str(exc)
    else:
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("cls", ALL)
def test_returned_samples_can_be_modified_in_place(cls) -> None:
    logits = _logits(cls, torch.Generator().manual_seed(15)).requires_grad_()
    _in_place_then_backward(lambda lg: cls(0.7, logits=lg).rsample((2,)), logits)
    _in_place_then_backward(lambda lg: cls(0.7, logits=lg).rsample_and_log_prob()[0], logits)
    d = cls(0.7, logits=logits)
    x, lp = d.rsample_and_log_prob()
    lp.add_(1.0)  # the log-density is not needed by any backward
    lp.sum().backward()
    y = d.sample()  # no graph: anything goes, and the cache notices the change
    before = d.log_prob(y)
    # the same tensor, moved in place to another point of the support
    if cls is ExpConcrete:
        y.mul_(0.9).sub_(y.logsumexp(-1, keepdim=True))
    elif cls is Concrete:
        y.pow_(0.9).div_(y.sum(-1, keepdim=True))
    else:
        y.mul_(0.9)
    torch.testing.assert_close(d.log_prob(y), d.log_prob(y.clone()))  # not the stale cache
    assert not torch.equal(d.log_prob(y), before)


@pytest.mark.parametrize("hard", [False, True])
def test_gumbel_softmax_outputs_can_be_modified_in_place(hard: bool) -> None:
    logits = torch.randn(3, 4, dtype=F64, generator=torch.Generator().manual_seed(20))
    _in_place_then_backward(lambda lg: gumbel_softmax(lg, 0.5, hard=hard), logits.requires_grad_())


@pytest.mark.parametrize("cls", ALL)
def test_jit_trace_of_sample_gives_eager_values(cls) -> None:
    logits = _logits(cls, torch.Generator().manual_seed(16))

    def draw(lg):
        return cls(0.7, logits=lg, validate_args=False).sample((3,))

    def draw_score(lg):
        return cls(0.7, logits=lg, validate_args=False).rsample_and_log_prob((3,))[1]

    for fn in (draw, draw_score):
        with warnings.catch_warnings():  # tracing warns about Python values it records
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            traced = torch.jit.trace(fn, (logits,), check_trace=False)
        with torch.random.fork_rng():
            eager = fn(logits)
        torch.testing.assert_close(traced(logits), eager)
        assert any(node.isNondeterministic() for node in traced.graph.nodes())


# --------------------------------------------------------------------------- torch.compile
@pytest.mark.parametrize("cls", [*ALL, gumbel_softmax])
def test_compile_gives_eager_values_and_gradients(cls) -> None:
    """torch.compile(fullgraph=False) with the aot_eager backend: Dynamo's graph capture and
    AOTAutograd's tracing of our autograd Functions, without inductor's code generation (slow on
    2 cores, and inductor draws random numbers with its own generator unless
    ``torch._inductor.config.fallback_random`` is set).

    Dynamo turns torch's default argument validation off for the whole process when it first
    initialises (``Distribution.set_default_validate_args(False)``); the test restores it so
    that later tests see the default they expect."""
    default = Distribution._validate_args
    try:
        _compile_check(cls)
    finally:
        Distribution.set_default_validate_args(default)


def _compile_check(cls) -> None:
    torch._dynamo.reset()
    if cls is gumbel_softmax:
        logits = torch.randn(3, 4, dtype=F64, generator=torch.Generator().manual_seed(17))
        weight = torch.arange(4.0, dtype=F64)

        def f(lg):
            return (gumbel_softmax(lg, 0.5) * weight).sum()

    else:
        logits = _logits(cls, torch.Generator().manual_seed(17))

        def f(lg):
            d = cls(0.6, logits=lg)
            x = d.rsample((2,))
            return d.log_prob(x).sum() + x.sum()

    compiled = torch.compile(f, fullgraph=False, backend="aot_eager")
    a, b = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    torch.manual_seed(18)
    want = f(a)
    (gwant,) = torch.autograd.grad(want, a)
    torch.manual_seed(18)
    got = compiled(b)
    (ggot,) = torch.autograd.grad(got, b)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(ggot, gwant)
    torch._dynamo.reset()
