r"""The Gumbel-Softmax (Concrete) relaxation of a categorical sample.

Replace the argmax of the Gumbel-Max trick by a softmax at temperature :math:`\lambda > 0`:

.. math::

    x = \operatorname{softmax}\!\Big(\frac{\ell + G}{\lambda}\Big), \qquad
    y = \log x = \frac{\ell + G}{\lambda} - \operatorname{logsumexp}_k \frac{\ell_k + G_k}{\lambda},
    \qquad G_k \sim \mathrm{Gumbel}(0, 1).

The autograd functions in this module compute the relaxed sample in place on the noise buffer
and differentiate it by hand (one pass forward, one pass backward), which is what makes the
distributions in :mod:`concrete.distributions` faster than ``torch.distributions``. With
:math:`g_z = \partial L/\partial z` the gradient through the softmax,

.. math::

    \frac{\partial L}{\partial \ell} = \frac{g_z}{\lambda},\qquad
    \frac{\partial L}{\partial \lambda} = -\frac{1}{\lambda}\sum_k g_{z,k}\, z_k .
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.autograd import Function

from concrete.gumbel import _check_finite, _float_input, _log_exponential, sample_exponential

__all__ = ["gumbel_softmax", "validate_temperature"]

_HALF_TYPES = (torch.float16, torch.bfloat16)


def validate_temperature(
    temperature: float | Tensor,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    name: str = "temperature",
) -> Tensor:
    r"""Check that a temperature :math:`\lambda` is strictly positive and finite; return a Tensor.

    :math:`\lambda \to 0` is a limit (the discrete distribution), not a parameter value, and
    :math:`\lambda = \infty` is not a distribution, so both are rejected, as is NaN.

    Args:
        temperature: a Python number or a floating Tensor of any shape.
        dtype: dtype of the result (default: the tensor's own floating dtype, else the default
            dtype). Integer tensors are converted.
        device: device of the result (default: the tensor's own device).
        name: the argument name used in the error message.

    Returns:
        Tensor with the same shape as ``temperature`` (0-dim for a number). Gradients flow.

    Raises:
        ValueError: naming ``name`` and the offending value(s) if any entry is
            :math:`\le 0`, NaN or :math:`\pm\infty`, or if the input is not a number/Tensor.
    """
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float, Tensor)):
        raise ValueError(
            f"{name} must be a positive finite number or Tensor, got {name}={temperature!r}"
        )
    if isinstance(temperature, Tensor):
        t = temperature
        if t.dtype == torch.bool or t.is_complex():
            raise ValueError(f"{name} must be a real floating Tensor, got {name}={t}")
        target = (
            dtype
            if dtype is not None
            else (t.dtype if t.dtype.is_floating_point else torch.get_default_dtype())
        )
        t = t.to(dtype=target, device=device if device is not None else t.device)
        ok = torch.isfinite(t) & (t > 0)
        if not bool(ok.all()):
            bad = t.detach()[~ok][:8].tolist()
            raise ValueError(
                f"{name} must be positive and finite, got {name}={temperature} "
                f"(invalid entries: {bad})"
            )
        return t
    value = float(temperature)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be positive and finite, got {name}={temperature!r}")
    return torch.tensor(value, dtype=dtype or torch.get_default_dtype(), device=device)


# Below this many classes torch's fused (log_)softmax CPU kernels are several times slower than
# the composite formulas (measured on torch 2.14, AVX512), above it they are faster.
_FUSED_MIN_CLASSES = 16


def _log_softmax(z: Tensor, inplace: bool = False) -> Tensor:
    """log_softmax over the last dim (fused kernel for n >= 16, composite below).

    The composite form shifts by the maximum first, ``(z - m) - log sum exp(z - m)``, which
    keeps full precision when ``|z|`` is huge (``z - logsumexp(z)`` would lose it).
    ``inplace=True`` lets it overwrite ``z`` (only when ``z`` needs no gradient).
    """
    if z.shape[-1] >= _FUSED_MIN_CLASSES:
        return torch.log_softmax(z, -1)
    m = z.amax(-1, keepdim=True)
    zs = z.sub_(m) if inplace else z - m
    lse = zs.exp().sum(-1, keepdim=True).log_()
    return zs.sub_(lse)


def _log_softmax_backward(grad: Tensor, y: Tensor) -> Tensor:
    """grad - exp(y) * grad.sum(-1): the backward of log_softmax over the last dim."""
    if y.shape[-1] >= _FUSED_MIN_CLASSES:
        return torch._log_softmax_backward_data(grad, y, -1, y.dtype)
    return grad - y.exp() * grad.sum(-1, keepdim=True)


class _ConcreteSampler(Function):
    r"""Relaxed sample (and optionally its log-density) in one pass, with a hand-derived backward.

    Inputs: ``logits`` ``(..., n)`` and ``lam`` ``(..., 1)`` (or ``None`` with a Python float
    ``scale``), both broadcastable to ``noise`` (full shape, overwritten in place); ``noise``
    is :math:`\log E` when ``with_lp`` is false and :math:`E` itself when it is true
    (:math:`E_k \sim \mathrm{Exp}(1)`, i.e. :math:`G_k = -\log E_k`).

    Forward: :math:`z = (\ell - \log E)/\lambda`, :math:`y = \log\operatorname{softmax}(z)`;
    outputs ``y`` (log space) and, if ``simplex``, ``x = exp(y)`` first; if ``with_lp`` also the
    log-density of the sample, in closed form from the noise:

    .. math::

        \log\kappa(y) = \log\Gamma(n) + (n-1)\log\lambda + \sum_k\log E_k - n\log\sum_k E_k,

    minus :math:`\sum_k y_k` when ``simplex`` (the Concrete density of :math:`x`).

    Backward: with :math:`\bar y` the total gradient reaching :math:`y`
    (:math:`\bar y = g_y + g_x \odot x - g_{lp}[\text{simplex}]`),
    :math:`g_z = \bar y - x\sum_k\bar y_k`, :math:`\partial\ell = g_z/\lambda` and
    :math:`\partial\lambda = -\sum_k (g_z/\lambda)_k y_k + g_{lp}(n-1)/\lambda`
    (the log-density's total derivative: it is :math:`(n-1)/\lambda` in :math:`\lambda`, zero in
    :math:`\ell`, because :math:`\log\kappa` of the sample depends on the noise only).
    """

    @staticmethod
    def forward(ctx, logits, lam, noise, scale, simplex, with_lp):  # noqa: D102
        n = noise.shape[-1]
        if with_lp:
            log_sum_e = noise.sum(-1).log_()
            log_e = noise.log_()
            lp = log_e.sum(-1).sub_(log_sum_e, alpha=n)
        else:
            log_e = noise
        z = log_e.sub_(logits)
        z = z.div_(-scale) if lam is None else z.div_(lam.neg())
        y = _log_softmax(z, inplace=True)
        outs = [y]
        x = None
        if simplex:
            x = y.exp()
            outs = [x, y]
        if with_lp:
            log_lam = math.log(scale) if lam is None else lam.squeeze(-1).log()
            lp = lp.add_(log_lam * (n - 1) + math.lgamma(n))
            if simplex:
                lp = lp.sub_(y.sum(-1))
            outs.append(lp)
        ctx.save_for_backward(y, x, lam, logits, outs[-1] if with_lp else None)
        ctx.info = (logits.shape, None if lam is None else lam.shape, scale, simplex, with_lp)
        return tuple(outs) if len(outs) > 1 else outs[0]

    @staticmethod
    def backward(ctx, *grads):  # noqa: D102
        if torch.is_grad_enabled():  # create_graph=True: higher-order derivatives
            return _sampler_backward_by_recomputation(ctx, grads)
        y, x, lam, _, _ = ctx.saved_tensors
        logits_shape, lam_shape, scale, simplex, with_lp = ctx.info
        n = y.shape[-1]
        if simplex:
            gx, gy = grads[0], grads[1]
        else:
            gx, gy = None, grads[0]
        glp = grads[-1] if with_lp else None
        bar = gy
        if gx is not None:
            bar = gx * x if bar is None else torch.addcmul(bar, gx, x)
        if glp is not None and simplex:
            bar = -glp.unsqueeze(-1).expand_as(y) if bar is None else bar - glp.unsqueeze(-1)
        gl = None
        if bar is not None:
            gl = _log_softmax_backward(bar, y)
            gl = gl.div_(scale) if lam is None else gl.div_(lam)
        grad_logits = grad_lam = None
        if ctx.needs_input_grad[0]:
            grad_logits = torch.zeros_like(y) if gl is None else gl
            grad_logits = grad_logits.sum_to_size(logits_shape)
        if lam is not None and ctx.needs_input_grad[1]:
            grad_lam = torch.zeros(y.shape[:-1] + (1,), dtype=y.dtype, device=y.device)
            if gl is not None:
                # sum_k g_z,k z_k = sum_k g_z,k y_k because sum_k g_z,k = 0.
                grad_lam = grad_lam - (gl * y).sum(-1, keepdim=True)
            if glp is not None:
                grad_lam = grad_lam + glp.unsqueeze(-1) * ((n - 1) / lam)
            grad_lam = grad_lam.sum_to_size(lam_shape)
        return grad_logits, grad_lam, None, None, None, None


def _grads_of(outputs, grads, inputs, needs) -> list[Tensor | None]:
    """Differentiable vector-Jacobian products of ``outputs`` w.r.t. the needed ``inputs``."""
    pairs = [
        (o, g) for o, g in zip(outputs, grads, strict=True) if g is not None and o.requires_grad
    ]
    wanted = [
        i for i, (t, need) in enumerate(zip(inputs, needs, strict=True)) if need and t is not None
    ]
    result: list[Tensor | None] = [None] * len(inputs)
    if not pairs or not wanted:
        return result
    got = torch.autograd.grad(
        [o for o, _ in pairs],
        [inputs[i] for i in wanted],
        [g for _, g in pairs],
        create_graph=True,
        allow_unused=True,
    )
    for i, g in zip(wanted, got, strict=True):
        result[i] = g
    return result


def _sampler_backward_by_recomputation(ctx, grads):
    r"""Backward of :class:`_ConcreteSampler` that is itself differentiable (double backward).

    The noise is gone (it was overwritten), but :math:`y` is invariant to a per-row shift of
    :math:`z`, so the constant :math:`\log E' = \ell - \lambda y` reproduces the sample:
    :math:`\log\operatorname{softmax}((\ell - \log E')/\lambda) = y`. The outputs are
    recomputed from it with ordinary differentiable ops and differentiated with
    ``create_graph=True``.
    """
    y, x, lam, logits, lp = ctx.saved_tensors
    _, _, scale, simplex, with_lp = ctx.info
    n = y.shape[-1]
    t = lam if lam is not None else scale
    with torch.no_grad():
        log_e = logits - t * y
    y_r = torch.log_softmax((logits - log_e) / t, -1)
    outs: list[Tensor] = [y_r.exp(), y_r] if simplex else [y_r]
    if with_lp:
        lp_r = lp.detach()
        if lam is not None:
            log_lam = lam.squeeze(-1).log()
            lp_r = lp_r + (n - 1) * (log_lam - log_lam.detach())
        if simplex:
            lp_r = lp_r - (y_r.sum(-1) - y.detach().sum(-1))
        outs.append(lp_r)
    g_logits, g_lam = _grads_of(outs, grads, [logits, lam], ctx.needs_input_grad[:2])
    return g_logits, g_lam, None, None, None, None


def _concrete_sample(
    logits: Tensor,
    temperature: Tensor | float,
    shape: torch.Size,
    *,
    simplex: bool,
    with_lp: bool,
    generator: torch.Generator | None = None,
):
    """Draw noise and run :class:`_ConcreteSampler` (last dim = classes).

    ``temperature``: a Python float (no gradient) or a Tensor broadcastable to ``shape[:-1]``.
    Returns ``y``; ``(x, y)`` if ``simplex``; with the log-density appended if ``with_lp``.
    """
    dtype = logits.dtype
    if with_lp:
        noise = sample_exponential(shape, dtype=dtype, device=logits.device, generator=generator)
    else:
        noise = _log_exponential(shape, dtype=dtype, device=logits.device, generator=generator)
    if isinstance(temperature, Tensor):
        lam = temperature.unsqueeze(-1) if temperature.dim() > 0 else temperature.reshape(1)
        out = _ConcreteSampler.apply(logits, lam, noise, None, simplex, with_lp)
    else:
        out = _ConcreteSampler.apply(logits, None, noise, float(temperature), simplex, with_lp)
    if noise.dtype != dtype:  # half types: computed in float32, returned in the input dtype
        out = tuple(o.to(dtype) for o in out) if isinstance(out, tuple) else out.to(dtype)
    return out


class _ExpConcreteLogProb(Function):
    r"""ExpConcrete log-density with a hand-derived backward (one pass each way).

    Forward: :math:`s = \ell - \lambda y`,
    :math:`\log\kappa = \sum_k \log\operatorname{softmax}(s)_k + (n-1)\log\lambda + \log\Gamma(n)`.
    Backward, with :math:`p = \operatorname{softmax}(s)` and upstream gradient :math:`g`:
    :math:`g_s = g\,(1 - n p)`, :math:`\partial\ell = g_s`, :math:`\partial y = -\lambda g_s`,
    :math:`\partial\lambda = -\sum_k g_{s,k} y_k + g\,(n-1)/\lambda`.
    """

    @staticmethod
    def forward(ctx, logits, lam, value, scale):  # noqa: D102
        n = value.shape[-1]
        if lam is None:
            s = torch.add(logits, value, alpha=-scale)
            const = (n - 1) * math.log(scale) + math.lgamma(n)
        else:
            s = torch.addcmul(logits, value, lam, value=-1.0)
            const = lam.squeeze(-1).log() * (n - 1) + math.lgamma(n)
        ls = _log_softmax(s, inplace=True)
        lp = ls.sum(-1).add_(const)
        ctx.save_for_backward(ls, value, lam, logits)
        ctx.info = (logits.shape, value.shape, None if lam is None else lam.shape, scale)
        return lp

    @staticmethod
    def backward(ctx, glp):  # noqa: D102
        ls, value, lam, logits = ctx.saved_tensors
        logits_shape, value_shape, lam_shape, scale = ctx.info
        if torch.is_grad_enabled():  # create_graph=True: recompute with differentiable ops
            n = value.shape[-1]
            t = lam if lam is not None else scale
            lp = torch.log_softmax(logits - t * value, -1).sum(-1) + math.lgamma(n)
            if lam is not None:
                lp = lp + (n - 1) * lam.squeeze(-1).log()
            g_logits, g_lam, g_value = _grads_of(
                [lp], [glp], [logits, lam, value], ctx.needs_input_grad[:3]
            )
            return g_logits, g_lam, g_value, None
        n = ls.shape[-1]
        g = glp.unsqueeze(-1)
        if n >= _FUSED_MIN_CLASSES:
            gs = torch._log_softmax_backward_data(g.expand_as(ls), ls, -1, ls.dtype)
        else:
            gs = ls.exp().mul_(-n).add_(1.0).mul_(g)
        grad_logits = grad_value = grad_lam = None
        if ctx.needs_input_grad[0]:
            grad_logits = gs.sum_to_size(logits_shape)
        if ctx.needs_input_grad[2]:
            grad_value = (gs * -scale if lam is None else gs * lam.neg()).sum_to_size(value_shape)
        if lam is not None and ctx.needs_input_grad[1]:
            grad_lam = (g * ((n - 1) / lam) - (gs * value).sum(-1, keepdim=True)).sum_to_size(
                lam_shape
            )
        return grad_logits, grad_lam, grad_value, None


class _StraightThrough(Function):
    """Forward: the hard value exactly. Backward: the gradient goes to the soft value."""

    @staticmethod
    def forward(ctx, soft: Tensor, hard: Tensor) -> Tensor:  # noqa: D102
        return hard

    @staticmethod
    def backward(ctx, grad: Tensor):  # noqa: D102
        return grad, None


def gumbel_softmax(
    logits: Tensor,
    temperature: float | Tensor,
    *,
    hard: bool = False,
    dim: int = -1,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""A Gumbel-Softmax (Concrete) sample, optionally discretised with straight-through.

    .. math::

        x = \operatorname{softmax}\!\Big(\frac{\ell + G}{\lambda}\Big), \qquad
        G_k \sim \mathrm{Gumbel}(0,1) \text{ i.i.d.}

    With ``hard=True`` the forward value is the exact one-hot vector
    :math:`\mathbb{1}[k = \operatorname{arg\,max}_j x_j]` (exactly one 1 per sample, the first
    maximiser on ties; the same index as Gumbel-Max) and the backward pass uses the gradient of
    the relaxed :math:`x` (straight-through estimator, Bengio et al. 2013; Jang et al. 2017).

    Unlike ``torch.nn.functional.gumbel_softmax``, a temperature :math:`\le 0`, NaN or inf
    raises ``ValueError`` instead of silently returning NaN, and the noise never contains inf.

    Args:
        logits: ``(..., n, ...)`` finite unnormalised log-probabilities :math:`\ell`
            (class dimension ``dim``). Half types are computed in float32 and cast back.
        temperature: :math:`\lambda > 0`, a number or a Tensor broadcastable to the batch
            shape (``logits.shape`` without ``dim``), e.g. one temperature per sample.
        hard: return one-hot forward values with straight-through gradients.
        dim: the class dimension.
        generator: optional ``torch.Generator``.

    Returns:
        Tensor of the same shape and dtype as ``logits``; along ``dim`` it lies on the simplex
        (``hard=False``) or is one-hot (``hard=True``).
    """
    logits, dim = _float_input("logits", logits, dim)
    out_dtype = logits.dtype
    work = logits.float() if out_dtype in _HALF_TYPES else logits
    lam = validate_temperature(temperature, dtype=work.dtype, device=work.device)
    _check_finite("logits", logits.detach())
    last = work.dim() - 1
    moved = work.movedim(dim, -1) if dim != last else work
    batch_shape = moved.shape[:-1]
    if lam.dim() > 0:
        try:
            ok = torch.broadcast_shapes(batch_shape, lam.shape) == batch_shape
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(
                f"temperature of shape {tuple(lam.shape)} must broadcast to the batch shape "
                f"{tuple(batch_shape)} (logits.shape without dim={dim}), got temperature={lam}"
            )
    temp: Tensor | float = lam
    if not isinstance(temperature, Tensor):
        temp = float(temperature)
    soft = _concrete_sample(
        moved, temp, moved.shape, simplex=True, with_lp=False, generator=generator
    )[0]
    if hard:
        index = soft.detach().argmax(-1, keepdim=True)
        one_hot = torch.zeros_like(soft, memory_format=torch.contiguous_format)
        one_hot.scatter_(-1, index, 1.0)
        out = _StraightThrough.apply(soft, one_hot)
    else:
        out = soft
    if dim != last:
        out = out.movedim(-1, dim)
    return out.to(out_dtype) if out.dtype != out_dtype else out
