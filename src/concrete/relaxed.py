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

from concrete.gumbel import _check_finite, _float_input, _is_batched, sample_exponential

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
        if _is_batched(t):  # inside torch.func.vmap: no data-dependent check possible
            return t
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


def _log_softmax_backward(grad: Tensor, y: Tensor, x: Tensor | None = None) -> Tensor:
    """grad - exp(y) * grad.sum(-1): the backward of log_softmax over the last dim.

    ``x``: ``exp(y)`` if the caller has it (saves an exponential in the composite form)."""
    if y.shape[-1] >= _FUSED_MIN_CLASSES:
        return torch._log_softmax_backward_data(grad, y, -1, y.dtype)
    return grad - (y.exp() if x is None else x) * grad.sum(-1, keepdim=True)


def _with_eager_twin(cls: type[Function]) -> type[Function]:
    """Give a ``setup_context``-style autograd Function a classic ``forward(ctx, ...)`` twin.

    ``torch.func`` transforms need the ``setup_context`` form, but calling such a Function
    costs a signature binding (``inspect.signature``) per call -- tens of microseconds, a large
    share of a small batch. :func:`_apply` uses the twin (same forward, same backward) when no
    ``torch.func`` transform is active and nothing is being compiled.
    """

    def forward(ctx, *args):
        out = cls.forward(*args)
        cls.setup_context(ctx, args, out)
        return out

    cls._eager = type(
        cls.__name__ + "Eager",
        (Function,),
        {
            "forward": staticmethod(forward),
            "backward": staticmethod(cls.backward),
            "__doc__": f"Classic-form twin of :class:`{cls.__name__}` (see _with_eager_twin).",
        },
    )
    return cls


def _apply(cls: type[Function], *args):
    """``cls.apply(*args)``, through the eager twin unless ``torch.func``/``torch.compile``."""
    if torch.compiler.is_compiling() or torch._C._are_functorch_transforms_active():
        return cls.apply(*args)
    return cls._eager.apply(*args)


@_with_eager_twin
class _ConcreteSampler(Function):
    r"""Relaxed sample (and optionally its log-density) in one pass, with a hand-derived backward.

    Inputs: ``logits`` ``(..., n)`` and ``lam`` ``(..., 1)`` (or ``None`` with a Python float
    ``scale``), both broadcastable to ``log_e``, the noise :math:`\log E` of the full shape
    (:math:`E_k \sim \mathrm{Exp}(1)`, i.e. :math:`G_k = -\log E_k`; never modified), and
    ``lp_noise`` -- :math:`\sum_k\log E_k - n\log\sum_k E_k`, shape ``(...)`` -- or ``None``
    when the log-density is not wanted.

    Forward: :math:`z = (\ell - \log E)/\lambda`, :math:`y = \log\operatorname{softmax}(z)`;
    outputs ``y`` (log space) and, if ``simplex``, ``x = exp(y)`` first; with ``lp_noise`` also
    the log-density of the sample, in closed form from the noise:

    .. math::

        \log\kappa(y) = \log\Gamma(n) + (n-1)\log\lambda + \sum_k\log E_k - n\log\sum_k E_k,

    minus :math:`\sum_k y_k` when ``simplex`` (the Concrete density of :math:`x`). Every output
    is a new tensor (no input is modified), so callers may change the outputs in place.

    Backward: with :math:`\bar y` the total gradient reaching :math:`y`
    (:math:`\bar y = g_y + g_x \odot x - g_{lp}[\text{simplex}]`),
    :math:`g_z = \bar y - x\sum_k\bar y_k`, :math:`\partial\ell = g_z/\lambda` and
    :math:`\partial\lambda = -\sum_k (g_z/\lambda)_k y_k + g_{lp}(n-1)/\lambda`
    (the log-density's total derivative: it is :math:`(n-1)/\lambda` in :math:`\lambda`, zero in
    :math:`\ell`, because :math:`\log\kappa` of the sample depends on the noise only).
    The backward is written with out-of-place differentiable ops on the saved outputs and
    inputs, so it is itself differentiable (double backward, Hessians) and ``torch.func``
    transforms (``grad``, ``vmap``, ``jacrev``) apply to it (``setup_context`` and
    ``generate_vmap_rule``).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(logits, lam, log_e, lp_noise, scale, simplex):  # noqa: D102
        n = log_e.shape[-1]
        z = torch.sub(logits, log_e)
        # In place only with a Python scalar: a batched ``lam`` (vmap) cannot be written into
        # an unbatched ``z``.
        z = z.div_(scale) if lam is None else z / lam
        y = _log_softmax(z, inplace=True)
        outs = [y.exp(), y] if simplex else [y]
        if lp_noise is not None:
            log_lam = math.log(scale) if lam is None else lam.squeeze(-1).log()
            lp = lp_noise + (log_lam * (n - 1) + math.lgamma(n))
            if simplex:
                lp = lp - y.sum(-1)
            outs.append(lp)
        return tuple(outs) if len(outs) > 1 else outs[0]

    @staticmethod
    def setup_context(ctx, inputs, output):  # noqa: D102
        logits, lam, _, lp_noise, scale, simplex = inputs
        outs = output if isinstance(output, tuple) else (output,)
        x, y = (outs[0], outs[1]) if simplex else (None, outs[0])
        # Outputs nobody used get None, not a tensor of zeros (backward handles None): saves a
        # zero-fill and a full pass per unused output.
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(y, x, lam)
        ctx.info = (
            logits.shape,
            None if lam is None else lam.shape,
            scale,
            simplex,
            lp_noise is not None,
        )

    @staticmethod
    def backward(ctx, *grads):  # noqa: D102
        y, x, lam = ctx.saved_tensors
        logits_shape, lam_shape, scale, simplex, with_lp = ctx.info
        n = y.shape[-1]
        if simplex:
            gx, gy = grads[0], grads[1]
        else:
            gx, gy = None, grads[0]
        glp = grads[-1] if with_lp else None
        bar = gy
        if glp is not None and simplex:
            g1 = glp.unsqueeze(-1)
            bar = (-g1).expand_as(y) if bar is None else bar - g1
        if gx is not None:
            bar = gx * x if bar is None else torch.addcmul(bar, gx, x)
        gl = None
        if bar is not None:
            if simplex and not torch.is_grad_enabled():
                # x = exp(y) is saved: bar - x * sum(bar), without the fused kernel's exp
                gl = torch.addcmul(bar, x, bar.sum(-1, keepdim=True), value=-1.0)
            else:
                gl = _log_softmax_backward(bar, y, x)
            gl = gl.div_(scale) if lam is None else gl / lam
        grad_logits = grad_lam = None
        if ctx.needs_input_grad[0]:
            grad_logits = torch.zeros_like(y) if gl is None else gl
            grad_logits = grad_logits.sum_to_size(logits_shape)
        if lam is not None and ctx.needs_input_grad[1]:
            # sum_k g_z,k z_k = sum_k g_z,k y_k because sum_k g_z,k = 0.
            terms = []
            if gl is not None:
                terms.append(-(gl * y).sum(-1, keepdim=True))
            if glp is not None:
                terms.append(glp.unsqueeze(-1) * ((n - 1) / lam))
            if not terms:
                grad_lam = torch.zeros(lam_shape, dtype=y.dtype, device=y.device)
            else:
                grad_lam = terms[0] if len(terms) == 1 else terms[0] + terms[1]
                grad_lam = grad_lam.sum_to_size(lam_shape)
        return grad_logits, grad_lam, None, None, None, None


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
    Every returned tensor is new (safe to modify in place).
    """
    dtype = logits.dtype
    e = sample_exponential(shape, dtype=dtype, device=logits.device, generator=generator)
    log_sum_e = e.sum(-1).log_() if with_lp else None
    log_e = e.log_()
    lp_noise = log_e.sum(-1).sub_(log_sum_e, alpha=shape[-1]) if with_lp else None
    if isinstance(temperature, Tensor):
        lam = temperature.unsqueeze(-1) if temperature.dim() > 0 else temperature.reshape(1)
        out = _apply(_ConcreteSampler, logits, lam, log_e, lp_noise, None, simplex)
    else:
        out = _apply(
            _ConcreteSampler, logits, None, log_e, lp_noise, float(temperature), simplex
        )
    if log_e.dtype != dtype:  # half types: computed in float32, returned in the input dtype
        out = tuple(o.to(dtype) for o in out) if isinstance(out, tuple) else out.to(dtype)
    return out


@_with_eager_twin
class _ExpConcreteLogProb(Function):
    r"""ExpConcrete log-density with a hand-derived backward (one pass each way).

    Forward: :math:`s = \ell - \lambda y`,
    :math:`\log\kappa = \sum_k \log\operatorname{softmax}(s)_k + (n-1)\log\lambda + \log\Gamma(n)`,
    minus :math:`\sum_k y_k` when ``simplex`` (the Concrete log-density of :math:`x = e^y`).
    Outputs ``(lp, ls)`` with ``ls = log_softmax(s)`` (non-differentiable, kept for the
    backward; :func:`exp_concrete_log_prob` returns ``lp`` only).
    Backward, with :math:`p = \operatorname{softmax}(s)` and upstream gradient :math:`g`:
    :math:`g_s = g\,(1 - n p)`, :math:`\partial\ell = g_s`,
    :math:`\partial y = -\lambda g_s - g[\text{simplex}]`,
    :math:`\partial\lambda = -\sum_k g_{s,k} y_k + g\,(n-1)/\lambda`.
    Nothing is modified in place that autograd or ``torch.func`` can see; under
    ``create_graph=True`` ``ls`` is recomputed from the saved inputs with differentiable ops, so
    second derivatives are exact.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(logits, lam, value, scale, simplex):  # noqa: D102
        n = value.shape[-1]
        if lam is None:
            s = torch.add(logits, value, alpha=-scale)
            const = (n - 1) * math.log(scale) + math.lgamma(n)
        else:
            s = torch.addcmul(logits, value, lam, value=-1.0)
            const = lam.squeeze(-1).log() * (n - 1) + math.lgamma(n)
        ls = _log_softmax(s, inplace=True)
        lp = ls.sum(-1)
        lp = lp.add_(const) if lam is None else lp + const
        if simplex:
            lp = lp - value.sum(-1)
        return lp, ls

    @staticmethod
    def setup_context(ctx, inputs, output):  # noqa: D102
        logits, lam, value, scale, simplex = inputs
        ls = output[1]
        ctx.mark_non_differentiable(ls)
        ctx.set_materialize_grads(False)  # ls never gets a gradient: no zeros for it
        ctx.save_for_backward(ls, value, lam, logits)
        ctx.info = (logits.shape, value.shape, None if lam is None else lam.shape, scale, simplex)

    @staticmethod
    def backward(ctx, glp, _):  # noqa: D102
        if glp is None:  # reached under gradcheck / vectorised Jacobians: nothing flows back
            return None, None, None, None, None
        ls, value, lam, logits = ctx.saved_tensors
        logits_shape, value_shape, lam_shape, scale, simplex = ctx.info
        n = ls.shape[-1]
        higher = torch.is_grad_enabled()  # create_graph=True: keep the graph to the inputs
        if higher:
            t = lam if lam is not None else scale
            ls = torch.log_softmax(logits - t * value, -1)
        g = glp.unsqueeze(-1)
        if n >= _FUSED_MIN_CLASSES:
            gs = torch._log_softmax_backward_data(g.expand_as(ls), ls, -1, ls.dtype)
        elif higher:  # out of place: exp's output is needed by its own backward
            gs = (1.0 - n * ls.exp()) * g
        else:
            gs = ls.exp().mul_(-n).add_(1.0) * g  # (1 - n p) g; in place on a new tensor
        grad_logits = grad_value = grad_lam = None
        if ctx.needs_input_grad[0]:
            grad_logits = gs.sum_to_size(logits_shape)
        if ctx.needs_input_grad[2]:
            if lam is None:  # -scale gs, minus g for the simplex term (one pass)
                grad_value = gs * -scale - g if simplex else gs * -scale
            else:
                grad_value = gs * lam.neg() - g if simplex else gs * lam.neg()
            grad_value = grad_value.sum_to_size(value_shape)
        if lam is not None and ctx.needs_input_grad[1]:
            grad_lam = (g * ((n - 1) / lam) - (gs * value).sum(-1, keepdim=True)).sum_to_size(
                lam_shape
            )
        return grad_logits, grad_lam, grad_value, None, None


@_with_eager_twin
class _StraightThrough(Function):
    """Forward: the exact one-hot vector of ``argmax(soft)`` (first maximiser on ties), a new
    tensor. Backward: the gradient goes to ``soft`` unchanged (straight-through)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(soft: Tensor) -> Tensor:  # noqa: D102
        index = soft.argmax(-1, keepdim=True)
        one_hot = torch.zeros_like(soft, memory_format=torch.contiguous_format)
        return one_hot.scatter_(-1, index, 1.0)

    @staticmethod
    def setup_context(ctx, inputs, output):  # noqa: D102
        pass

    @staticmethod
    def backward(ctx, grad: Tensor):  # noqa: D102
        return grad


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

    The output is a new tensor (safe to modify in place). ``torch.func`` transforms apply
    (``grad``, ``jacrev``, ``vmap`` with ``randomness="same"``/``"different"``); inside ``vmap``
    the checks of *batched* logits/temperatures are skipped (they need data-dependent control
    flow): validate outside. Under ``torch.compile(fullgraph=False)`` the finiteness check of
    the logits and the check of a Tensor temperature graph-break (a Python ``bool`` of tensor
    data); the sample itself is captured.

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
    out = _apply(_StraightThrough, soft) if hard else soft
    if dim != last:
        out = out.movedim(-1, dim)
    return out.to(out_dtype) if out.dtype != out_dtype else out
