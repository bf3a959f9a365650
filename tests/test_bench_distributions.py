"""The confidence interval for a median ratio in ``benchmarks/bench_distributions.py``."""

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_distributions import _median_ci  # noqa: E402


def binom_below(n: int, j: int) -> float:
    """P(Binomial(n, 1/2) < j)."""
    return sum(math.comb(n, i) for i in range(j)) / 2**n


@pytest.mark.parametrize("n", [6, 7, 10, 15, 30, 41, 100])
def test_the_interval_is_the_widest_order_statistic_pair_with_95_percent_coverage(n):
    lo, hi = _median_ci([float(i) for i in range(1, n + 1)])   # rank r has value r
    j = int(lo)
    assert hi == n + 1 - j
    assert binom_below(n, j) <= 0.025 < binom_below(n, j + 1)   # widest pair that qualifies
    assert 1 - 2 * binom_below(n, j) >= 0.95                    # its coverage


def test_textbook_ranks_and_unsorted_input():
    assert _median_ci(list(range(30, 0, -1))) == (10, 21)     # n = 30: ranks 10 and 21
    assert _median_ci(list(range(1, 101))) == (40, 61)       # n = 100: ranks 40 and 61
    assert _median_ci([3.0, 1.0, 2.0]) == (1.0, 3.0)          # too few rounds: the range
