r"""KL divergences used by discrete VAEs.

* :func:`relaxed_kl` -- the single-sample Monte Carlo estimate of the KL between two Concrete
  distributions, computed in log space (ExpConcrete) for stability during training;
* :func:`categorical_kl` -- the analytic KL between the categorical distributions the
  Concrete relaxations round to, for the test-time (discrete) bound.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution

from concrete.distributions import Concrete, ExpConcrete
from concrete.gumbel import _check_finite

__all__ = ["relaxed_kl", "categorical_kl"]


def relaxed_kl(q: Distribution, p: Distribution, y: Tensor) -> Tensor:
    r"""Single-sample Monte Carlo estimate of :math:`\mathrm{KL}(q\,\|\,p)` in log space.

    .. math::

        \widehat{\mathrm{KL}}(q\|p) = \log\kappa_q(y) - \log\kappa_p(y), \qquad y \sim q,

    an unbiased estimate of :math:`\mathrm{KL}(q\|p) = \mathbb{E}_{q}[\log q - \log p]`.
    For :class:`ExpConcrete` ``q`` and ``p`` the two densities are taken w.r.t. the same measure
    :math:`d\mu = dy_{-j}/x_j`, so the difference is the log density ratio of the Concrete
    distributions of :math:`x = e^y` (the :math:`-\sum_k y_k` terms cancel): the estimate is the
    same as with :class:`Concrete` but avoids :math:`\log x` of underflowed coordinates.
    Pass ``y`` from ``q.rsample()`` (or the first output of ``q.rsample_and_log_prob()``) so the
    estimate is differentiable by reparameterisation. Any pair of distributions with
    ``log_prob`` works (e.g. :class:`~concrete.LogitBinaryConcrete`).

    Args:
        q: the approximate posterior, e.g. ``ExpConcrete`` with ``batch_shape`` B, ``(n,)`` event.
        p: the prior, same event shape, batch shape broadcastable with ``q``'s.
        y: ``(*s, *B, n)`` sample from ``q`` in q's space (log-simplex for ExpConcrete).

    Returns:
        Tensor of shape ``(*s, *B)`` (the batch shape; sum it over latent variables yourself).
    """
    if not isinstance(q, Distribution) or not isinstance(p, Distribution):
        raise ValueError(
            f"q and p must be torch Distributions, got q={type(q).__name__}, p={type(p).__name__}"
        )
    if isinstance(q, Concrete) != isinstance(p, Concrete) or isinstance(
        q, ExpConcrete
    ) != isinstance(p, ExpConcrete):
        raise ValueError(
            "q and p must live in the same space (both ExpConcrete or both Concrete), got "
            f"q={type(q).__name__}, p={type(p).__name__}"
        )
    if q.event_shape != p.event_shape:
        raise ValueError(
            f"q and p must have the same event_shape, got q.event_shape={tuple(q.event_shape)}, "
            f"p.event_shape={tuple(p.event_shape)}"
        )
    return q.log_prob(y) - p.log_prob(y)


def categorical_kl(q_logits: Tensor, p_logits: Tensor, dim: int = -1) -> Tensor:
    r"""Analytic :math:`\mathrm{KL}(\mathrm{Cat}(\pi_q)\,\|\,\mathrm{Cat}(\pi_p))` from logits.

    .. math::

        \mathrm{KL} = \sum_k \pi_{q,k}\big(\log\pi_{q,k} - \log\pi_{p,k}\big), \qquad
        \pi = \operatorname{softmax}(\ell), \quad \log\pi = \operatorname{log\_softmax}(\ell),

    computed with ``log_softmax`` so classes with :math:`\pi_{q,k}` underflowing to 0 contribute
    exactly 0 (no ``0 * inf``). Logits are unnormalised; they must be finite.

    Args:
        q_logits: ``(..., n, ...)`` logits of q (class dimension ``dim``).
        p_logits: logits of p, broadcastable with ``q_logits``.
        dim: the class dimension.

    Returns:
        Non-negative Tensor with the broadcast shape without ``dim``.
    """
    for name, v in (("q_logits", q_logits), ("p_logits", p_logits)):
        if not isinstance(v, Tensor):
            raise ValueError(f"{name} must be a Tensor, got {name}={v!r}")
        _check_finite(name, v.detach())
    try:
        q_logits, p_logits = torch.broadcast_tensors(q_logits, p_logits)
    except RuntimeError as exc:
        raise ValueError(
            f"q_logits of shape {tuple(q_logits.shape)} and p_logits of shape "
            f"{tuple(p_logits.shape)} do not broadcast"
        ) from exc
    log_q = torch.log_softmax(q_logits, dim)
    log_p = torch.log_softmax(p_logits, dim)
    kl = (log_q.exp() * (log_q - log_p)).sum(dim)
    return kl.clamp_min(0.0)
