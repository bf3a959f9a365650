"""PyTorch's generic distribution checks, run on our four classes and on torch's four.

A port (rewritten, not copied) of the checks that ``test/distributions/test_distributions.py``
in PyTorch runs on every entry of its example list: support attributes, ``expand`` (also of a
subclass), support and parameter constraints, shapes of samples/log_prob/entropy, validation
of good and bad parameters, ``cdf``/``icdf``, the derivative of the cdf, and the ``torch.jit``
tests (trace ``sample``/``rsample``/``log_prob``/``cdf``/... and rerun the trace on parameters
perturbed with ``transform_to`` of their constraints). torch's relaxed classes are the control:
every check that applies to them passes for them too.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.autograd import grad
from torch.distributions import (
    RelaxedBernoulli,
    RelaxedOneHotCategorical,
    constraints,
    transform_to,
)
from torch.distributions.constraints import Constraint, is_dependent
from torch.distributions.relaxed_bernoulli import LogitRelaxedBernoulli
from torch.distributions.relaxed_categorical import ExpRelaxedCategorical

from concrete import BinaryConcrete, Concrete, ExpConcrete, LogitBinaryConcrete


def _categorical_params() -> list[dict]:
    return [
        {
            "temperature": torch.tensor([0.5]),
            "probs": torch.tensor([[0.1, 0.2, 0.7], [0.5, 0.3, 0.2]]),
        },
        {"temperature": torch.tensor([2.0]), "probs": torch.tensor([[1.0, 0.0], [0.0, 1.0]])},
        {"temperature": torch.tensor([7.2]), "logits": torch.tensor([[-2.0, 2.0], [1.0, 5.0]])},
    ]


def _binary_params() -> list[dict]:
    return [
        {"temperature": torch.tensor([0.5]), "probs": torch.tensor([0.7, 0.2, 0.4])},
        {"temperature": torch.tensor([2.0]), "probs": torch.tensor([0.3])},
        {"temperature": torch.tensor([7.2]), "logits": torch.tensor([-2.0, 2.0, 1.0, 5.0])},
    ]


OURS = [ExpConcrete, Concrete, BinaryConcrete, LogitBinaryConcrete]
TORCHS = [ExpRelaxedCategorical, RelaxedOneHotCategorical, RelaxedBernoulli, LogitRelaxedBernoulli]
CLASSES = OURS + TORCHS
CATEGORICAL = {ExpConcrete, Concrete, ExpRelaxedCategorical, RelaxedOneHotCategorical}


def _examples(cls, requires_grad: bool = True) -> list[dict]:
    params = _categorical_params() if cls in CATEGORICAL else _binary_params()
    if requires_grad:
        for p in params:
            for v in p.values():
                v.requires_grad_()
    return params


def _ids(cls) -> str:
    return cls.__name__


EXAMPLES = [(cls, i) for cls in CLASSES for i in range(3)]


def _make(cls, i, **kwargs):
    return cls(**_examples(cls)[i], **kwargs)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# --------------------------------------------------------------------------- TestDistributions
@pytest.mark.parametrize("cls", CLASSES, ids=_ids)
def test_support_attributes(cls) -> None:
    assert isinstance(cls.support, Constraint)
    for i in range(3):
        d = _make(cls, i)
        assert d.support.event_dim == len(d.event_shape)
        assert cls.support.event_dim == len(d.event_shape)
        assert d.support.is_discrete is False and cls.support.is_discrete is False


@pytest.mark.parametrize(("cls", "i"), EXAMPLES)
def test_rsample_requires_grad(cls, i) -> None:
    d = _make(cls, i)
    if not d.has_rsample:  # torch's LogitRelaxedBernoulli declares none (as torch's test skips)
        pytest.skip(f"{cls.__name__}.has_rsample is False")
    assert d.rsample().requires_grad


@pytest.mark.parametrize(("cls", "i"), EXAMPLES)
def test_distribution_expand(cls, i) -> None:
    for shape in (torch.Size(), torch.Size((2,)), torch.Size((2, 1))):
        d = _make(cls, i)
        expanded_shape = shape + d.batch_shape
        original_shape = d.batch_shape + d.event_shape
        expanded = d.expand(batch_shape=list(expanded_shape))
        sample = expanded.sample()
        assert expanded.__class__ is d.__class__
        assert d.sample().shape == original_shape
        torch.testing.assert_close(expanded.log_prob(sample), d.log_prob(sample))
        assert expanded.sample().shape == shape + original_shape
        assert expanded.batch_shape == expanded_shape
        for method in ("entropy", "mean", "variance"):
            try:
                got, want = getattr(expanded, method), getattr(d, method)
                got, want = (got(), want()) if callable(got) else (got, want)
            except NotImplementedError:
                continue
            torch.testing.assert_close(got, want.expand(got.shape))


@pytest.mark.parametrize(("cls", "i"), EXAMPLES)
def test_distribution_subclass_expand(cls, i) -> None:
    sub = type("Sub" + cls.__name__, (cls,), {})
    for shape in (torch.Size(), torch.Size((2,)), torch.Size((2, 1))):
        d = sub(**_examples(cls)[i])
        expanded = d.expand(batch_shape=list(shape + d.batch_shape))
        assert expanded.__class__ is sub
        sample = expanded.sample()
        torch.testing.assert_close(expanded.log_prob(sample), d.log_prob(sample))


@pytest.mark.parametrize(("cls", "i"), EXAMPLES)
def test_cdf_icdf_inverse(cls, i) -> None:
    d = _make(cls, i)
    samples = d.sample((20,))
    try:
        actual = d.icdf(d.cdf(samples))
    except NotImplementedError:
        pytest.skip(f"{cls.__name__} has no cdf/icdf")
    rel = (actual - samples).abs() / (1e-10 + samples.abs())
    assert rel.max() < 1e-4


@pytest.mark.parametrize(("cls", "i"), EXAMPLES)
def test_cdf_log_prob(cls, i) -> None:
    """The derivative of the cdf with respect to the (own) sample is the density."""
    d = _make(cls, i)
    samples = d.sample()
    samples.requires_grad_()
    try:
        cdfs = d.cdf(samples)
        pdfs = d.log_prob(samples).exp()
    except NotImplementedError:
        pytest.skip(f"{cls.__name__} has no cdf")
    (derivative,) = grad(cdfs.sum(), [samples])
    torch.testing.assert_close(derivative, pdfs)


@pytest.mark.parametrize("cls", CLASSES, ids=_ids)
def test_entropy_shape(cls) -> None:
    for i in range(3):
        d = cls(**_examples(cls)[i], validate_args=False)
        try:
            shape = d.entropy().shape
        except NotImplementedError:
            continue
        assert shape == d.batch_shape


@pytest.mark.parametrize(("cls", "i"), EXAMPLES)
def test_sample_and_log_prob_shapes(cls, i) -> None:
    d = _make(cls, i)
    for sample_shape in (torch.Size(), torch.Size((3,)), torch.Size((2, 3))):
        x = d.sample(sample_shape)
        assert x.shape == sample_shape + d.batch_shape + d.event_shape
        assert d.log_prob(x).shape == sample_shape + d.batch_shape
    # a value broadcast against the batch: one event per batch entry from a single sample
    one = d.sample()[(0,) * len(d.batch_shape)]
    assert d.log_prob(one).shape == d.batch_shape


# --------------------------------------------------------------------------- TestConstraints
@pytest.mark.parametrize(("cls", "i"), EXAMPLES)
def test_params_constraints(cls, i) -> None:
    param = _examples(cls)[i]
    d = cls(**param)
    for name, value in param.items():
        if cls is RelaxedOneHotCategorical and name == "probs":  # torch accepts unnormalised
            value = value / value.sum(-1, True)
        try:
            constraint = d.arg_constraints[name]
        except KeyError:
            continue  # torch's classes have no constraint for the temperature
        assert value.dim() >= constraint.event_dim
        torch.broadcast_shapes(d.batch_shape, value.shape[: value.dim() - constraint.event_dim])
        if is_dependent(constraint):
            continue
        assert constraint.check(value).all(), (cls.__name__, i, name)


@pytest.mark.parametrize(("cls", "i"), EXAMPLES)
def test_support_constraints(cls, i) -> None:
    d = _make(cls, i)
    value = d.sample()
    ok = d.support.check(value)
    assert d.support.event_dim == len(d.event_shape)
    assert ok.shape == d.batch_shape
    assert ok.all()


# --------------------------------------------------------------------------- TestValidation
@pytest.mark.parametrize(("cls", "i"), EXAMPLES)
def test_valid(cls, i) -> None:
    cls(**_examples(cls)[i], validate_args=True)


BAD = {
    "categorical": [
        {"temperature": torch.tensor([0.5]), "probs": torch.tensor([[0.1, -0.2, 1.1]])},
        {"temperature": torch.tensor([0.5]), "logits": torch.tensor([[0.0, float("nan")]])},
    ],
    "binary": [
        {"temperature": torch.tensor([0.5]), "probs": torch.tensor([1.5])},
        {"temperature": torch.tensor([0.5]), "probs": torch.tensor([-0.1, 0.5])},
        {"temperature": torch.tensor([0.5]), "logits": torch.tensor([float("nan")])},
    ],
}


@pytest.mark.parametrize("cls", CLASSES, ids=_ids)
def test_invalid(cls) -> None:
    for param in BAD["categorical" if cls in CATEGORICAL else "binary"]:
        with pytest.raises(ValueError):
            cls(**param, validate_args=True)
    if cls in OURS:  # our temperature is a validated parameter (torch's is not)
        param = dict(_examples(cls, requires_grad=False)[0], temperature=torch.tensor([-1.0]))
        with pytest.raises(ValueError, match="temperature"):
            cls(**param, validate_args=True)


@pytest.mark.parametrize("cls", CLASSES, ids=_ids)
def test_invalid_log_prob_inputs(cls) -> None:
    d = _make(cls, 0, validate_args=True)
    x = d.sample()
    outside = {
        ExpConcrete: x.exp(),
        ExpRelaxedCategorical: None,  # torch: real_vector support, no point outside
        Concrete: x * 2,
        RelaxedOneHotCategorical: x * 2,
        BinaryConcrete: x + 1.5,
        RelaxedBernoulli: x + 1.5,
        LogitBinaryConcrete: torch.full_like(x, float("inf")),  # ours: finite reals
        LogitRelaxedBernoulli: torch.full_like(x, float("nan")),
    }[cls]
    if outside is None:
        pytest.skip("torch's ExpRelaxedCategorical declares real_vector: nothing is outside")
    with pytest.raises(ValueError):
        d.log_prob(outside)


# --------------------------------------------------------------------------- TestJit
def _jit_examples(cls):
    for i, param in enumerate(_examples(cls, requires_grad=False)):
        keys = tuple(param)
        values = tuple(param[k] for k in keys)
        yield i, keys, values, cls(**param).sample()


def _perturb(cls, keys, values):
    """New parameters of the same kind: ``transform_to(c)(transform_to(c).inv(v) + noise)``."""
    with torch.no_grad():
        out = []
        for key, value in zip(keys, values, strict=True):
            constraint = cls.arg_constraints.get(key, constraints.real)
            if key == "temperature" and cls in TORCHS:
                constraint = constraints.positive  # torch leaves it unconstrained
            t = transform_to(constraint)
            out.append(t(t.inv(value) + torch.randn(value.shape)))
        return out, cls(**dict(zip(keys, out, strict=True))).sample()


def _trace(fn, inputs):
    with warnings.catch_warnings():  # shape arithmetic recorded as constants, known and fine
        warnings.simplefilter("ignore")
        return torch.jit.trace(fn, inputs, check_trace=False)


@pytest.mark.parametrize("cls", CLASSES, ids=_ids)
@pytest.mark.parametrize("method", ["sample", "rsample"])
def test_jit_sample(cls, method: str) -> None:
    for _, keys, values, _ in _jit_examples(cls):

        def f(*vals, keys=keys):
            return getattr(cls(**dict(zip(keys, vals, strict=True))), method)()

        traced = _trace(f, values)
        with torch.random.fork_rng():
            want = f(*values)
        torch.testing.assert_close(traced(*values), want)
        assert any(node.isNondeterministic() for node in traced.graph.nodes())


@pytest.mark.parametrize("cls", CLASSES, ids=_ids)
@pytest.mark.parametrize("method", ["log_prob", "cdf"])
def test_jit_log_prob_and_cdf(cls, method: str) -> None:
    for _, keys, values, sample in _jit_examples(cls):

        def f(x, *vals, keys=keys):
            return getattr(cls(**dict(zip(keys, vals, strict=True))), method)(x)

        try:
            f(sample, *values)
        except NotImplementedError:
            pytest.skip(f"{cls.__name__} has no {method}")
        traced = _trace(f, (sample, *values))
        new_values, new_sample = _perturb(cls, keys, values)  # check on different data
        torch.testing.assert_close(traced(new_sample, *new_values), f(new_sample, *new_values))


@pytest.mark.parametrize("cls", CLASSES, ids=_ids)
@pytest.mark.parametrize("method", ["mean", "variance", "entropy"])
def test_jit_moments_and_entropy(cls, method: str) -> None:
    for _, keys, values, _ in _jit_examples(cls):

        def f(*vals, keys=keys):
            out = getattr(cls(**dict(zip(keys, vals, strict=True))), method)
            return out() if callable(out) else out

        try:
            f(*values)
        except NotImplementedError:
            pytest.skip(f"{cls.__name__}.{method} is not implemented")
        traced = _trace(f, values)
        new_values, _ = _perturb(cls, keys, values)
        torch.testing.assert_close(traced(*new_values), f(*new_values), equal_nan=True)
