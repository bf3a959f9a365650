r"""Test-time bounds on :math:`\log p(x)` for a VAE with *discrete* categorical latents.

However a model was trained (relaxed Concrete samples, Gumbel-Softmax, straight-through), at
test time its latent code is discrete: :math:`z = (z_1, \dots, z_N)`, each :math:`z_n` one of
:math:`K` one-hot vectors, with posterior :math:`q(z\mid x) = \prod_n \mathrm{Cat}(z_n;
\operatorname{softmax}(\ell_n(x)))` and prior :math:`p(z) = \prod_n \mathrm{Cat}(z_n; \pi)`
(uniform :math:`\pi_k = 1/K` unless prior logits are given). Two lower bounds, in nats:

* the **ELBO** (one code per bound, :math:`m = 1`),

  .. math::

      \mathcal{L}(x) = \mathbb{E}_{q(z\mid x)}[\log p(x\mid z)]
                      - \mathrm{KL}\big(q(z\mid x)\,\|\,p(z)\big),

  with the KL exact (analytic, a sum over the :math:`N \cdot K` classes) and the expectation
  estimated by averaging :math:`\log p(x\mid z_j)` over ``samples`` codes :math:`z_j \sim q`
  (more codes only reduce the variance; the expected value is the same);
* the **importance-weighted bound** (Burda et al., 2016) with :math:`k` codes,

  .. math::

      \mathcal{L}_k(x) = \log \frac{1}{k} \sum_{i=1}^{k}
          \frac{p(x\mid z_i)\, p(z)}{q(z_i\mid x)}, \qquad z_i \sim q(z\mid x),

  computed with log-sum-exp. :math:`\mathbb{E}\,\mathcal{L}_1 = \mathcal{L}`,
  :math:`\mathbb{E}\,\mathcal{L}_k` increases with :math:`k` and tends to :math:`\log p(x)`.

For tiny latent spaces :func:`exact_log_px` enumerates all :math:`K^N` codes. The likelihood is
Bernoulli with logits :math:`\eta = \text{decode}(z)`:
:math:`\log p(x\mid z) = \sum_d x_d \eta_d - \operatorname{softplus}(\eta_d)`.

The model enters as two callables, so any implementation works (``concrete.models.DiscreteVAE``
or the plain baseline in ``benchmarks/``):

* ``encode(x)``: ``(B, D)`` → posterior logits ``(B, N, K)``;
* ``decode(z)``: one-hot codes ``(..., N, K)`` → Bernoulli logits ``(..., D)``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "DiscreteBounds",
    "bernoulli_log_likelihood",
    "discrete_elbo",
    "evaluate_discrete",
    "exact_log_px",
    "inactive_units",
    "iw_bound",
    "iw_bounds_by_k",
    "iw_log_weights",
    "sample_codes",
]

Encoder = Callable[[Tensor], Tensor]
Decoder = Callable[[Tensor], Tensor]


def _check_positive_int(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {name}={value!r}")
    return value


def _check_finite(name: str, value: Tensor) -> None:
    if not torch.isfinite(value).all():
        raise ValueError(f"{name} must be finite, got non-finite values in {name}")


def bernoulli_log_likelihood(x_logits: Tensor, x: Tensor) -> Tensor:
    r""":math:`\log p(x\mid\eta) = \sum_d x_d\eta_d - \operatorname{softplus}(\eta_d)`.

    ``x_logits``: ``(..., D)``; ``x``: broadcastable, values in {0, 1} (or [0, 1]). Returns the
    sum over the last dimension, shape ``(...)``. Equal to ``-BCEWithLogits(sum)``.
    """
    return (x * x_logits - F.softplus(x_logits)).sum(-1)


def _prior_log_probs(
    prior_logits: Tensor | None, n_latent: int, n_class: int, like: Tensor
) -> Tensor:
    """Normalised prior log-probabilities, shape (N, K)."""
    if prior_logits is None:
        return like.new_full((n_latent, n_class), -math.log(n_class))
    if prior_logits.shape[-1] != n_class:
        raise ValueError(
            f"prior_logits must end in K={n_class} classes, got shape {tuple(prior_logits.shape)}"
        )
    _check_finite("prior_logits", prior_logits)
    return torch.log_softmax(prior_logits.to(like), -1).expand(n_latent, n_class)


def sample_codes(logits: Tensor, samples: int, generator: torch.Generator | None = None) -> Tensor:
    r"""Discrete codes :math:`z \sim \mathrm{Cat}(\operatorname{softmax}(\ell))` by Gumbel-Max.

    ``logits``: ``(B, N, K)``. Returns class indices, int64 of shape ``(samples, B, N)``:
    :math:`\arg\max_k (\ell_{nk} + G_{nk})`, :math:`G \sim \mathrm{Gumbel}(0, 1)` i.i.d.
    """
    _check_positive_int("samples", samples)
    shape = (samples, *logits.shape)
    u = torch.rand(shape, generator=generator, device=logits.device, dtype=logits.dtype)
    tiny = torch.finfo(logits.dtype).tiny
    e = (-torch.log(u.clamp_min(tiny))).clamp_min(tiny)          # Exp(1) > 0
    g = -torch.log(e)                                             # Gumbel(0, 1)
    return (logits + g).argmax(-1)


def _check_x(x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.dim() != 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must have shape (B, D), got {shape}")


def _check_inputs(x: Tensor, logits: Tensor) -> None:
    if logits.dim() != 3 or logits.shape[0] != x.shape[0]:
        raise ValueError(
            f"encode(x) must return logits of shape (B={x.shape[0]}, N, K), "
            f"got {tuple(logits.shape)}"
        )
    _check_finite("encode(x)", logits)


def _log_terms(
    decode: Decoder, x: Tensor, logits: Tensor, idx: Tensor, log_prior: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """log p(x|z), log p(z), log q(z|x) for codes ``idx`` (S, B, N); each (S, B)."""
    n_class = logits.shape[-1]
    z = F.one_hot(idx, n_class).to(x.dtype)  # (S, B, N, K)
    x_logits = decode(z)  # (S, B, D)
    log_px_z = bernoulli_log_likelihood(x_logits, x)  # (S, B)
    log_q = torch.log_softmax(logits, -1)  # (B, N, K)
    log_qz = log_q.unsqueeze(0).expand(idx.shape[0], -1, -1, -1)
    log_qz = log_qz.gather(-1, idx.unsqueeze(-1)).squeeze(-1).sum(-1)
    log_pz = log_prior.expand(*idx.shape, n_class).gather(-1, idx.unsqueeze(-1))
    return log_px_z, log_pz.squeeze(-1).sum(-1), log_qz


@torch.no_grad()
def discrete_elbo(
    encode: Encoder,
    decode: Decoder,
    x: Tensor,
    *,
    samples: int = 1,
    prior_logits: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""The discrete-latent ELBO of each image, :math:`\hat{\mathcal{L}}(x)` in nats.

    :math:`\hat{\mathcal{L}}(x) = \frac{1}{m}\sum_{j=1}^m \log p(x\mid z_j)
    - \mathrm{KL}(q(z\mid x)\,\|\,p(z))`, :math:`z_j \sim q(z\mid x)`, :math:`m` = ``samples``.

    ``x``: ``(B, D)`` binary images. Returns ``(elbo, rec, kl)``, each of shape ``(B,)``:
    the bound, the averaged reconstruction log-likelihood and the exact KL.
    """
    _check_positive_int("samples", samples)
    _check_x(x)
    logits = encode(x)
    _check_inputs(x, logits)
    n_latent, n_class = logits.shape[-2:]
    log_prior = _prior_log_probs(prior_logits, n_latent, n_class, logits)
    idx = sample_codes(logits, samples, generator)
    z = F.one_hot(idx, n_class).to(x.dtype)
    rec = bernoulli_log_likelihood(decode(z), x).mean(0)
    log_q = torch.log_softmax(logits, -1)
    kl = (log_q.exp() * (log_q - log_prior)).sum((-2, -1)).clamp_min(0.0)
    return rec - kl, rec, kl


@torch.no_grad()
def iw_bound(
    encode: Encoder,
    decode: Decoder,
    x: Tensor,
    k: int,
    *,
    prior_logits: Tensor | None = None,
    generator: torch.Generator | None = None,
    chunk: int = 100,
) -> Tensor:
    r"""Importance-weighted bound :math:`\mathcal{L}_k(x)` of each image, in nats.

    :math:`\mathcal{L}_k = \operatorname{logsumexp}_i\big(\log p(x\mid z_i) + \log p(z_i)
    - \log q(z_i\mid x)\big) - \log k`, :math:`z_i \sim q(z\mid x)` discrete.
    The :math:`k` codes are decoded ``chunk`` at a time (memory ``chunk × B × D``) and combined
    with a running log-sum-exp. ``x``: ``(B, D)``; returns shape ``(B,)``.
    """
    _check_positive_int("k", k)
    _check_positive_int("chunk", chunk)
    _check_x(x)
    logits = encode(x)
    _check_inputs(x, logits)
    n_latent, n_class = logits.shape[-2:]
    log_prior = _prior_log_probs(prior_logits, n_latent, n_class, logits)
    acc = None
    for start in range(0, k, chunk):
        s = min(chunk, k - start)
        idx = sample_codes(logits, s, generator)
        log_px_z, log_pz, log_qz = _log_terms(decode, x, logits, idx, log_prior)
        lw = torch.logsumexp(log_px_z + log_pz - log_qz, 0)
        acc = lw if acc is None else torch.logaddexp(acc, lw)
    return acc - math.log(k)


@torch.no_grad()
def iw_log_weights(
    encode: Encoder,
    decode: Decoder,
    x: Tensor,
    k: int,
    *,
    prior_logits: Tensor | None = None,
    generator: torch.Generator | None = None,
    chunk: int = 100,
) -> Tensor:
    r"""Log importance weights of ``k`` discrete codes per image, shape ``(k, B)``.

    :math:`\log w_i = \log p(x\mid z_i) + \log p(z_i) - \log q(z_i\mid x)`,
    :math:`z_i \sim q(z\mid x)` i.i.d. (Gumbel-Max), decoded ``chunk`` codes at a time.
    :math:`\operatorname{logsumexp}_i \log w_i - \log k` is :func:`iw_bound`;
    :func:`iw_bounds_by_k` turns the weights into :math:`\mathcal{L}_k` for several ``k``.
    ``x``: ``(B, D)``.
    """
    _check_positive_int("k", k)
    _check_positive_int("chunk", chunk)
    _check_x(x)
    logits = encode(x)
    _check_inputs(x, logits)
    n_latent, n_class = logits.shape[-2:]
    log_prior = _prior_log_probs(prior_logits, n_latent, n_class, logits)
    parts = []
    for start in range(0, k, chunk):
        idx = sample_codes(logits, min(chunk, k - start), generator)
        log_px_z, log_pz, log_qz = _log_terms(decode, x, logits, idx, log_prior)
        parts.append(log_px_z + log_pz - log_qz)
    return torch.cat(parts)


def iw_bounds_by_k(log_weights: Tensor, ks: list[int] | tuple[int, ...]) -> Tensor:
    r""":math:`\mathcal{L}_k` for each ``k`` in ``ks`` from ``k_max`` log weights ``(k_max, B)``.

    The ``k_max`` weights (i.i.d. codes, e.g. from :func:`iw_log_weights`) are split into
    :math:`G = k_{\max}/k` disjoint groups of ``k``; each group gives one unbiased draw of
    :math:`\mathcal{L}_k(x)` and the result is their mean,
    :math:`\frac{1}{G}\sum_g \big(\operatorname{logsumexp}_{i \in g} \log w_i - \log k\big)`
    (the same expectation as one draw, lower variance). Every ``k`` must divide ``k_max``.
    Returns shape ``(len(ks), B)``, nats.
    """
    if not isinstance(log_weights, Tensor) or log_weights.dim() != 2:
        shape = tuple(log_weights.shape) if isinstance(log_weights, Tensor) else type(log_weights)
        raise ValueError(f"log_weights must have shape (k_max, B), got {shape}")
    _check_finite("log_weights", log_weights)
    k_max, b = log_weights.shape
    if len(ks) == 0:
        raise ValueError(f"ks must name at least one k, got ks={ks!r}")
    out = []
    for k in ks:
        _check_positive_int("k", k)
        if k_max % k:
            raise ValueError(f"every k must divide k_max={k_max}, got k={k}")
        groups = log_weights.reshape(k_max // k, k, b)
        out.append((torch.logsumexp(groups, 1) - math.log(k)).mean(0))
    return torch.stack(out)


@torch.no_grad()
def exact_log_px(
    decode: Decoder,
    x: Tensor,
    n_latent: int,
    n_class: int,
    *,
    prior_logits: Tensor | None = None,
    max_codes: int = 100_000,
) -> Tensor:
    r"""Exact :math:`\log p(x) = \operatorname{logsumexp}_z (\log p(x\mid z) + \log p(z))`.

    Enumerates all :math:`K^N` codes (refuses more than ``max_codes``). ``x``: ``(B, D)``;
    returns ``(B,)``. For tests and tiny models: the target the importance-weighted bound
    approaches as :math:`k \to \infty`.
    """
    _check_positive_int("n_latent", n_latent)
    _check_positive_int("n_class", n_class)
    n_codes = n_class**n_latent
    if n_codes > max_codes:
        raise ValueError(f"n_class**n_latent = {n_codes} codes exceeds max_codes={max_codes}")
    idx = torch.tensor(
        list(itertools.product(range(n_class), repeat=n_latent)), device=x.device
    )  # (C, N)
    z = F.one_hot(idx, n_class).to(x.dtype)  # (C, N, K)
    log_prior = _prior_log_probs(prior_logits, n_latent, n_class, x)
    log_pz = log_prior.gather(-1, idx.T).sum(0)  # (C,)
    x_logits = decode(z.unsqueeze(1))  # (C, 1, D)
    log_px_z = bernoulli_log_likelihood(x_logits, x.unsqueeze(0))  # (C, B)
    return torch.logsumexp(log_px_z + log_pz.unsqueeze(1), 0)


@dataclass(frozen=True)
class DiscreteBounds:
    """Test-set averages (nats per image) of the discrete-latent bounds.

    ``neg_elbo`` = −mean ELBO, ``neg_log_px`` = −mean :math:`\\mathcal{L}_k` (an upper bound
    on the test NLL), ``rec`` = −mean reconstruction term, ``kl`` = mean KL;
    ``elbo``/``iw``: per-image tensors ``(n,)``; ``k``, ``elbo_samples``, ``n`` as used.
    """

    neg_elbo: float
    neg_log_px: float
    rec: float
    kl: float
    elbo: Tensor
    iw: Tensor
    k: int
    elbo_samples: int
    n: int

    def __str__(self) -> str:
        return (
            f"-ELBO {self.neg_elbo:.2f} nats (rec {self.rec:.2f}, KL {self.kl:.2f}); "
            f"-log p(x) <= {self.neg_log_px:.2f} nats (k={self.k}); n={self.n}"
        )


@torch.no_grad()
def evaluate_discrete(
    encode: Encoder,
    decode: Decoder,
    images: Tensor,
    *,
    n_class: int | None = None,
    elbo_samples: int = 1,
    iw_samples: int = 100,
    prior_logits: Tensor | None = None,
    batch_size: int = 500,
    chunk: int = 50,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> DiscreteBounds:
    r"""ELBO (``elbo_samples`` codes per image) and :math:`\mathcal{L}_k` (``k = iw_samples``).

    ``images``: ``(n, D)`` binary test images, processed ``batch_size`` at a time (moved to
    ``device``, default the images' device). ``n_class``, if given, is checked against the
    encoder's K. The caller puts the model in eval mode (no dropout or batch-norm updates).
    Returns a :class:`DiscreteBounds`.
    """
    if images.dim() != 2 or len(images) == 0:
        raise ValueError(f"images must have shape (n > 0, D), got {tuple(images.shape)}")
    _check_positive_int("elbo_samples", elbo_samples)
    _check_positive_int("batch_size", batch_size)
    _check_positive_int("iw_samples", iw_samples)
    if n_class is not None:
        _check_positive_int("n_class", n_class)
    dev = torch.device(device) if device is not None else images.device
    elbos, recs, kls, iws = [], [], [], []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(dev, torch.float32)
        elbo, rec, kl = discrete_elbo(
            encode, decode, x, samples=elbo_samples, prior_logits=prior_logits, generator=generator
        )
        if n_class is not None and start == 0:
            logits = encode(x[:1])
            if logits.shape[-1] != n_class:
                raise ValueError(f"n_class={n_class} but encode returns K={logits.shape[-1]}")
        elbos.append(elbo.cpu())
        recs.append(rec.cpu())
        kls.append(kl.cpu())
        iws.append(
            iw_bound(
                encode,
                decode,
                x,
                iw_samples,
                prior_logits=prior_logits,
                generator=generator,
                chunk=chunk,
            ).cpu()
        )
    elbo = torch.cat(elbos)
    iw = torch.cat(iws)
    _check_finite("ELBO", elbo)
    _check_finite("IW bound", iw)
    return DiscreteBounds(
        neg_elbo=-elbo.mean().item(),
        neg_log_px=-iw.mean().item(),
        rec=-torch.cat(recs).mean().item(),
        kl=torch.cat(kls).mean().item(),
        elbo=elbo,
        iw=iw,
        k=iw_samples,
        elbo_samples=elbo_samples,
        n=len(elbo),
    )


def inactive_units(model: torch.nn.Module, images: Tensor) -> dict[str, tuple[int, int]]:
    r"""Hidden units of a VAE's MLPs never active on ``images``: ``{layer: (dead, width)}``.

    A unit :math:`j` of a hidden layer with output :math:`h_j(x)` counts as inactive when
    :math:`\max_i h_j(x_i) \le 0` over the ``images`` :math:`x_i` -- for a ReLU it then passes
    no gradient for any of them. The encoder (``model.encoder``) runs on ``images`` ``(B, D)``,
    the decoder (``model.decoder``) on the most probable one-hot codes ``model.one_hot(
    model.codes(images))``. Layers are the non-``Linear`` modules (the activations) of each
    ``nn.Sequential``, keyed ``"encoder layer 1"``, ``"encoder layer 2"``, ..., ``"decoder
    layer 1"``, ...; ``width`` is the layer's number of units.
    """
    if not isinstance(images, Tensor) or images.dim() != 2 or len(images) == 0:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a (B > 0, D) tensor, got images of shape {shape!r}")
    seen: dict[str, tuple[int, int]] = {}
    hooks = []
    for net in ("encoder", "decoder"):
        acts = [m for m in getattr(model, net) if not isinstance(m, torch.nn.Linear)]
        for i, act in enumerate(acts):
            def record(mod, inp, out, key=f"{net} layer {i + 1}"):  # noqa: ANN001, ANN202
                seen[key] = (int((out.amax(0) <= 0).sum()), out.shape[-1])
            hooks.append(act.register_forward_hook(record))
    try:
        with torch.no_grad():
            model.decode(model.one_hot(model.codes(images)))
    finally:
        for h in hooks:
            h.remove()
    return seen
