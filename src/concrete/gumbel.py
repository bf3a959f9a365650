r"""Gumbel noise, the Gumbel-Max trick and the exponential race.

Three ways to look at one fact. If :math:`E_k \sim \mathrm{Exp}(1)` are independent and
:math:`\alpha_k \ge 0` (not all zero), then

.. math::

    \operatorname*{arg\,min}_k \frac{E_k}{\alpha_k}
    \;=\; \operatorname*{arg\,max}_k \big(\log\alpha_k + G_k\big),
    \qquad G_k = -\log E_k \sim \mathrm{Gumbel}(0, 1),

and both are distributed as :math:`\mathrm{Categorical}(\alpha / \sum_i \alpha_i)`
(the exponential race and the Gumbel-Max trick). The noise here never contains
:math:`\pm\infty` or NaN: the uniform draw behind it is clamped to
:math:`[\text{tiny}, 1)` of its dtype before the logarithms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["sample_gumbel", "gumbel_max", "exponential_race"]

_HALF_TYPES = (torch.float16, torch.bfloat16)


def _draw_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype random numbers are drawn in (float32 for half types)."""
    return torch.float32 if dtype in _HALF_TYPES else dtype


def _as_shape(shape: int | Sequence[int] | torch.Size) -> torch.Size:
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        size = torch.Size(shape)
    except TypeError as exc:
        raise ValueError(
            f"shape must be an int or a sequence of ints, got shape={shape!r}"
        ) from exc
    if any(s < 0 for s in size):
        raise ValueError(f"shape must not contain negative sizes, got shape={tuple(size)}")
    return size


def sample_exponential(
    shape: int | Sequence[int] | torch.Size,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Standard exponential noise :math:`E = -\log U \sim \mathrm{Exp}(1)`, always positive.

    :math:`U` is drawn uniform on :math:`[0, 1)` and clamped to :math:`[\text{tiny}, 1)`, so
    :math:`E \in [2^{-24}, 87.3]` in float32 (:math:`[2^{-53}, 708.4]` in float64): finite and
    positive, and :math:`\log E` is finite too. (``Tensor.exponential_`` is avoided: on CPU it
    is several times slower than ``torch.rand``.) Half types are drawn in float32 and *not*
    cast back (callers take logarithms first).

    Args:
        shape: output shape.
        dtype: floating dtype (default ``torch.get_default_dtype()``).
        device: device of the output.
        generator: optional ``torch.Generator``.

    Returns:
        Tensor of shape ``shape``, dtype ``dtype`` (float32 for half types).
    """
    u = _uniform(shape, dtype=dtype, device=device, generator=generator)
    return u.log_().neg_()


def _uniform(
    shape: int | Sequence[int] | torch.Size,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """U ~ Uniform[tiny, 1) in the draw dtype (float32 for half types)."""
    size = _as_shape(shape)
    dtype = torch.get_default_dtype() if dtype is None else dtype
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating dtype, got dtype={dtype}")
    draw = _draw_dtype(dtype)
    u = torch.rand(size, dtype=draw, device=device, generator=generator)
    return u.clamp_min_(torch.finfo(draw).tiny)


def _log_exponential(
    shape: int | Sequence[int] | torch.Size,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """log E = -G for E ~ Exp(1): minus a standard Gumbel draw, finite (draw dtype)."""
    return sample_exponential(shape, dtype=dtype, device=device, generator=generator).log_()


def sample_gumbel(
    shape: int | Sequence[int] | torch.Size,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Standard Gumbel noise :math:`G \sim \mathrm{Gumbel}(0, 1)`, never :math:`\pm\infty`/NaN.

    .. math::

        G = -\log(-\log U), \qquad U \sim \mathcal{U}[\text{tiny}, 1),

    equivalently :math:`G = -\log E` with :math:`E \sim \mathrm{Exp}(1)`; CDF
    :math:`F(g) = \exp(-e^{-g})`. Drawing :math:`U` on :math:`[\text{tiny}, 1)` (the smallest
    normal number of the dtype) instead of :math:`[0, 1)` makes every value finite: in float32
    :math:`G \in [-4.47, 16.6]`. Float16/bfloat16 are drawn in float32 and cast at the end.

    Args:
        shape: output shape (int or sequence of ints).
        dtype: floating dtype of the result (default ``torch.get_default_dtype()``).
        device: device of the result.
        generator: optional ``torch.Generator`` for reproducible draws.

    Returns:
        Tensor of shape ``shape`` and dtype ``dtype``.
    """
    dtype = torch.get_default_dtype() if dtype is None else dtype
    g = _log_exponential(shape, dtype=dtype, device=device, generator=generator).neg_()
    return g.to(dtype) if g.dtype != dtype else g


def _is_batched(value: Tensor) -> bool:
    """True inside ``torch.func.vmap`` for a tensor with a vmapped dimension (at any level).

    Checks that need a Python ``bool`` of tensor data (data-dependent control flow) cannot run
    on such a tensor; they are skipped there (validate outside ``vmap``).
    """
    if torch.compiler.is_compiling():  # dynamo traces with fake tensors, never vmapped ones
        return False
    functorch = torch._C._functorch
    while functorch.is_functorch_wrapped_tensor(value):
        if functorch.is_batchedtensor(value):
            return True
        value = functorch.get_unwrapped(value)
    return False


def _check_finite(name: str, value: Tensor) -> None:
    """Raise ValueError naming ``name`` if ``value`` has NaN or +-inf.

    One cheap full reduction decides the common case: a NaN or infinite entry makes the sum
    NaN or infinite, so a finite sum proves every entry finite; only a non-finite sum (which
    finite entries can also give, by overflow) is checked entry by entry. Skipped for a
    vmapped tensor (see :func:`_is_batched`)."""
    if value.numel() == 0 or _is_batched(value):
        return
    v = value.detach()
    if math.isfinite(v.sum().item()):
        return
    bad = ~torch.isfinite(v)
    if bool(bad.any()):
        raise ValueError(
            f"{name} must be finite, got {name}={value} "
            f"(non-finite entries: {v[bad][:8].tolist()})"
        )


def _check_dim(name: str, value: Tensor, dim: int) -> int:
    if value.dim() == 0:
        raise ValueError(f"{name} must have at least one dimension, got a 0-dim {name}={value}")
    if not -value.dim() <= dim < value.dim():
        raise ValueError(f"dim={dim} is out of range for {name} of shape {tuple(value.shape)}")
    return dim % value.dim()


def _float_input(name: str, value: Tensor, dim: int) -> tuple[Tensor, int]:
    """``value`` as a floating tensor (default dtype for non-float input) and ``dim`` normalised
    to ``[0, value.dim())``; ValueError naming ``name`` for a 0-dim value or a bad ``dim``."""
    if not isinstance(value, Tensor):
        value = torch.as_tensor(value, dtype=torch.get_default_dtype())
    dim = _check_dim(name, value, dim)
    if not value.dtype.is_floating_point:
        value = value.to(torch.get_default_dtype())
    return value, dim


def gumbel_max(
    logits: Tensor, dim: int = -1, *, generator: torch.Generator | None = None
) -> Tensor:
    r"""Sample category indices with the Gumbel-Max trick.

    .. math::

        K = \operatorname*{arg\,max}_k \big(\ell_k + G_k\big),\quad G_k \sim \mathrm{Gumbel}(0,1)
        \quad\Rightarrow\quad P(K = k) = \operatorname{softmax}(\ell)_k .

    Args:
        logits: ``(..., n, ...)`` real, finite, unnormalised log-probabilities :math:`\ell`
            (a shift by a constant along ``dim`` does not change the law).
        dim: the class dimension.
        generator: optional ``torch.Generator``.

    Returns:
        LongTensor of indices in ``[0, n)``, shape ``logits.shape`` without ``dim``.
    """
    logits, dim = _float_input("logits", logits, dim)
    _check_finite("logits", logits)
    g = sample_gumbel(
        logits.shape, dtype=_draw_dtype(logits.dtype), device=logits.device, generator=generator
    )
    return g.add_(logits.detach()).argmax(dim)


def exponential_race(
    alpha: Tensor, dim: int = -1, *, generator: torch.Generator | None = None
) -> Tensor:
    r"""Sample category indices by an exponential race with unnormalised rates :math:`\alpha`.

    Clock :math:`k` rings at time :math:`T_k = E_k/\alpha_k`, :math:`E_k \sim \mathrm{Exp}(1)`
    (so :math:`T_k \sim \mathrm{Exp}(\alpha_k)`); the first clock wins:

    .. math::

        K = \operatorname*{arg\,min}_k \frac{E_k}{\alpha_k}, \qquad
        P(K = k) = \frac{\alpha_k}{\sum_i \alpha_i}.

    A rate :math:`\alpha_k = 0` never wins (:math:`T_k = +\infty`).

    Args:
        alpha: ``(..., n, ...)`` non-negative, finite rates, at least one positive along ``dim``.
        dim: the class dimension.
        generator: optional ``torch.Generator``.

    Returns:
        LongTensor of indices in ``[0, n)``, shape ``alpha.shape`` without ``dim``.
    """
    alpha, dim = _float_input("alpha", alpha, dim)
    _check_finite("alpha", alpha)
    if bool((alpha < 0).any()):
        raise ValueError(f"alpha must be non-negative, got alpha={alpha}")
    if bool((alpha.sum(dim) <= 0).any()):
        raise ValueError(f"alpha must have a positive entry along dim={dim}, got alpha={alpha}")
    # Rescale by the largest rate (the law is invariant) so tiny rates cannot overflow E/alpha.
    rates = alpha / alpha.amax(dim, keepdim=True)
    e = sample_exponential(alpha.shape, dtype=alpha.dtype, device=alpha.device, generator=generator)
    times = e / rates.to(e.dtype)  # alpha_k = 0 gives +inf: that clock never rings first
    return times.argmin(dim)
