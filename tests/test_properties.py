"""Hypothesis property tests (issue 2, criterion 9): shapes, broadcasting, expand,
temperatures of batch shape, and the one-hot exactness of ``gumbel_softmax(hard=True)``."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from concrete import (
    BinaryConcrete,
    Concrete,
    ExpConcrete,
    LogitBinaryConcrete,
    gumbel_softmax,
)
from concrete.gumbel import _log_exponential

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)

shapes = st.lists(st.integers(1, 3), min_size=0, max_size=3).map(tuple)


@st.composite
def batch_and_temperature_shapes(draw):
    """A logits batch shape and a temperature shape that broadcast together (either may be the
    larger one), avoiding the torch-style (batch..., 1) temperature that is rejected."""
    batch = draw(shapes)
    extra = draw(st.lists(st.integers(1, 3), max_size=2).map(tuple))
    # temperature: extra leading dims + each batch dim kept or set to 1, or dropped
    keep = draw(st.lists(st.booleans(), min_size=len(batch), max_size=len(batch)))
    temp = extra + tuple(b if k else 1 for b, k in zip(batch, keep, strict=True))
    if draw(st.booleans()) and len(temp) > 0:
        temp = temp[draw(st.integers(0, len(temp))) :]  # a suffix also broadcasts
    return batch, temp


@SETTINGS
@given(
    shapes_=batch_and_temperature_shapes(),
    n=st.integers(2, 5),
    sample_shape=shapes,
    cls=st.sampled_from([ExpConcrete, Concrete]),
    use_probs=st.booleans(),
)
def test_categorical_shapes(shapes_, n, sample_shape, cls, use_probs) -> None:
    batch, tshape = shapes_
    if len(batch) >= 1 and tshape == batch + (1,):
        return  # the rejected torch-style layout (tested elsewhere)
    logits = torch.randn(*batch, n, dtype=torch.float64)
    temperature = torch.rand(tshape, dtype=torch.float64) + 0.2
    kwargs = {"probs": logits.softmax(-1)} if use_probs else {"logits": logits}
    d = cls(temperature, **kwargs)
    expected_batch = torch.broadcast_shapes(batch, tshape)
    assert d.batch_shape == expected_batch
    assert d.event_shape == (n,)
    assert d.temperature.shape == expected_batch
    assert d.logits.shape == d.probs.shape == expected_batch + (n,)
    v, lp = d.rsample_and_log_prob(sample_shape)
    assert v.shape == sample_shape + expected_batch + (n,)
    assert lp.shape == sample_shape + expected_batch
    x = d.rsample(sample_shape)
    assert d.log_prob(x).shape == sample_shape + expected_batch
    assert d.support.check(x).all()
    # expand to a larger batch: same values where the old batch broadcasts
    new_batch = (2,) + expected_batch
    e = d.expand(new_batch)
    assert e.batch_shape == new_batch and e.temperature.shape == new_batch
    assert e.rsample().shape == new_batch + (n,)
    w = d.sample()
    torch.testing.assert_close(e.log_prob(w.clone()), d.log_prob(w.clone()).expand(new_batch))


@SETTINGS
@given(
    shapes_=batch_and_temperature_shapes(),
    sample_shape=shapes,
    cls=st.sampled_from([BinaryConcrete, LogitBinaryConcrete]),
)
def test_binary_shapes(shapes_, sample_shape, cls) -> None:
    batch, tshape = shapes_
    logits = torch.randn(batch, dtype=torch.float64)
    temperature = torch.rand(tshape, dtype=torch.float64) + 0.2
    d = cls(temperature, logits=logits)
    expected = torch.broadcast_shapes(batch, tshape)
    assert d.batch_shape == expected and d.event_shape == ()
    assert d.temperature.shape == expected
    v, lp = d.rsample_and_log_prob(sample_shape)
    assert v.shape == lp.shape == sample_shape + expected
    e = d.expand((3,) + expected)
    assert e.sample().shape == (3,) + expected


@SETTINGS
@given(
    batch=shapes,
    n=st.integers(2, 6),
    lam=st.one_of(
        st.floats(1e-3, 1e3),
        st.just(1e30),  # all soft coordinates tie
    ),
    scale=st.sampled_from([0.0, 1.0, 1e4]),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.float16]),
    seed=st.integers(0, 2**16),
)
def test_hard_gumbel_softmax_is_exactly_one_hot(batch, n, lam, scale, dtype, seed) -> None:
    gen = torch.Generator().manual_seed(seed)
    logits = (scale * torch.randn(*batch, n, generator=gen)).round().to(dtype)  # ties too
    logits = logits.clamp(-6e4, 6e4)  # float16 range
    x = gumbel_softmax(logits, lam, hard=True, generator=gen)
    assert x.shape == logits.shape and x.dtype == dtype
    assert torch.all((x == 0) | (x == 1))
    assert torch.all(x.sum(-1) == 1)


@SETTINGS
@given(
    batch=st.lists(st.integers(1, 3), min_size=1, max_size=3).map(tuple),
    n=st.integers(2, 5),
    seed=st.integers(0, 2**16),
)
def test_gumbel_softmax_batch_temperature_matches_rowwise(batch, n, seed) -> None:
    """A temperature of batch shape acts row by row, like a loop over scalar temperatures."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(*batch, n, dtype=torch.float64, generator=gen)
    lam = torch.rand(batch, dtype=torch.float64, generator=gen) + 0.1
    state = gen.get_state()
    x = gumbel_softmax(logits, lam, generator=gen)
    gen.set_state(state)  # replay the same noise, scaled row by row
    log_e = _log_exponential(logits.shape, dtype=torch.float64, generator=gen)
    want = torch.softmax((logits - log_e) / lam.unsqueeze(-1), -1)
    torch.testing.assert_close(x, want)
