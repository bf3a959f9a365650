r"""Gradient estimators for discrete random variables, behind one API.

The problem: estimate

.. math::

    \nabla_\theta\, J(\theta), \qquad J(\theta) = \mathbb{E}_{b \sim p_\theta}\big[f(b)\big],

for a categorical :math:`b` (one-hot over the last dimension, :math:`n` classes,
:math:`p_\theta(b) = \operatorname{softmax}(\theta)`) or a Bernoulli :math:`b \in \{0, 1\}`
(:math:`p_\theta(b = 1) = \sigma(\theta)`), with logits :math:`\theta` of any batch shape and
:math:`f` differentiable or a black box.

**Conventions shared by every estimator.**

* ``logits``: ``(*batch, n)`` for ``kind="categorical"``, ``(*batch)`` for
  ``kind="bernoulli"``; finite.
* ``f``: called once (or a fixed few times) with *all* samples stacked on a new leading
  dimension: ``b`` of shape ``(K, *batch, n)`` (categorical) or ``(K, *batch)`` (Bernoulli),
  in the dtype of ``logits``. It returns ``(K, *batch[:d])`` for some ``d``: the latent
  variables in ``batch[d:]`` are the *event* of one output element (a VAE: logits
  ``(B, N, n)``, ``f`` returns ``(K, B)``, the ``N`` latents of one image act jointly). The
  objective is the sum over the output elements, :math:`J = \sum_i \mathbb{E}[f(b)_i]`, and
  each output element is scored with the log-probability of its own event only.
* Every estimator returns a **surrogate** scalar :math:`S`: its *value* is the Monte-Carlo
  estimate of :math:`J` the estimator is built on, and ``S.backward()`` puts the gradient
  estimate into ``logits.grad`` (or, through ``logits``, into the parameters of whatever
  computed them) and the gradient of the same estimate of :math:`J` into ``f``'s own
  parameters. Minimising :math:`S` with an optimiser therefore minimises :math:`J` (take
  ``f`` = a loss). :func:`estimate_gradient` returns the estimate itself, shaped like
  ``logits`` (or ``(R, *logits.shape)`` for ``R`` independent replicates).
* ``samples`` = :math:`K \ge 1` independent discrete samples, averaged; everything is
  vectorised over the samples and the batch (no Python loop over samples).
* ``generator``: an optional ``torch.Generator``; the same seed gives the same noise.

**The estimators** (:data:`ESTIMATORS` maps names to functions):

* ``"exact"`` -- :func:`exact`: the exact gradient by enumeration (small spaces);
* ``"reinforce"`` -- :func:`score_function`: unbiased (Williams 1992); baselines none, EMA
  (:class:`EMABaseline`) or a constant;
* ``"rloo"`` -- :func:`score_function` with ``baseline="loo"``: unbiased, leave-one-out
  baseline over the K samples (Kool et al. 2019);
* ``"straight_through"`` -- :func:`straight_through`: biased (Bengio et al. 2013);
* ``"gumbel_softmax"`` -- :func:`gumbel_softmax_estimator`: biased, the gradient of the
  relaxed objective (Jang et al. 2017; Maddison et al. 2017);
* ``"st_gumbel_softmax"`` -- :func:`st_gumbel_softmax`: biased (Jang et al. 2017);
* ``"gumbel_rao"`` -- :func:`gumbel_rao`: biased like ST-GS, lower variance
  (Paulus, Maddison & Krause 2021);
* ``"rebar"`` -- :func:`rebar`: unbiased (Tucker et al. 2017);
* ``"relax"`` -- :func:`relax`: unbiased, learned control variate (Grathwohl et al. 2018);
* ``"arm"`` -- :func:`arm`: unbiased, Bernoulli only (Yin & Zhou 2019);
* ``"disarm"`` -- :func:`disarm`: unbiased, Bernoulli only, never more variance than ARM
  (Dong, Mnih & Tucker 2020);

plus the learning signals of NVIL (:class:`NVIL`, Mnih & Gregor 2014) and VIMCO
(:func:`vimco_learning_signals`, :func:`vimco_surrogate`, Mnih & Rezende 2016) for
multi-sample bounds, and the conditional reparameterisations
(:func:`conditional_gumbel`, :func:`conditional_logistic`) that REBAR, RELAX and Gumbel-Rao
share.

**The relaxation used throughout.** Categorical: :math:`z = \theta + G`,
:math:`G_k \sim \mathrm{Gumbel}(0, 1)`, :math:`b = H(z) = \text{one-hot}(\arg\max_k z_k)`,
:math:`\sigma_\lambda(z) = \operatorname{softmax}(z/\lambda)`. Bernoulli:
:math:`z = \theta + L`, :math:`L = \log U - \log(1 - U)` logistic, :math:`b = H(z) =
\mathbb{1}[z > 0]`, :math:`\sigma_\lambda(z) = \operatorname{sigmoid}(z / \lambda)` (the
two-class case of the same construction).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn

from concrete.gumbel import _check_finite, _uniform, sample_exponential, sample_gumbel
from concrete.relaxed import (
    _ConcreteSampler,
    _StraightThrough,
    gumbel_softmax,
    validate_temperature,
)

__all__ = [
    "ESTIMATORS",
    "KINDS",
    "EMABaseline",
    "NVIL",
    "RelaxControl",
    "arm",
    "conditional_gumbel",
    "conditional_logistic",
    "disarm",
    "estimate_gradient",
    "exact",
    "exact_expectation",
    "exact_gradient",
    "gumbel_rao",
    "gumbel_softmax_estimator",
    "log_prob",
    "rebar",
    "relax",
    "relaxed_sample",
    "sample",
    "score_function",
    "st_gumbel_softmax",
    "straight_through",
    "vimco_learning_signals",
    "vimco_surrogate",
]

Kind = Literal["categorical", "bernoulli"]
KINDS: tuple[str, ...] = ("categorical", "bernoulli")
#: The largest number of joint configurations :func:`exact_expectation` enumerates.
MAX_CONFIGURATIONS = 1 << 16

F = Callable[[Tensor], Tensor]


# -- validation ---------------------------------------------------------------------------------


def _check_kind(kind: object) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got kind={kind!r}")
    return str(kind)


def _check_logits(logits: object, kind: str) -> Tensor:
    if not isinstance(logits, Tensor):
        raise ValueError(f"logits must be a floating torch.Tensor, got logits={logits!r}")
    if not logits.dtype.is_floating_point:
        raise ValueError(f"logits must be a floating tensor, got dtype {logits.dtype}")
    if kind == "categorical":
        if logits.dim() == 0 or logits.shape[-1] < 2:
            raise ValueError(
                "categorical logits must have shape (*batch, n) with n >= 2 classes, got "
                f"logits of shape {tuple(logits.shape)}"
            )
    _check_finite("logits", logits.detach())
    return logits


def _check_samples(samples: object, name: str = "samples", minimum: int = 1) -> int:
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {name}={samples!r}")
    return samples


def _check_f(f: object) -> None:
    if not callable(f):
        raise ValueError(f"f must be callable (samples -> values), got f={f!r}")


def _batch_shape(logits: Tensor, kind: str) -> torch.Size:
    return logits.shape[:-1] if kind == "categorical" else logits.shape


def _call_f(f: F, b: Tensor, batch: torch.Size, name: str = "f") -> tuple[Tensor, int]:
    """``f(b)`` and ``d``: the output must be ``(K, *batch[:d])``."""
    out = f(b)
    k = b.shape[0]
    if not isinstance(out, Tensor) or not out.dtype.is_floating_point or out.dim() == 0:
        raise ValueError(
            f"{name} must return a floating tensor of shape (K, *batch[:d]) = ({k}, ...), got "
            f"{name}(b)={out!r}"
        )
    d = out.dim() - 1
    if out.shape[0] != k or d > len(batch) or tuple(out.shape[1:]) != tuple(batch[:d]):
        raise ValueError(
            f"{name} must return shape (K, *batch[:d]) with K={k} and batch={tuple(batch)} "
            f"(a prefix of the batch shape), got {name}(b) of shape {tuple(out.shape)}"
        )
    return out, d


def _event_sum(x: Tensor, d: int) -> Tensor:
    """Sum ``(K, *batch)`` over the event dims ``batch[d:]``: ``(K, *batch[:d])``."""
    if x.dim() - 1 == d:
        return x
    return x.flatten(1 + d).sum(-1)


def _expand_event(x: Tensor, batch_ndim: int) -> Tensor:
    """View ``(K, *batch[:d])`` as ``(K, *batch[:d], 1, ..., 1)`` (``batch_ndim`` batch dims)."""
    return x.reshape(x.shape + (1,) * (batch_ndim - (x.dim() - 1)))


def _inject(grad: Tensor, wrt: Tensor) -> Tensor:
    """A scalar with value 0 whose gradient with respect to ``wrt`` is ``grad`` (detached)."""
    g = grad.detach()
    return (g * wrt).sum() - (g * wrt.detach()).sum()


def _mc(x: Tensor) -> Tensor:
    """Mean over the sample dim, sum over the rest: the Monte-Carlo estimate of J."""
    return x.mean(0).sum()


# -- sampling, log-probabilities, relaxations ---------------------------------------------------


def sample(
    logits: Tensor,
    samples: int = 1,
    *,
    kind: Kind = "categorical",
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""``samples`` independent draws :math:`b \sim p_\theta`, stacked on a new leading dim.

    Categorical: one-hot of :math:`\arg\max_k(\theta_k + G_k)` (Gumbel-Max); Bernoulli:
    :math:`\mathbb{1}[U < \sigma(\theta)]`. No gradient.

    Args:
        logits: ``(*batch, n)`` (categorical) or ``(*batch)`` (Bernoulli).
        samples: :math:`K \ge 1`.
        kind: ``"categorical"`` or ``"bernoulli"``.
        generator: optional ``torch.Generator``.

    Returns:
        ``(K, *logits.shape)`` in the dtype of ``logits``: one-hot rows or 0/1 values.
    """
    kind = _check_kind(kind)
    logits = _check_logits(logits, kind)
    k = _check_samples(samples)
    theta = logits.detach()
    shape = (k, *theta.shape)
    if kind == "categorical":
        g = sample_gumbel(shape, dtype=theta.dtype, device=theta.device, generator=generator)
        return _one_hot_argmax(g.add_(theta))
    u = _uniform(shape, dtype=theta.dtype, device=theta.device, generator=generator)
    return (u < torch.sigmoid(theta)).to(theta.dtype)


def _one_hot_argmax(z: Tensor) -> Tensor:
    out = torch.zeros_like(z)
    return out.scatter_(-1, z.argmax(-1, keepdim=True), 1.0)


def log_prob(logits: Tensor, b: Tensor, *, kind: Kind = "categorical") -> Tensor:
    r"""Log-probability of each sampled variable, differentiable in ``logits``.

    Categorical: :math:`\log p_\theta(b) = \sum_k b_k \log\operatorname{softmax}(\theta)_k`;
    Bernoulli: :math:`b \log\sigma(\theta) + (1 - b)\log\sigma(-\theta)`.

    Args:
        logits: ``(*batch, n)`` or ``(*batch)``.
        b: samples broadcastable against ``logits`` (e.g. ``(K, *logits.shape)``).
        kind: ``"categorical"`` or ``"bernoulli"``.

    Returns:
        ``(K, *batch)``: one log-probability per variable (not summed over anything).
    """
    kind = _check_kind(kind)
    if kind == "categorical":
        return (b * torch.log_softmax(logits, -1)).sum(-1)
    return b * nn.functional.logsigmoid(logits) + (1 - b) * nn.functional.logsigmoid(-logits)


def relaxed_sample(z: Tensor, temperature: float | Tensor, *, kind: Kind = "categorical") -> Tensor:
    r""":math:`\sigma_\lambda(z)`: ``softmax(z / λ)`` over the last dim, or ``sigmoid(z / λ)``.

    Plain differentiable ops (twice differentiable, gradients reach a Tensor ``temperature``),
    so it is what :class:`RelaxControl` uses for its learned temperature.

    Args:
        z: perturbed logits ``(..., n)`` (categorical) or ``(...)`` (Bernoulli).
        temperature: :math:`\lambda > 0`, a number or a 0-dim Tensor.
        kind: ``"categorical"`` or ``"bernoulli"``.

    Returns:
        Tensor shaped like ``z``.
    """
    kind = _check_kind(kind)
    lam = validate_temperature(temperature, dtype=z.dtype, device=z.device)
    if kind == "categorical":
        return torch.softmax(z / lam, -1)
    return torch.sigmoid(z / lam)


def _logistic(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard logistic noise log U - log(1 - U), finite."""
    u = _uniform(shape, dtype=like.dtype, device=like.device, generator=generator)
    return u.log() - torch.log1p(-u)


def _noise(logits: Tensor, samples: int, kind: str, generator: torch.Generator | None) -> Tensor:
    """Unconditional noise ``(K, *logits.shape)``: Gumbel (categorical) or logistic (Bernoulli).

    The categorical draw consumes the generator exactly as :func:`concrete.gumbel_softmax` does.
    """
    theta = logits.detach()
    shape = (samples, *theta.shape)
    if kind == "categorical":
        return sample_gumbel(shape, dtype=theta.dtype, device=theta.device, generator=generator)
    return _logistic(shape, theta, generator)


def _hard(z: Tensor, kind: str) -> Tensor:
    """b = H(z): one-hot arg max, or 1[z > 0]."""
    z = z.detach()
    return _one_hot_argmax(z) if kind == "categorical" else (z > 0).to(z.dtype)


def conditional_gumbel(
    logits: Tensor, b: Tensor, *, generator: torch.Generator | None = None
) -> Tensor:
    r"""Perturbed logits :math:`\tilde z \sim p(z \mid H(z) = b)`, reparameterised in ``logits``.

    For :math:`z = \theta + G` (Gumbel perturbation) and :math:`b` the one-hot of class
    :math:`k`: the maximum :math:`\max_j z_j` is :math:`\mathrm{Gumbel}(\log\sum_j e^{\theta_j})`
    and independent of :math:`k`, and every other coordinate is a :math:`\mathrm{Gumbel}(\theta_i)`
    truncated below it (Tucker et al. 2017, App. C; Paulus et al. 2021). With
    :math:`E_j = -\log V_j \sim \mathrm{Exp}(1)` i.i.d.,

    .. math::

        \tilde z_k = \log\textstyle\sum_j e^{\theta_j} - \log E_k, \qquad
        \tilde z_i = -\log\big(e^{-\tilde z_k} + E_i e^{-\theta_i}\big) \quad (i \ne k),

    computed as :math:`\tilde z_i = \theta_i - \log(E_i + E_k\,p_i)`,
    :math:`p = \operatorname{softmax}(\theta)` (the same number; finite for any finite logits,
    as :math:`E_i > 0`). Then
    :math:`\arg\max_j \tilde z_j = k` always, and drawing :math:`b \sim p_\theta` first and
    :math:`\tilde z` second reproduces the joint law of :math:`(b, z)`.

    Args:
        logits: ``(*batch, n)``.
        b: one-hot ``(..., *batch, n)`` (leading dims broadcast against ``logits``).
        generator: optional ``torch.Generator``.

    Returns:
        :math:`\tilde z`, shape ``b.shape``, differentiable in ``logits``.
    """
    logits = _check_logits(logits, "categorical")
    if (
        not isinstance(b, Tensor)
        or b.dim() < logits.dim()
        or b.shape[-logits.dim() :] != logits.shape
    ):
        raise ValueError(
            f"b must be one-hot of shape (..., *logits.shape) = (..., {tuple(logits.shape)}), "
            f"got b of shape {tuple(getattr(b, 'shape', ()))}"
        )
    e = sample_exponential(b.shape, dtype=logits.dtype, device=logits.device, generator=generator)
    idx = b.argmax(-1, keepdim=True)
    e_k = e.gather(-1, idx)  # (..., 1)
    lse = torch.logsumexp(logits, -1, keepdim=True)
    # z_i = theta_i - log(E_i + E_k p_i): the same value as -log(e^{-z_k} + E_i e^{-theta_i})
    others = logits - torch.addcmul(e, e_k, torch.softmax(logits, -1)).log()
    return others.scatter(-1, idx, (lse - e_k.log()).expand(idx.shape))


def conditional_logistic(
    logits: Tensor, b: Tensor, *, generator: torch.Generator | None = None
) -> Tensor:
    r"""Perturbed logits :math:`\tilde z \sim p(z \mid \mathbb{1}[z > 0] = b)` for Bernoulli.

    :math:`z = \theta + \log U - \log(1-U)` is logistic with location :math:`\theta`; given
    :math:`b` it is truncated to :math:`z > 0` (:math:`b = 1`) or :math:`z \le 0` (:math:`b = 0`).
    With :math:`V \sim \mathcal U(0, 1)` and :math:`p = \sigma(\theta)` (Tucker et al. 2017):

    .. math::

        U' = \begin{cases} 1 - p\,(1 - V) & b = 1 \\ V (1 - p) & b = 0 \end{cases},
        \qquad \tilde z = \theta + \log U' - \log(1 - U'),

    which simplifies to

    .. math::

        \tilde z = \log\big(1 + e^{\theta} V\big) - \log(1 - V) \;(b = 1), \qquad
        \tilde z = \log(1 - V) - \log\big(1 + e^{-\theta} V\big) \;(b = 0),

    evaluated with ``softplus`` and ``log1p``: each term has the sign of the truncation, so
    :math:`\mathbb{1}[\tilde z > 0] = b` holds in floating point too.

    Args:
        logits: ``(*batch)``.
        b: 0/1 values ``(..., *batch)``.
        generator: optional ``torch.Generator``.

    Returns:
        :math:`\tilde z`, shape ``b.shape``, differentiable in ``logits``.
    """
    logits = _check_logits(logits, "bernoulli")
    if (
        not isinstance(b, Tensor)
        or b.dim() < logits.dim()
        or (logits.dim() and b.shape[-logits.dim() :] != logits.shape)
    ):
        raise ValueError(
            f"b must have shape (..., *logits.shape) = (..., {tuple(logits.shape)}), got b of "
            f"shape {tuple(getattr(b, 'shape', ()))}"
        )
    v = _uniform(b.shape, dtype=logits.dtype, device=logits.device, generator=generator)
    log_v, log_1mv = v.log(), torch.log1p(-v)
    z1 = nn.functional.softplus(logits + log_v) - log_1mv  # > 0: softplus > 0, -log(1-V) > 0
    z0 = log_1mv - nn.functional.softplus(log_v - logits)  # < 0 (mirror image)
    return torch.where(b > 0.5, z1, z0)


def _conditional(logits: Tensor, b: Tensor, kind: str, generator: torch.Generator | None) -> Tensor:
    if kind == "categorical":
        return conditional_gumbel(logits, b, generator=generator)
    return conditional_logistic(logits, b, generator=generator)


def _soft(logits: Tensor, noise: Tensor, temperature: Tensor | float, kind: str) -> Tensor:
    """sigma_lambda(theta + noise) with the gradient flowing to ``logits``.

    Categorical: the fused sampler of :func:`concrete.gumbel_softmax`, fed ``log E = -G``, so
    the values are bitwise those of ``gumbel_softmax`` on the same draw.
    """
    if kind == "categorical":
        log_e = noise.neg().contiguous()  # overwritten by the sampler
        if isinstance(temperature, Tensor):
            lam = temperature.reshape(1) if temperature.dim() == 0 else temperature.unsqueeze(-1)
            return _ConcreteSampler.apply(logits, lam, log_e, None, True, False)[0]
        return _ConcreteSampler.apply(logits, None, log_e, float(temperature), True, False)[0]
    return torch.sigmoid((logits + noise) / temperature)


def _temperature(temperature: float | Tensor, like: Tensor) -> float | Tensor:
    lam = validate_temperature(temperature, dtype=like.dtype, device=like.device)
    if lam.dim() > 0:
        raise ValueError(
            f"temperature must be a number or a 0-dim Tensor here, got shape {tuple(lam.shape)}"
        )
    return lam if isinstance(temperature, Tensor) else float(temperature)


# -- exact gradient by enumeration ----------------------------------------------------------------


def exact_expectation(logits: Tensor, f: F, *, kind: Kind = "categorical") -> Tensor:
    r"""The exact :math:`\mathbb{E}_{b \sim p_\theta}[f(b)]` by enumerating every configuration.

    .. math::

        J_i(\theta) = \sum_{c} p_\theta(c)\, f(c)_i, \qquad
        p_\theta(c) = \prod_{j \in \text{event}} p_\theta(c_j),

    over the :math:`n^M` (categorical) or :math:`2^M` (Bernoulli) joint configurations
    :math:`c` of the :math:`M` variables of one event (``batch[d:]``, see the module docstring;
    one probe call of ``f`` finds ``d``). Differentiable in ``logits`` and in ``f``'s
    parameters: ``exact_expectation(...).sum().backward()`` is the exact gradient.

    Args:
        logits: ``(*batch, n)`` or ``(*batch)``.
        f: ``(C, *batch, [n]) -> (C, *batch[:d])``.
        kind: ``"categorical"`` or ``"bernoulli"``.

    Returns:
        ``(*batch[:d])``.

    Raises:
        ValueError: if there are more than ``MAX_CONFIGURATIONS`` (65 536) configurations.
    """
    kind = _check_kind(kind)
    logits = _check_logits(logits, kind)
    _check_f(f)
    batch = _batch_shape(logits, kind)
    probe = torch.zeros((1, *logits.shape), dtype=logits.dtype, device=logits.device)
    if kind == "categorical":
        probe[..., 0] = 1.0
    _, d = _call_f(f, probe, batch)
    prefix, event = batch[:d], batch[d:]
    m = math.prod(event)
    n = logits.shape[-1] if kind == "categorical" else 2
    if n**m > MAX_CONFIGURATIONS:
        raise ValueError(
            f"exact enumeration needs n**M = {n}**{m} configurations (event shape "
            f"{tuple(event)}), more than MAX_CONFIGURATIONS={MAX_CONFIGURATIONS}"
        )
    c = n**m
    codes = torch.arange(c, device=logits.device)
    digits = torch.stack([(codes // n**j) % n for j in range(m)], -1)  # (C, M)
    view = (c,) + (1,) * len(prefix) + tuple(event)
    if kind == "categorical":
        b = nn.functional.one_hot(digits, n).to(logits.dtype).reshape(view + (n,))
        b = b.expand((c, *batch, n))
    else:
        b = digits.to(logits.dtype).reshape(view).expand((c, *batch))
    fb, _ = _call_f(f, b, batch)
    lp = _event_sum(log_prob(logits, b, kind=kind), d)
    return (lp.exp() * fb).sum(0)


def exact_gradient(logits: Tensor, f: F, *, kind: Kind = "categorical") -> Tensor:
    r"""The exact :math:`\nabla_\theta \sum_i J_i(\theta)` (enumeration + autograd).

    Args:
        logits: ``(*batch, n)`` or ``(*batch)``.
        f: as in :func:`exact_expectation`.
        kind: ``"categorical"`` or ``"bernoulli"``.

    Returns:
        Tensor shaped like ``logits`` (detached).
    """
    leaf = _check_logits(logits, _check_kind(kind)).detach().requires_grad_()
    with torch.enable_grad():
        (g,) = torch.autograd.grad(exact_expectation(leaf, f, kind=kind).sum(), leaf)
    return g


def exact(logits: Tensor, f: F, *, kind: Kind = "categorical", **_: object) -> Tensor:
    r"""Surrogate of the exact gradient: :math:`S = \sum_i J_i(\theta)` by enumeration.

    The reference every other estimator is tested against; extra keyword arguments
    (``samples``, ``generator``, ...) are accepted and ignored so that it runs in the same
    loops as the estimators.
    """
    return exact_expectation(logits, f, kind=kind).sum()


# -- score function (REINFORCE) --------------------------------------------------------------------


class EMABaseline:
    r"""Exponential-moving-average baseline :math:`\bar f \leftarrow \beta\bar f + (1-\beta)\hat f`.

    Holds one scalar, the running mean of :math:`f(b)` over samples and output elements.
    :func:`score_function` reads :attr:`value` *before* the current samples update it, so the
    baseline never depends on the samples it multiplies and the estimator stays unbiased.
    The first call uses no baseline (:attr:`value` is ``None``) and initialises it.

    Args:
        decay: :math:`\beta \in [0, 1)`.
    """

    def __init__(self, decay: float = 0.9) -> None:
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 <= decay < 1:
            raise ValueError(f"decay must be a number in [0, 1), got decay={decay!r}")
        self.decay = float(decay)
        self.value: Tensor | None = None

    def update(self, mean: Tensor) -> None:
        """Fold in the mean of the current values (a scalar tensor; detached)."""
        mean = mean.detach()
        if self.value is None:
            self.value = mean.clone()
        else:
            self.value = self.decay * self.value + (1 - self.decay) * mean

    def __repr__(self) -> str:
        return f"EMABaseline(decay={self.decay}, value={self.value})"


def score_function(
    logits: Tensor,
    f: F,
    *,
    kind: Kind = "categorical",
    samples: int = 1,
    baseline: str | EMABaseline | Tensor | float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""REINFORCE / score-function estimator (Williams 1992), optionally with a baseline.

    .. math::

        \hat g = \frac1K\sum_{k=1}^K \big(f(b_k) - c_k\big)\,\nabla_\theta \log p_\theta(b_k),
        \qquad b_k \sim p_\theta \text{ i.i.d.},

    with the baseline :math:`c_k`:

    * ``None`` / ``"none"``: :math:`c_k = 0`;
    * an :class:`EMABaseline`: its running mean (updated after use);
    * a number or a Tensor broadcastable to ``(K, *batch[:d])``: a constant (must not depend
      on the samples; detached);
    * ``"loo"``: the leave-one-out mean :math:`c_k = \frac{1}{K-1}\sum_{j\ne k} f(b_j)`
      (RLOO, Kool et al. 2019), which needs :math:`K \ge 2`; equivalently
      :math:`\hat g = \frac{1}{K-1}\sum_k (f(b_k) - \bar f)\nabla\log p_\theta(b_k)`.

    All are unbiased (the baseline is independent of the sample it multiplies). ``f`` may be a
    black box: it is never differentiated with respect to :math:`b`.

    Surrogate: :math:`S = \frac1K\sum_k \big[f(b_k) + \operatorname{sg}(f(b_k) - c_k)
    (\log p_\theta(b_k) - \operatorname{sg}\log p_\theta(b_k))\big]` summed over output elements
    (``sg`` = stop-gradient): value :math:`\frac1K\sum_k f(b_k)`, gradient :math:`\hat g` in
    ``logits`` and :math:`\frac1K\sum_k\nabla f(b_k)` in ``f``'s parameters.

    Args:
        logits: ``(*batch, n)`` or ``(*batch)``.
        f: ``(K, *batch, [n]) -> (K, *batch[:d])``.
        kind: ``"categorical"`` or ``"bernoulli"``.
        samples: :math:`K`.
        baseline: see above.
        generator: optional ``torch.Generator``.

    Returns:
        The surrogate scalar.
    """
    kind = _check_kind(kind)
    logits = _check_logits(logits, kind)
    _check_f(f)
    k = _check_samples(samples)
    loo = isinstance(baseline, str) and baseline == "loo"
    if isinstance(baseline, str) and baseline not in ("none", "loo"):
        raise ValueError(
            f"baseline must be None, 'none', 'loo', an EMABaseline, a number or a Tensor, got "
            f"baseline={baseline!r}"
        )
    if loo and k < 2:
        raise ValueError(f"samples must be >= 2 with baseline='loo', got samples={samples!r}")
    batch = _batch_shape(logits, kind)
    b = sample(logits, k, kind=kind, generator=generator)
    fb, d = _call_f(f, b, batch)
    fd = fb.detach()
    if loo:
        c = (fd.sum(0, keepdim=True) - fd) / (k - 1)
    elif isinstance(baseline, EMABaseline):
        c = 0.0 if baseline.value is None else baseline.value.to(fd)
        baseline.update(fd.mean())
    elif isinstance(baseline, (Tensor, int, float)) and not isinstance(baseline, bool):
        c = torch.as_tensor(baseline, dtype=fd.dtype, device=fd.device).detach()
        _check_finite("baseline", c)
    elif baseline is None or baseline == "none":
        c = 0.0
    else:
        raise ValueError(
            f"baseline must be None, 'none', 'loo', an EMABaseline, a number or a Tensor, got "
            f"baseline={baseline!r}"
        )
    lp = _event_sum(log_prob(logits, b, kind=kind), d)
    return _mc(fb + (fd - c) * (lp - lp.detach()))


# -- straight-through and Gumbel-Softmax -----------------------------------------------------------


def straight_through(
    logits: Tensor,
    f: F,
    *,
    kind: Kind = "categorical",
    samples: int = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Straight-through estimator (Bengio et al. 2013): forward the sample, backward the mean.

    .. math::

        \hat g = \frac1K\sum_k \Big(\frac{\partial \mu_\theta}{\partial\theta}\Big)^{\!\top}
        \nabla_b f(b_k), \qquad \mu_\theta = \mathbb{E}[b] = \operatorname{softmax}(\theta)
        \text{ or } \sigma(\theta),

    i.e. ``f`` is evaluated at the exact sample :math:`b_k` and differentiated as if
    :math:`b_k` were :math:`\mu_\theta`. Biased unless ``f`` is linear; ``f`` must be
    differentiable in ``b``. Surrogate: :math:`\frac1K\sum_k f(b_k)` built on
    :math:`b_k` with that straight-through gradient.

    Args:
        logits: ``(*batch, n)`` or ``(*batch)``.
        f: differentiable ``(K, *batch, [n]) -> (K, *batch[:d])``.
        kind: ``"categorical"`` or ``"bernoulli"``.
        samples: :math:`K`.
        generator: optional ``torch.Generator``.

    Returns:
        The surrogate scalar.
    """
    kind = _check_kind(kind)
    logits = _check_logits(logits, kind)
    _check_f(f)
    k = _check_samples(samples)
    b = sample(logits, k, kind=kind, generator=generator)
    mean = torch.softmax(logits, -1) if kind == "categorical" else torch.sigmoid(logits)
    b_st = _StraightThrough.apply(mean.expand_as(b), b)
    fb, _ = _call_f(f, b_st, _batch_shape(logits, kind))
    return _mc(fb)


def gumbel_softmax_estimator(
    logits: Tensor,
    f: F,
    *,
    temperature: float | Tensor = 1.0,
    kind: Kind = "categorical",
    samples: int = 1,
    hard: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Gumbel-Softmax / Concrete estimator (Jang et al. 2017; Maddison et al. 2017).

    .. math::

        \hat g = \frac1K\sum_k \nabla_\theta f\big(\sigma_\lambda(\theta + G_k)\big),

    the reparameterisation gradient of the *relaxed* objective
    :math:`\mathbb{E}[f(\sigma_\lambda(\theta + G))]`, biased for the discrete one; the bias
    vanishes as :math:`\lambda \to 0` (while the variance grows). ``f`` is evaluated at relaxed
    samples, so it must accept points of the simplex (or of :math:`(0, 1)`) and be
    differentiable. With ``hard=True`` this is :func:`st_gumbel_softmax`. Categorical samples
    come from :func:`concrete.gumbel_softmax` (same noise for the same generator state).

    Args:
        logits: ``(*batch, n)`` or ``(*batch)``.
        f: differentiable ``(K, *batch, [n]) -> (K, *batch[:d])``.
        temperature: :math:`\lambda > 0` (a number or a 0-dim Tensor, which then gets a
            gradient too).
        kind: ``"categorical"`` or ``"bernoulli"`` (binary Concrete
            :math:`\sigma((\theta + L)/\lambda)`, :math:`L` logistic).
        samples: :math:`K`.
        hard: forward the discrete :math:`H(z)`, backward through the relaxed sample.
        generator: optional ``torch.Generator``.

    Returns:
        The surrogate scalar :math:`\frac1K\sum_k f(\cdot)` summed over output elements.
    """
    kind = _check_kind(kind)
    logits = _check_logits(logits, kind)
    _check_f(f)
    k = _check_samples(samples)
    lam = _temperature(temperature, logits)
    batch = _batch_shape(logits, kind)
    if kind == "categorical":
        x = gumbel_softmax(logits.expand(k, *logits.shape), lam, hard=hard, generator=generator)
    else:
        noise = _noise(logits, k, kind, generator)
        x = _soft(logits, noise, lam, kind)
        if hard:
            x = _StraightThrough.apply(x, _hard(logits.detach() + noise, kind))
    fx, _ = _call_f(f, x, batch)
    return _mc(fx)


def st_gumbel_softmax(
    logits: Tensor,
    f: F,
    *,
    temperature: float | Tensor = 1.0,
    kind: Kind = "categorical",
    samples: int = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Straight-through Gumbel-Softmax (Jang et al. 2017): forward :math:`b = H(z)`.

    .. math::

        \hat g = \frac1K\sum_k \Big(\frac{\partial \sigma_\lambda(\theta + G_k)}{\partial\theta}
        \Big)^{\!\top} \nabla_b f(b_k), \qquad b_k = H(\theta + G_k).

    ``f`` sees exact discrete samples; biased. Same arguments as
    :func:`gumbel_softmax_estimator` (with ``hard=True``).
    """
    return gumbel_softmax_estimator(
        logits,
        f,
        temperature=temperature,
        kind=kind,
        samples=samples,
        hard=True,
        generator=generator,
    )


def gumbel_rao(
    logits: Tensor,
    f: F,
    *,
    temperature: float | Tensor = 1.0,
    rao_samples: int = 10,
    kind: Kind = "categorical",
    samples: int = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Gumbel-Rao Monte Carlo (Paulus, Maddison & Krause 2021): ST-GS Rao-Blackwellised.

    For each discrete sample :math:`b = H(z)`, :math:`z = \theta + G`, average the ST-GS
    Jacobian over :math:`R` perturbations :math:`z^{(r)} \sim p(z \mid b)`
    (:func:`conditional_gumbel` / :func:`conditional_logistic`):

    .. math::

        \hat g = \Big(\frac{\partial}{\partial\theta}\frac1R\sum_{r=1}^R
        \sigma_\lambda\big(z^{(r)}\big)\Big)^{\!\top} \nabla_b f(b)
        \;\approx\; \mathbb{E}\big[\hat g_{\text{ST-GS}} \mid b\big].

    The first perturbation is the unconditional :math:`z` that produced :math:`b` itself (a
    draw from :math:`p(z\mid b)`), the other :math:`R-1` are fresh conditional draws; so with
    ``rao_samples=1`` this *is* :func:`st_gumbel_softmax` on the same noise (same generator
    state, identical values), and its variance can only fall as :math:`R` grows. ``f`` is
    evaluated once per discrete sample (the :math:`R` relaxed samples are averaged before ``f``
    is differentiated, which is exact because :math:`\nabla_b f` is taken at :math:`b`).

    Args:
        logits: ``(*batch, n)`` or ``(*batch)``.
        f: differentiable ``(K, *batch, [n]) -> (K, *batch[:d])``.
        temperature: :math:`\lambda > 0`.
        rao_samples: :math:`R \ge 1` conditional perturbations per discrete sample.
        kind: ``"categorical"`` or ``"bernoulli"``.
        samples: :math:`K` discrete samples (averaged).
        generator: optional ``torch.Generator``.

    Returns:
        The surrogate scalar :math:`\frac1K\sum_k f(b_k)` with the gradient above.
    """
    kind = _check_kind(kind)
    logits = _check_logits(logits, kind)
    _check_f(f)
    k = _check_samples(samples)
    r = _check_samples(rao_samples, "rao_samples")
    lam = _temperature(temperature, logits)
    batch = _batch_shape(logits, kind)
    theta = logits.detach()
    noise = _noise(logits, k, kind, generator)
    soft = _soft(logits, noise, lam, kind)  # (K, *shape)
    if kind == "categorical":
        b = _one_hot_argmax(soft.detach())  # as gumbel_softmax(hard=True) picks it
    else:
        b = _hard(theta + noise, kind)
    if r > 1:
        zc = _conditional(theta, b.expand(r - 1, *b.shape), kind, generator)
        soft_c = _soft(logits, zc - theta, lam, kind)  # (R-1, K, *shape)
        soft = (soft + soft_c.sum(0)) / r
    fb, _ = _call_f(f, _StraightThrough.apply(soft, b), batch)
    return _mc(fb)


# -- REBAR and RELAX -------------------------------------------------------------------------------


class RelaxControl(nn.Module):
    r"""The control variate of REBAR / RELAX: :math:`c(z) = \eta\, f(\sigma_\lambda(z)) + r(z)`.

    REBAR (Tucker et al. 2017) is :math:`r = 0`; its :math:`\eta` and :math:`\lambda` tuned
    online to minimise the estimator's variance is :func:`relax` with this control and
    ``net=None``. RELAX (Grathwohl et al. 2018, §3.3 and their discrete experiments) adds a
    free-form network :math:`r_\rho(z)`. Parameters: :math:`\log\lambda` and :math:`\eta`
    (each learned unless ``learn_temperature`` / ``learn_eta`` is false) and those of ``net``.
    ``f`` is *not* registered as a submodule: the variance objective never trains ``f``'s own
    parameters.

    Args:
        f: the function of the estimator (called at relaxed samples; must accept them).
        net: optional module ``(K, *batch, [n]) -> (K, *batch[:d])`` taking :math:`z`.
        kind: ``"categorical"`` or ``"bernoulli"``.
        temperature: initial :math:`\lambda > 0` (REBAR's experiments start at 0.5).
        eta: initial :math:`\eta` (1 in REBAR).
        learn_temperature: make :math:`\log\lambda` a parameter.
        learn_eta: make :math:`\eta` a parameter.

    Call: ``control(z) -> (K, *batch[:d])`` for perturbed logits ``z`` ``(K, *logits.shape)``.
    """

    def __init__(
        self,
        f: F,
        net: nn.Module | None = None,
        *,
        kind: Kind = "categorical",
        temperature: float = 0.5,
        eta: float = 1.0,
        learn_temperature: bool = True,
        learn_eta: bool = True,
    ) -> None:
        super().__init__()
        _check_f(f)
        self.kind = _check_kind(kind)
        lam = float(validate_temperature(temperature))
        if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not math.isfinite(eta):
            raise ValueError(f"eta must be a finite number, got eta={eta!r}")
        object.__setattr__(self, "f", f)  # not a submodule
        log_lam = torch.tensor(math.log(lam))
        eta_t = torch.tensor(float(eta))
        if learn_temperature:
            self.log_temperature = nn.Parameter(log_lam)
        else:
            self.register_buffer("log_temperature", log_lam)
        if learn_eta:
            self.eta = nn.Parameter(eta_t)
        else:
            self.register_buffer("eta", eta_t)
        self.net = net

    @property
    def temperature(self) -> Tensor:
        """:math:`\\lambda = e^{\\log\\lambda}`."""
        return self.log_temperature.exp()

    def forward(self, z: Tensor) -> Tensor:  # noqa: D102
        lam = self.log_temperature.to(z.dtype).exp()
        x = torch.softmax(z / lam, -1) if self.kind == "categorical" else torch.sigmoid(z / lam)
        out = self.eta.to(z.dtype) * self.f(x)
        if self.net is not None:
            out = out + self.net(z)
        return out


def _control_estimate(
    logits: Tensor,
    f: F,
    control: Callable[[Tensor], Tensor],
    kind: str,
    samples: int,
    generator: torch.Generator | None,
    create_graph: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """(estimate w.r.t. ``theta``, f(b) with its graph, theta) for REBAR/RELAX."""
    theta = logits if logits.requires_grad else logits.detach().requires_grad_()
    batch = _batch_shape(theta, kind)
    noise = _noise(theta, samples, kind, generator)
    b = _hard(theta.detach() + noise, kind)
    z = theta + noise  # reparameterised: dz/dtheta = 1
    z_cond = _conditional(theta, b, kind, generator)
    fb, d = _call_f(f, b, batch)
    c_z, _ = _call_f(control, z, batch, name="control")
    c_cond, _ = _call_f(control, z_cond, batch, name="control")
    if c_z.shape != fb.shape:
        raise ValueError(
            f"control must return the shape of f(b), {tuple(fb.shape)}, got {tuple(c_z.shape)}"
        )
    # score term, grad log p(b) = b - E[b] in closed form, so that the weight f(b) - c(z~)
    # keeps its graph to the control's parameters (RELAX differentiates the estimate in them)
    weight = _expand_event(fb.detach() - c_cond, len(batch))
    mean = torch.softmax(theta, -1) if kind == "categorical" else torch.sigmoid(theta)
    if kind == "categorical":
        weight = weight.unsqueeze(-1)
    score = (weight * (b - mean.detach())).mean(0)
    with torch.enable_grad():
        (reparam,) = torch.autograd.grad(
            (c_z - c_cond).mean(0).sum(), theta, create_graph=create_graph
        )
    g = score + reparam
    return g, fb, theta


def rebar(
    logits: Tensor,
    f: F,
    *,
    temperature: float | Tensor = 0.5,
    eta: float | Tensor = 1.0,
    kind: Kind = "categorical",
    samples: int = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""REBAR (Tucker et al. 2017): REINFORCE with the relaxation as a control variate.

    With :math:`z = \theta + G`, :math:`b = H(z)`, :math:`\tilde z \sim p(z \mid b)`
    (:func:`conditional_gumbel` / :func:`conditional_logistic`, reparameterised in
    :math:`\theta`) and :math:`c(z) = \eta f(\sigma_\lambda(z))`:

    .. math::

        \hat g = \big[f(b) - c(\tilde z)\big]\nabla_\theta\log p_\theta(b)
        + \nabla_\theta c(z) - \nabla_\theta c(\tilde z),

    averaged over :math:`K` samples. Unbiased for any :math:`\eta, \lambda`:
    :math:`\mathbb{E}[c(\tilde z)\nabla\log p(b) + \nabla c(\tilde z)] = \nabla\mathbb{E}[c(z)]`.
    ``f`` is evaluated at :math:`b` and at two relaxed points (it must accept both and be
    differentiable at the relaxed ones). For :math:`\eta, \lambda` learned to minimise the
    variance use :func:`relax` with :class:`RelaxControl`.

    Surrogate: value :math:`\frac1K\sum_k f(b_k)`; gradient :math:`\hat g` in ``logits`` and
    :math:`\frac1K\sum_k \nabla f(b_k)` in ``f``'s parameters (the control-variate terms
    reach ``logits`` only).

    Args:
        logits: ``(*batch, n)`` or ``(*batch)``.
        f: ``(K, *batch, [n]) -> (K, *batch[:d])``.
        temperature: :math:`\lambda > 0` of the control variate.
        eta: scale :math:`\eta` of the control variate.
        kind: ``"categorical"`` or ``"bernoulli"``.
        samples: :math:`K`.
        generator: optional ``torch.Generator``.

    Returns:
        The surrogate scalar.
    """
    kind = _check_kind(kind)
    logits = _check_logits(logits, kind)
    _check_f(f)
    k = _check_samples(samples)
    lam = _temperature(temperature, logits)
    eta_t = torch.as_tensor(eta, dtype=logits.dtype, device=logits.device)
    _check_finite("eta", eta_t)

    def control(z: Tensor) -> Tensor:
        return eta_t * f(relaxed_sample(z, lam, kind=kind))

    g, fb, _ = _control_estimate(logits, f, control, kind, k, generator, create_graph=False)
    return _mc(fb) + _inject(g, logits)


def relax(
    logits: Tensor,
    f: F,
    control: nn.Module,
    *,
    kind: Kind = "categorical",
    samples: int = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""RELAX (Grathwohl et al. 2018): a learned control variate :math:`c_\phi(z)`.

    .. math::

        \hat g = \big[f(b) - c_\phi(\tilde z)\big]\nabla_\theta\log p_\theta(b)
        + \nabla_\theta c_\phi(z) - \nabla_\theta c_\phi(\tilde z),

    with :math:`z, b, \tilde z` as in :func:`rebar`; unbiased for every :math:`\phi`, so
    :math:`\phi` is trained to minimise the variance,
    :math:`\nabla_\phi \operatorname{Var}[\hat g] = \nabla_\phi \mathbb{E}\|\hat g\|^2`
    (the mean does not depend on :math:`\phi`), estimated by :math:`\nabla_\phi\|\hat g\|^2`
    on the same samples, with :math:`\hat g` the gradient with respect to ``logits`` (a
    single-sample estimate of the variance of the encoder's gradient when ``logits`` come from
    an encoder).

    Surrogate: value :math:`\frac1K\sum_k f(b_k)`; ``backward()`` puts :math:`\hat g` into
    ``logits``, :math:`\frac1K\sum_k\nabla f(b_k)` into ``f``'s parameters, and
    :math:`\nabla_\phi\|\hat g\|^2` into the ``control``'s parameters, so one optimiser
    *minimising* the surrogate descends :math:`J` and the variance together.

    Args:
        logits: ``(*batch, n)`` or ``(*batch)``.
        f: ``(K, *batch, [n]) -> (K, *batch[:d])`` (black box allowed: it is only evaluated
            at discrete samples here; the control must be differentiable).
        control: a ``torch.nn.Module`` ``z (K, *logits.shape) -> (K, *batch[:d])``, e.g.
            :class:`RelaxControl`.
        kind: ``"categorical"`` or ``"bernoulli"``.
        samples: :math:`K`.
        generator: optional ``torch.Generator``.

    Returns:
        The surrogate scalar.
    """
    kind = _check_kind(kind)
    logits = _check_logits(logits, kind)
    _check_f(f)
    if not isinstance(control, nn.Module):
        raise ValueError(f"control must be a torch.nn.Module, got control={control!r}")
    k = _check_samples(samples)
    g, fb, _ = _control_estimate(logits, f, control, kind, k, generator, create_graph=True)
    surrogate = _mc(fb) + _inject(g, logits)
    params = [p for p in control.parameters() if p.requires_grad]
    if params:
        var = (g**2).sum()
        grads = torch.autograd.grad(var, params, allow_unused=True)
        for p, gp in zip(params, grads, strict=True):
            if gp is not None:
                surrogate = surrogate + _inject(gp, p)
    return surrogate


# -- ARM and DisARM (Bernoulli) -------------------------------------------------------------------


def _antithetic(
    logits: Tensor, f: F, kind: str, samples: int, generator: torch.Generator | None, name: str
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, int]:
    if _check_kind(kind) != "bernoulli":
        raise ValueError(f"{name} is for Bernoulli variables only, got kind={kind!r}")
    logits = _check_logits(logits, kind)
    _check_f(f)
    k = _check_samples(samples)
    theta = logits.detach()
    u = _uniform((k, *theta.shape), dtype=theta.dtype, device=theta.device, generator=generator)
    return logits, theta, u, torch.sigmoid(theta), torch.sigmoid(-theta), k


def arm(
    logits: Tensor,
    f: F,
    *,
    kind: Kind = "bernoulli",
    samples: int = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""ARM, Augment-REINFORCE-Merge (Yin & Zhou 2019), for Bernoulli logits.

    With :math:`U \sim \mathcal U(0,1)^M` (one uniform per variable) and the antithetic pair
    :math:`b^{(1)} = \mathbb{1}[U > \sigma(-\theta)]`,
    :math:`b^{(2)} = \mathbb{1}[U < \sigma(\theta)]`
    (each marginally :math:`\mathrm{Bernoulli}(\sigma(\theta))`):

    .. math::

        \hat g_j = \big(f(b^{(1)}) - f(b^{(2)})\big)\big(U_j - \tfrac12\big),

    averaged over :math:`K` independent pairs. Unbiased; ``f`` is a black box (two
    evaluations per sample, done in one call of ``f`` on ``2K`` stacked samples).

    Surrogate: value :math:`\frac1{2K}\sum_k [f(b_k^{(1)}) + f(b_k^{(2)})]` (with its gradient
    in ``f``'s parameters), gradient :math:`\hat g` in ``logits``.

    Args:
        logits: ``(*batch)`` Bernoulli logits.
        f: ``(2K, *batch) -> (2K, *batch[:d])``.
        kind: must be ``"bernoulli"``.
        samples: :math:`K` pairs.
        generator: optional ``torch.Generator``.

    Returns:
        The surrogate scalar.
    """
    logits, theta, u, p, q, k = _antithetic(logits, f, kind, samples, generator, "arm")
    b1, b2 = (u > q).to(theta.dtype), (u < p).to(theta.dtype)
    fb, _ = _call_f(f, torch.cat([b1, b2]), theta.shape)
    f1, f2 = fb[:k], fb[k:]
    diff = _expand_event((f1 - f2).detach(), theta.dim())
    g = (diff * (u - 0.5)).mean(0)
    return _mc(fb) + _inject(g, logits)


def disarm(
    logits: Tensor,
    f: F,
    *,
    kind: Kind = "bernoulli",
    samples: int = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""DisARM (Dong, Mnih & Tucker 2020): ARM with the augmentation integrated out.

    With :math:`b = \mathbb{1}[U < \sigma(\theta)]` and :math:`\tilde b = \mathbb{1}[1 - U <
    \sigma(\theta)]` (antithetic, each :math:`\mathrm{Bernoulli}(\sigma(\theta))`):

    .. math::

        \hat g_j = \tfrac12\big(f(b) - f(\tilde b)\big)\,(-1)^{\tilde b_j}\,
        \mathbb{1}[b_j \ne \tilde b_j]\,\sigma(|\theta_j|),

    averaged over :math:`K` pairs. It is :math:`\mathbb{E}[\hat g_{\text{ARM}} \mid b, \tilde b]`,
    so unbiased and never of higher variance than :func:`arm`. ``f`` is a black box.

    Args and surrogate: as in :func:`arm`.
    """
    logits, theta, u, p, _, k = _antithetic(logits, f, kind, samples, generator, "disarm")
    b, bt = (u < p).to(theta.dtype), (1 - u < p).to(theta.dtype)
    fb, _ = _call_f(f, torch.cat([b, bt]), theta.shape)
    diff = _expand_event((fb[:k] - fb[k:]).detach(), theta.dim())
    sign = 1 - 2 * bt
    g = (0.5 * diff * sign * (b != bt).to(theta.dtype) * torch.sigmoid(theta.abs())).mean(0)
    return _mc(fb) + _inject(g, logits)


# -- NVIL and VIMCO learning signals --------------------------------------------------------------


class NVIL(nn.Module):
    r"""NVIL's learning signal (Mnih & Gregor 2014, §3 and Algorithm 1).

    For a per-example learning signal :math:`l = \log p(x, h) - \log q(h \mid x)` (``(B,)``,
    one discrete sample :math:`h \sim q(\cdot\mid x)` per example):

    .. math::

        l_c = l - C_\psi(x), \qquad
        c \leftarrow \alpha c + (1-\alpha)\,\overline{l_c}, \quad
        v \leftarrow \alpha v + (1-\alpha)\operatorname{Var}(l_c), \qquad
        \hat l = \frac{l_c - c}{\max(1, \sqrt v)},

    with :math:`C_\psi` an input-dependent learned baseline (``baseline``; optional),
    :math:`c, v` running moments over batches (:math:`\alpha = 0.8` in the paper; starting at
    :math:`c = 0`, :math:`v = 1`; updated only in training mode) and the variance normalisation
    optional. The gradients are :math:`\nabla_{\text{model}}\log p(x,h)`,
    :math:`\hat l\,\nabla_{\text{enc}}\log q(h\mid x)` and :math:`\hat l\,\nabla_\psi C_\psi(x)`
    (the baseline regresses onto the signal), all ascent directions.

    Args:
        baseline: module ``x (B, ...) -> (B,)`` or ``(B, 1)``; ``None``: no input-dependent part.
        decay: :math:`\alpha \in [0, 1)`.
        normalise: divide by :math:`\max(1, \sqrt v)`.
    """

    def __init__(
        self, baseline: nn.Module | None = None, *, decay: float = 0.8, normalise: bool = True
    ) -> None:
        super().__init__()
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 <= decay < 1:
            raise ValueError(f"decay must be a number in [0, 1), got decay={decay!r}")
        self.baseline = baseline
        self.decay = float(decay)
        self.normalise = bool(normalise)
        self.register_buffer("running_mean", torch.tensor(0.0))
        self.register_buffer("running_var", torch.tensor(1.0))

    def _baseline(self, x: Tensor | None, like: Tensor) -> Tensor:
        if self.baseline is None:
            return torch.zeros_like(like)
        if x is None:
            raise ValueError("x is required when NVIL has an input-dependent baseline, got x=None")
        c = self.baseline(x)
        if c.dim() == like.dim() + 1 and c.shape[-1] == 1:
            c = c.squeeze(-1)
        if c.shape != like.shape:
            raise ValueError(
                f"baseline(x) must have shape {tuple(like.shape)} (or with a trailing 1), got "
                f"{tuple(c.shape)}"
            )
        return c

    def learning_signal(self, signal: Tensor, x: Tensor | None = None) -> tuple[Tensor, Tensor]:
        r"""Centred and normalised signal :math:`\hat l` (detached) and :math:`C_\psi(x)`.

        Args:
            signal: :math:`l`, ``(B,)`` (detached here).
            x: the inputs of the baseline network.

        Returns:
            ``(l_hat, C)``: both ``(B,)``; ``C`` keeps its graph to :math:`\psi`.
        """
        if not isinstance(signal, Tensor) or signal.dim() != 1:
            raise ValueError(f"signal must be a 1-dim tensor (B,), got signal={signal!r}")
        _check_finite("signal", signal)
        l_val = signal.detach()
        c = self._baseline(x, l_val)
        lc = l_val - c.detach()
        if self.training:
            a = self.decay
            self.running_mean.mul_(a).add_((1 - a) * lc.mean().to(self.running_mean))
            var = lc.var(unbiased=False) if lc.numel() > 1 else torch.zeros(())
            self.running_var.mul_(a).add_((1 - a) * var.to(self.running_var))
        l_hat = lc - self.running_mean.to(lc)
        if self.normalise:
            l_hat = l_hat / self.running_var.to(lc).sqrt().clamp_min(1.0)
        return l_hat, c

    def surrogate(self, log_p: Tensor, log_q: Tensor, x: Tensor | None = None) -> Tensor:
        r"""Scalar to *maximise*: value :math:`\sum_b l_b` (the single-sample ELBO summed).

        Gradient: :math:`\nabla\log p` in the model, :math:`\hat l\,\nabla\log q` in the
        encoder and :math:`\hat l\,\nabla C_\psi` in the baseline (per example, summed).

        Args:
            log_p: :math:`\log p(x, h)`, ``(B,)``, differentiable in the model.
            log_q: :math:`\log q(h\mid x)`, ``(B,)``, differentiable in the encoder.
            x: the baseline's inputs.
        """
        if log_p.shape != log_q.shape or log_p.dim() != 1:
            raise ValueError(
                f"log_p and log_q must both be (B,), got shapes {tuple(log_p.shape)} and "
                f"{tuple(log_q.shape)}"
            )
        l_hat, c = self.learning_signal(log_p.detach() - log_q.detach(), x)
        value = log_p - log_q.detach()
        return (value + l_hat * (log_q - log_q.detach()) + l_hat * (c - c.detach())).sum()


def vimco_learning_signals(log_w: Tensor) -> Tensor:
    r"""VIMCO's per-sample learning signals (Mnih & Rezende 2016, eqs. 9-10).

    For the :math:`K`-sample bound :math:`\hat L = \log\frac1K\sum_k w_k` and the
    leave-one-out bound with :math:`w_k` replaced by the geometric mean of the others,

    .. math::

        \hat L_{-k} = \log\frac1K\Big(\sum_{j\ne k} w_j + \exp\big(\tfrac{1}{K-1}
        \textstyle\sum_{j\ne k}\log w_j\big)\Big),
        \qquad \hat l_k = \hat L - \hat L_{-k},

    computed with ``logsumexp`` over a ``(K, K, *batch)`` table (stable for any
    :math:`\log w`).

    Args:
        log_w: :math:`\log w_k = \log p(x, h_k) - \log q(h_k\mid x)`, ``(K, *batch)``,
            :math:`K \ge 2`.

    Returns:
        ``(K, *batch)``, detached.
    """
    if not isinstance(log_w, Tensor) or log_w.dim() == 0 or not log_w.dtype.is_floating_point:
        raise ValueError(f"log_w must be a floating tensor (K, *batch), got log_w={log_w!r}")
    k = log_w.shape[0]
    if k < 2:
        raise ValueError(
            f"VIMCO needs K >= 2 samples, got log_w of shape {tuple(log_w.shape)} "
            f"(K = log_w.shape[0] = {k})"
        )
    _check_finite("log_w", log_w.detach())
    lw = log_w.detach()
    total = torch.logsumexp(lw, 0) - math.log(k)
    geo = (lw.sum(0, keepdim=True) - lw) / (k - 1)  # (K, *batch): mean of the others' log w
    eye = torch.eye(k, dtype=torch.bool, device=lw.device).reshape((k, k) + (1,) * (lw.dim() - 1))
    table = torch.where(eye, geo.unsqueeze(1), lw.unsqueeze(0))  # [k, j]: log w_j, or geo_k at j=k
    loo = torch.logsumexp(table, 1) - math.log(k)
    return total.unsqueeze(0) - loo


def vimco_surrogate(log_w: Tensor, log_q: Tensor) -> Tensor:
    r"""Scalar to *maximise* whose gradient is VIMCO's estimate of :math:`\nabla\hat L`.

    .. math::

        \nabla \hat L \approx \sum_k \hat l_k\,\nabla\log q(h_k\mid x)
        + \sum_k \tilde w_k \nabla\log w_k, \qquad \tilde w_k = w_k/\textstyle\sum_j w_j,

    (Mnih & Rezende 2016, eq. 8 with the signals of :func:`vimco_learning_signals`). Value:
    :math:`\sum_{\text{batch}}\hat L`.

    Args:
        log_w: ``(K, *batch)``, differentiable in the model and (through :math:`-\log q`) the
            encoder.
        log_q: ``(K, *batch)``, :math:`\log q(h_k\mid x)`, differentiable in the encoder.
    """
    if not isinstance(log_q, Tensor) or log_q.shape != getattr(log_w, "shape", None):
        raise ValueError(
            f"log_q must have the shape of log_w, got {tuple(getattr(log_q, 'shape', ()))} and "
            f"{tuple(getattr(log_w, 'shape', ()))}"
        )
    signals = vimco_learning_signals(log_w)
    bound = torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])
    return bound.sum() + (signals * (log_q - log_q.detach())).sum()


# -- registry and the direct estimate -------------------------------------------------------------


def _rloo(logits: Tensor, f: F, **kwargs: object) -> Tensor:
    return score_function(logits, f, baseline="loo", **kwargs)  # type: ignore[arg-type]


_rloo.__doc__ = "RLOO: :func:`score_function` with ``baseline='loo'`` (Kool et al. 2019)."

#: Name -> estimator function ``(logits, f, **kwargs) -> surrogate``.
ESTIMATORS: dict[str, Callable[..., Tensor]] = {
    "exact": exact,
    "reinforce": score_function,
    "rloo": _rloo,
    "straight_through": straight_through,
    "gumbel_softmax": gumbel_softmax_estimator,
    "st_gumbel_softmax": st_gumbel_softmax,
    "gumbel_rao": gumbel_rao,
    "rebar": rebar,
    "relax": relax,
    "arm": arm,
    "disarm": disarm,
}


def estimate_gradient(
    estimator: str | Callable[..., Tensor],
    logits: Tensor,
    f: F,
    *args: object,
    replicates: int | None = None,
    **kwargs: object,
) -> Tensor:
    r"""The gradient estimate itself, :math:`\partial S / \partial\theta` of a surrogate.

    With ``replicates=R``, the logits are copied to a leading dimension of size :math:`R` and
    each copy gets independent noise, so one batched call returns :math:`R` i.i.d. estimates
    ``(R, *logits.shape)`` (for means, variances and tests). ``f`` then receives samples with
    the extra batch dimension, ``(K, R, *batch, [n])``, and must return ``(K, R, ...)``: write
    ``f`` so that it acts on the trailing dimensions and broadcasts over leading ones.
    ``f``'s own parameters are not touched (no ``.grad`` is accumulated anywhere).

    Args:
        estimator: a name in :data:`ESTIMATORS` or an estimator function.
        logits: ``(*batch, n)`` or ``(*batch)``.
        f: the function.
        *args: passed to the estimator after ``f`` (e.g. the ``control`` of :func:`relax`).
        replicates: :math:`R \ge 1`, or ``None`` for one estimate shaped like ``logits``.
        **kwargs: passed to the estimator (``kind``, ``samples``, ``temperature``, ...).

    Returns:
        Tensor shaped like ``logits``, or ``(R, *logits.shape)``; detached.
    """
    if isinstance(estimator, str):
        if estimator not in ESTIMATORS:
            raise ValueError(
                f"estimator must be one of {sorted(ESTIMATORS)} or a function, got "
                f"estimator={estimator!r}"
            )
        estimator = ESTIMATORS[estimator]
    if not callable(estimator):
        raise ValueError(f"estimator must be a name or a function, got estimator={estimator!r}")
    if not isinstance(logits, Tensor):
        raise ValueError(f"logits must be a floating torch.Tensor, got logits={logits!r}")
    theta = logits.detach()
    if replicates is not None:
        r = _check_samples(replicates, "replicates")
        theta = theta.expand(r, *theta.shape)
    leaf = theta.clone().requires_grad_()
    with torch.enable_grad():
        s = estimator(leaf, f, *args, **kwargs)
        (g,) = torch.autograd.grad(s, leaf, allow_unused=True)
    return torch.zeros_like(leaf) if g is None else g.detach()
