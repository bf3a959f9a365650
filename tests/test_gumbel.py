"""Gumbel noise, Gumbel-Max and the exponential race (issue 2, criteria 4 and 8).

Statistical tests use fixed seeds and reject at p < 1e-3. Sample sizes are chosen so that each
test has power: every test that checks a law also shows that the same test, with the same
samples, rejects a slightly wrong law.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from concrete import exponential_race, gumbel_max, sample_gumbel

P_MIN = 1e-3  # reject the law if the p-value is below this


def _chisquare(counts: torch.Tensor, probs: torch.Tensor) -> float:
    counts = counts.double().numpy()
    expected = probs.double().numpy() * counts.sum()
    return float(stats.chisquare(counts, expected).pvalue)


def test_sample_gumbel_shape_dtype_and_finite() -> None:
    g = sample_gumbel((3, 4), generator=torch.Generator().manual_seed(0))
    assert g.shape == (3, 4) and g.dtype == torch.get_default_dtype()
    assert sample_gumbel(5).shape == (5,)
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        g = sample_gumbel((200_000,), dtype=dtype, generator=torch.Generator().manual_seed(1))
        assert g.dtype == dtype
        assert torch.isfinite(g).all()


def test_sample_gumbel_extreme_uniforms_stay_finite(monkeypatch: pytest.MonkeyPatch) -> None:
    """The uniform draws 0 and 1 - 2^-24 (the ends of torch.rand) give finite noise."""
    ends = torch.tensor([0.0, 1.0 - 2.0**-24, 0.5])

    def fake_rand(*args: object, **kwargs: object) -> torch.Tensor:
        return ends.clone()

    monkeypatch.setattr(torch, "rand", fake_rand)
    g = sample_gumbel((3,), dtype=torch.float32)
    assert torch.isfinite(g).all()
    assert g[0] < -4 and g[1] > 16  # the two ends map to the extreme finite values


def test_sample_gumbel_law_ks() -> None:
    g = sample_gumbel((50_000,), dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    assert stats.kstest(g.numpy(), stats.gumbel_r.cdf).pvalue > P_MIN
    # power: a Gumbel shifted by 0.03 is rejected by the same test on the same samples
    assert stats.kstest(g.numpy(), stats.gumbel_r(loc=0.03).cdf).pvalue < P_MIN


def test_sample_gumbel_generator_reproducible() -> None:
    a = sample_gumbel((10,), generator=torch.Generator().manual_seed(3))
    b = sample_gumbel((10,), generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_gumbel_max_frequencies_follow_softmax() -> None:
    logits = torch.tensor([1.0, -0.5, 0.0, 2.0, -3.0])
    n = 200_000
    idx = gumbel_max(logits.expand(n, 5), generator=torch.Generator().manual_seed(4))
    assert idx.dtype == torch.int64 and idx.shape == (n,)
    counts = torch.bincount(idx, minlength=5)
    probs = torch.softmax(logits.double(), -1)
    assert _chisquare(counts, probs) > P_MIN
    # power: moving 1% of probability mass between two classes is detected
    wrong = probs.clone()
    wrong[0] += 0.01
    wrong[3] -= 0.01
    assert _chisquare(counts, wrong) < P_MIN


def test_gumbel_max_dim_argument() -> None:
    logits = torch.tensor([[50.0, 0.0], [-50.0, 50.0], [0.0, -50.0]])  # (3 classes, 2 columns)
    idx = gumbel_max(logits, dim=0, generator=torch.Generator().manual_seed(5))
    assert idx.tolist() == [0, 1]


def test_exponential_race_unnormalised_rates() -> None:
    alpha = torch.tensor([0.5, 3.0, 1.5, 0.0, 5.0])  # unnormalised, one zero rate
    n = 200_000
    idx = exponential_race(alpha.expand(n, 5), generator=torch.Generator().manual_seed(6))
    counts = torch.bincount(idx, minlength=5)
    assert counts[3] == 0  # a zero rate never wins
    keep = [0, 1, 2, 4]
    probs = alpha[keep].double() / alpha.sum()
    assert _chisquare(counts[keep], probs) > P_MIN
    wrong = probs.clone()
    wrong[1] += 0.01
    wrong[3] -= 0.01
    assert _chisquare(counts[keep], wrong) < P_MIN


def test_exponential_race_equals_gumbel_max_law() -> None:
    """argmin E/alpha and argmax(log alpha + G) agree in law (two-sample chi-square)."""
    alpha = torch.tensor([0.2, 0.3, 0.5, 1.0])
    n = 100_000
    a = exponential_race(alpha.expand(n, 4), generator=torch.Generator().manual_seed(7))
    b = gumbel_max(alpha.log().expand(n, 4), generator=torch.Generator().manual_seed(8))
    table = np.stack([torch.bincount(a, minlength=4).numpy(), torch.bincount(b, minlength=4)])
    assert stats.chi2_contingency(table).pvalue > P_MIN


def test_exponential_race_tiny_rates_do_not_overflow() -> None:
    alpha = torch.tensor([1e-310, 3e-310], dtype=torch.float64)  # subnormal rates
    idx = exponential_race(alpha.expand(40_000, 2), generator=torch.Generator().manual_seed(9))
    frac = idx.double().mean().item()
    assert abs(frac - 0.75) < 0.02  # would be 0 if every E/alpha overflowed to inf


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: gumbel_max(torch.tensor([0.0, float("nan")])), "logits must be finite"),
        (lambda: gumbel_max(torch.tensor([0.0, float("inf")])), "logits must be finite"),
        (lambda: gumbel_max(torch.tensor(1.0)), "logits must have at least one dimension"),
        (lambda: gumbel_max(torch.zeros(3), dim=2), "dim=2 is out of range"),
        (lambda: exponential_race(torch.tensor([1.0, -0.5])), r"alpha must be non-negative"),
        (lambda: exponential_race(torch.tensor([0.0, 0.0])), "alpha must have a positive entry"),
        (lambda: exponential_race(torch.tensor([1.0, float("nan")])), "alpha must be finite"),
        (lambda: sample_gumbel((2, -1)), r"shape=\(2, -1\)"),
        (lambda: sample_gumbel((2,), dtype=torch.int64), "dtype=torch.int64"),
    ],
)
def test_bad_input_raises_value_error(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_error_messages_show_the_value() -> None:
    with pytest.raises(ValueError, match=r"alpha=tensor\(\[ 1.0000, -0.5000\]\)"):
        exponential_race(torch.tensor([1.0, -0.5]))
    with pytest.raises(ValueError, match=r"nan"):
        gumbel_max(torch.tensor([0.0, float("nan")]))


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_finite_check_decides_by_entries_when_the_sum_overflows(dtype) -> None:
    """The finiteness check sums first (a finite sum proves every entry finite); finite entries
    whose sum overflows must still pass, and one NaN or infinity must still raise."""
    from concrete.gumbel import _check_finite

    big = torch.full((4, 3), torch.finfo(dtype).max, dtype=dtype)
    assert not torch.isfinite(big.sum())  # the sum overflows ...
    _check_finite("logits", big)  # ... but every entry is finite: no error
    for bad in (float("nan"), float("inf"), float("-inf")):
        x = big.clone()
        x[2, 1] = bad
        with pytest.raises(ValueError, match=r"(?s)logits must be finite.*non-finite entries"):
            _check_finite("logits", x)
    mixed = torch.tensor([1.0, -1.0, float("inf"), float("-inf")], dtype=dtype)
    assert torch.isnan(mixed.sum())  # inf + (-inf): the sum is NaN, not finite
    with pytest.raises(ValueError, match="logits must be finite"):
        _check_finite("logits", mixed)
