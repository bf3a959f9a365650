r"""Toy objectives with closed-form gradients, and control variates for many runs at once.

The toy of REBAR and RELAX (Tucker et al. 2017; Grathwohl et al. 2018): minimise

.. math::

    J(\theta) = \mathbb{E}_{b \sim \mathrm{Bernoulli}(\sigma(\theta))}\big[(b - t)^2\big]
    = \sigma(\theta)(1 - t)^2 + \big(1 - \sigma(\theta)\big)t^2,
    \qquad \frac{dJ}{d\theta} = \sigma(\theta)\big(1 - \sigma(\theta)\big)(1 - 2t),

over the logit :math:`\theta`. For :math:`t < 1/2` the minimum is the limit
:math:`\theta \to -\infty` (:math:`p = \sigma(\theta) \to 0`, :math:`J \to t^2`); the closer
:math:`t` is to :math:`1/2`, the smaller the gradient :math:`(1 - 2t)\,p(1 - p)` against the
noise of a one-sample estimate.

A seed study trains :math:`R` independent copies of :math:`\theta` side by side: logits of
shape ``(R,)``, one target per run. Adam acts elementwise, so one optimiser over the vector is
:math:`R` independent optimisers. The control variates below keep that independence: each run
has its own parameters, and the output of run :math:`r` depends on run :math:`r`'s parameters
only, so the variance objective :math:`\sum_r \hat g_r^2` of
:func:`concrete.estimators.relax` trains every run's control on its own estimates.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from concrete.relaxed import validate_temperature

__all__ = [
    "RunwiseMLPControl",
    "RunwiseRebarControl",
    "square_loss",
    "square_loss_expectation",
    "square_loss_gradient",
]


def _targets(t: object) -> Tensor:
    if isinstance(t, bool) or not isinstance(t, (int, float, Tensor)):
        raise ValueError(f"t must be a number or a floating Tensor, got t={t!r}")
    tt = torch.as_tensor(t, dtype=torch.get_default_dtype()) if not isinstance(t, Tensor) else t
    if not tt.dtype.is_floating_point or not bool(torch.isfinite(tt).all()):
        raise ValueError(f"t must be finite floating values, got t={t!r}")
    return tt


def _runs(runs: object) -> int:
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise ValueError(f"runs must be an integer >= 1, got runs={runs!r}")
    return runs


def square_loss(t: float | Tensor) -> Callable[[Tensor], Tensor]:
    r"""The toy's :math:`f(b) = (b - t)^2`, elementwise, broadcasting ``t`` over leading dims.

    Args:
        t: the target, a number or a Tensor of shape ``(R,)`` (one target per run).

    Returns:
        ``f``: ``(..., R) -> (..., R)``; accepts discrete :math:`b \in \{0, 1\}` and relaxed
        :math:`b \in (0, 1)` (differentiable), as the estimators of
        :mod:`concrete.estimators` need.
    """
    tt = _targets(t)

    def f(b: Tensor) -> Tensor:
        return (b - tt.to(b)) ** 2

    return f


def square_loss_expectation(logits: Tensor, t: float | Tensor) -> Tensor:
    r"""Exact :math:`J(\theta) = p(1-t)^2 + (1-p)t^2`, :math:`p = \sigma(\theta)`, elementwise."""
    if not isinstance(logits, Tensor) or not logits.dtype.is_floating_point:
        raise ValueError(f"logits must be a floating Tensor, got logits={logits!r}")
    tt = _targets(t).to(logits)
    p = torch.sigmoid(logits)
    return p * (1 - tt) ** 2 + (1 - p) * tt**2


def square_loss_gradient(logits: Tensor, t: float | Tensor) -> Tensor:
    r"""Exact :math:`dJ/d\theta = \sigma(\theta)(1 - \sigma(\theta))(1 - 2t)`, elementwise."""
    if not isinstance(logits, Tensor) or not logits.dtype.is_floating_point:
        raise ValueError(f"logits must be a floating Tensor, got logits={logits!r}")
    tt = _targets(t).to(logits)
    p = torch.sigmoid(logits)
    return p * (1 - p) * (1 - 2 * tt)


class RunwiseRebarControl(nn.Module):
    r"""REBAR's control variate with its own :math:`\eta_r, \lambda_r` for each of :math:`R` runs.

    .. math::

        c(z)_r = \eta_r\, f\big(\sigma(z_r / \lambda_r)\big)_r ,

    for Bernoulli logits of shape ``(R,)``: perturbed logits ``z`` ``(K, R)`` (or ``(K, M,
    R)``) give ``(K, R)`` (or ``(K, M, R)``). It is :class:`concrete.estimators.RelaxControl`
    with ``kind="bernoulli"`` and ``net=None`` (one shared :math:`\eta, \lambda`) made
    elementwise, so :func:`concrete.estimators.relax` tunes each run's :math:`\eta_r` and
    :math:`\log\lambda_r` on that run's estimates only (Tucker et al. 2017 tune them per model).

    Args:
        f: elementwise ``f`` (e.g. :func:`square_loss`), called at relaxed samples.
        runs: :math:`R \ge 1`.
        temperature: initial :math:`\lambda_r > 0` (0.5 in the RELAX reference code's toy).
        eta: initial :math:`\eta_r` (1 there).
    """

    def __init__(self, f: Callable[[Tensor], Tensor], runs: int, *, temperature: float = 0.5,
                 eta: float = 1.0) -> None:
        super().__init__()
        if not callable(f):
            raise ValueError(f"f must be callable, got f={f!r}")
        r = _runs(runs)
        lam = float(validate_temperature(temperature))
        if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not math.isfinite(eta):
            raise ValueError(f"eta must be a finite number, got eta={eta!r}")
        object.__setattr__(self, "f", f)  # not a submodule: f has no parameters to tune here
        self.log_temperature = nn.Parameter(torch.full((r,), math.log(lam)))
        self.eta = nn.Parameter(torch.full((r,), float(eta)))

    @property
    def temperature(self) -> Tensor:
        """:math:`\\lambda_r = e^{\\log\\lambda_r}`, shape ``(R,)``."""
        return self.log_temperature.exp()

    def forward(self, z: Tensor) -> Tensor:  # noqa: D102
        lam = self.log_temperature.to(z.dtype).exp()
        return self.eta.to(z.dtype) * self.f(torch.sigmoid(z / lam))


class RunwiseMLPControl(nn.Module):
    r"""The free-form control variate of the RELAX reference code's toy, one network per run.

    .. math::

        c(z)_r = s_r\Big(w_{2,r}^\top \tanh\big(w_{1,r}\,(2\sigma(z_r/\lambda_r) - 1)
        + b_{1,r}\big) + b_{2,r}\Big),

    a one-input MLP with ``hidden`` tanh units on the relaxed sample rescaled to
    :math:`(-1, 1)`, times a learned scale :math:`s_r` that starts at 0 (so training starts
    from plain REINFORCE), with a learned temperature :math:`\lambda_r` (starting at 0.5).
    This is the ``relaxed="super"`` control of ``rebar_tf.py`` in the RELAX repository
    (github.com/duvenaud/relax), which Grathwohl et al. (2018) use for their Figure 1: it does
    not contain :math:`f`. Weights start Glorot-uniform (TensorFlow's default there), biases 0.

    Args:
        runs: :math:`R \ge 1` independent networks.
        hidden: number of tanh units (10 in the reference code).
        temperature: initial :math:`\lambda_r > 0`.
        generator: optional ``torch.Generator`` for the initial weights.

    Call: ``control(z)`` for perturbed logits ``(..., R)`` returns ``(..., R)``.
    """

    def __init__(self, runs: int, hidden: int = 10, *, temperature: float = 0.5,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        r = _runs(runs)
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"hidden must be an integer >= 1, got hidden={hidden!r}")
        lam = float(validate_temperature(temperature))
        lim1 = math.sqrt(6 / (1 + hidden))  # Glorot uniform for a (1, hidden) layer
        lim2 = math.sqrt(6 / (hidden + 1))  # ... and for (hidden, 1)
        u1 = torch.rand(r, hidden, generator=generator)
        u2 = torch.rand(r, hidden, generator=generator)
        self.log_temperature = nn.Parameter(torch.full((r,), math.log(lam)))
        self.w1 = nn.Parameter((2 * u1 - 1) * lim1)
        self.b1 = nn.Parameter(torch.zeros(r, hidden))
        self.w2 = nn.Parameter((2 * u2 - 1) * lim2)
        self.b2 = nn.Parameter(torch.zeros(r))
        self.scale = nn.Parameter(torch.zeros(r))

    def forward(self, z: Tensor) -> Tensor:  # noqa: D102
        x = 2 * torch.sigmoid(z / self.log_temperature.to(z.dtype).exp()) - 1
        h = torch.tanh(x.unsqueeze(-1) * self.w1.to(z.dtype) + self.b1.to(z.dtype))
        out = (h * self.w2.to(z.dtype)).sum(-1) + self.b2.to(z.dtype)
        return self.scale.to(z.dtype) * out
