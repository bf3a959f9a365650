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

from concrete.gumbel import _check_dim, _check_finite, sample_exponential

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


def _log_softmax_backward(grad: Tensor, y: Tensor) -> Tensor:
    """grad - exp(y) * grad.sum(-1): the backward of log_softmax over the last dim."""
    return torch._log_softmax_backward_data(grad, y, -1, y.dtype)


def _softmax_backward(grad: Tensor, x: Tensor) -> Tensor:
    """x * (grad - (grad * x).sum(-1)): the backward of softmax over the last dim."""
    return torch._softmax_backward_data(grad, x, -1, x.dtype)


class _RelaxedLogSoftmax(Function):
    """y = log_softmax((logits - log E) / lam) over the last dim, computed in the E buffer.

    Inputs: logits (..., n), lam (..., 1) (both broadcastable to E), log_e (full shape,
    overwritten). Output: y with the full shape.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, lam: Tensor, log_e: Tensor) -> Tensor:  # noqa: D102
        z = log_e.sub_(logits).div_(lam.neg())  # (logits - log E) / lam
        y = torch.log_softmax(z, -1)
        ctx.save_for_backward(y, lam)
        ctx.shapes = (logits.shape, lam.shape)
        return y

    @staticmethod
    def backward(ctx, grad_y: Tensor):  # noqa: D102
        y, lam = ctx.saved_tensors
        logits_shape, lam_shape = ctx.shapes
        gl = _log_softmax_backward(grad_y, y).div_(lam)
        glam = None
        if ctx.needs_input_grad[1]:
            # sum_k g_z,k z_k = sum_k g_z,k y_k because sum_k g_z,k = 0.
            glam = (gl * y).sum(-1, keepdim=True).neg_().sum_to_size(lam_shape)
        grad_logits = gl.sum_to_size(logits_shape) if ctx.needs_input_grad[0] else None
        return grad_logits, glam, None


class _RelaxedLogSoftmaxWithLogProb(Function):
    r"""Fused ExpConcrete sample and log-density of that sample.

    With :math:`E \sim \mathrm{Exp}(1)` and :math:`y = \log\operatorname{softmax}((\ell - \log
    E)/\lambda)`, the ExpConcrete log-density of :math:`y` simplifies exactly to

    .. math::

        \log\kappa(y) = \log\Gamma(n) + (n-1)\log\lambda + \sum_k \log E_k - n\log\sum_k E_k,

    which no longer depends on :math:`\ell` and is finite for every draw. Its total derivative
    is :math:`(n-1)/\lambda` with respect to :math:`\lambda` and zero with respect to
    :math:`\ell`, which is what autograd would get by differentiating
    ``log_prob(rsample())`` through both the sample and the parameters.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, lam: Tensor, e: Tensor):  # noqa: D102
        n = e.shape[-1]
        log_sum_e = e.sum(-1).log_()
        log_e = e.log_()
        sum_log_e = log_e.sum(-1)
        z = log_e.sub_(logits).div_(lam.neg())
        y = torch.log_softmax(z, -1)
        lam_b = lam.squeeze(-1)
        lp = sum_log_e.sub_(log_sum_e, alpha=n).add_(lam_b.log().mul(n - 1) + math.lgamma(n))
        ctx.save_for_backward(y, lam)
        ctx.shapes = (logits.shape, lam.shape)
        return y, lp

    @staticmethod
    def backward(ctx, grad_y: Tensor | None, grad_lp: Tensor | None):  # noqa: D102
        y, lam = ctx.saved_tensors
        logits_shape, lam_shape = ctx.shapes
        n = y.shape[-1]
        gl = None if grad_y is None else _log_softmax_backward(grad_y, y).div_(lam)
        grad_logits = glam = None
        if ctx.needs_input_grad[0]:
            grad_logits = torch.zeros_like(y) if gl is None else gl
            grad_logits = grad_logits.sum_to_size(logits_shape)
        if ctx.needs_input_grad[1]:
            glam = torch.zeros(y.shape[:-1] + (1,), dtype=y.dtype, device=y.device)
            if gl is not None:
                glam = glam - (gl * y).sum(-1, keepdim=True)
            if grad_lp is not None:
                glam = glam + grad_lp.unsqueeze(-1) * ((n - 1) / lam)
            glam = glam.sum_to_size(lam_shape)
        return grad_logits, glam, None


class _RelaxedSoftmax(Function):
    """x = softmax((logits - log E) / lam) over the last dim, computed in the E buffer."""

    @staticmethod
    def forward(ctx, logits: Tensor, lam: Tensor, log_e: Tensor) -> Tensor:  # noqa: D102
        z = log_e.sub_(logits).div_(lam.neg())
        x = torch.softmax(z, -1)
        ctx.save_for_backward(x, z, lam)
        ctx.shapes = (logits.shape, lam.shape)
        return x

    @staticmethod
    def backward(ctx, grad_x: Tensor):  # noqa: D102
        x, z, lam = ctx.saved_tensors
        logits_shape, lam_shape = ctx.shapes
        gl = _softmax_backward(grad_x, x).div_(lam)
        glam = None
        if ctx.needs_input_grad[1]:
            glam = (gl * z).sum(-1, keepdim=True).neg_().sum_to_size(lam_shape)
        grad_logits = gl.sum_to_size(logits_shape) if ctx.needs_input_grad[0] else None
        return grad_logits, glam, None


class _StraightThrough(Function):
    """Forward: the hard value exactly. Backward: the gradient goes to the soft value."""

    @staticmethod
    def forward(ctx, soft: Tensor, hard: Tensor) -> Tensor:  # noqa: D102
        return hard

    @staticmethod
    def backward(ctx, grad: Tensor):  # noqa: D102
        return grad, None


def _noise_log_e(
    shape: torch.Size, dtype: torch.dtype, device: torch.device, generator: torch.Generator | None
) -> Tensor:
    """log E with E ~ Exp(1) clamped at tiny: minus a standard Gumbel draw, finite."""
    return sample_exponential(shape, dtype=dtype, device=device, generator=generator).log_()


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
    if not isinstance(logits, Tensor):
        logits = torch.as_tensor(logits, dtype=torch.get_default_dtype())
    dim = _check_dim("logits", logits, dim)
    if not logits.dtype.is_floating_point:
        logits = logits.to(torch.get_default_dtype())
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
    lam_e = lam.unsqueeze(-1) if lam.dim() > 0 else lam.reshape(1)
    log_e = _noise_log_e(moved.shape, moved.dtype, moved.device, generator)
    soft = _RelaxedSoftmax.apply(moved, lam_e, log_e)
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
