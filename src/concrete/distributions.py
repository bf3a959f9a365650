r"""Concrete distributions as ``torch.distributions.Distribution`` subclasses.

Notation (used the same way in every chapter): :math:`n` classes, location
:math:`\alpha \in (0,\infty)^n` with logits :math:`\ell = \log\alpha` (unnormalised; a shift
along the class dimension changes nothing), temperature :math:`\lambda > 0`, Gumbel noise
:math:`G`, log-space sample :math:`y`, simplex sample :math:`x = e^{y}`.

* :class:`ExpConcrete` -- :math:`y = \log\operatorname{softmax}((\ell + G)/\lambda)`, values on
  the log-simplex :math:`\{y \le 0 : \sum_k e^{y_k} = 1\}`.
* :class:`Concrete` -- :math:`x = \operatorname{softmax}((\ell + G)/\lambda)`, values on the
  simplex.
* :class:`BinaryConcrete` -- the :math:`n = 2` case written with one logit,
  :math:`x = \sigma((\ell + L)/\lambda)`, :math:`L \sim \mathrm{Logistic}(0,1)`, values in (0, 1).
* :class:`LogitBinaryConcrete` -- its logit :math:`y = (\ell + L)/\lambda`, a
  :math:`\mathrm{Logistic}(\ell/\lambda, 1/\lambda)` variable on :math:`\mathbb{R}`.

Differences from ``torch.distributions`` (``ExpRelaxedCategorical``,
``RelaxedOneHotCategorical``, ``RelaxedBernoulli``, ``LogitRelaxedBernoulli``):

* the temperature is validated (positive and finite) and is part of ``arg_constraints``;
* the temperature is *batch-shaped* (no event dimension) and its shape enters
  ``batch_shape`` (pytorch#37162); ``temperature`` is stored expanded to ``batch_shape``;
* noise is never infinite; ``Concrete``/``BinaryConcrete`` remember the log-space value of their
  last sample, so ``log_prob`` of their own samples stays finite at any temperature;
* ``rsample_and_log_prob`` returns a sample and its log-density from one fused pass with a
  hand-derived backward (faster, and exact where ``log_prob(rsample())`` loses precision);
* ``mean``/``variance`` raise ``NotImplementedError`` unless a closed form exists;
* bad parameters raise ``ValueError`` naming the argument and the value;
* ``probs`` that do not sum to one raise ``ValueError`` (torch's ``RelaxedOneHotCategorical``
  normalises them silently); pass ``logits=w.log()`` for unnormalised weights ``w``.

Validation follows torch: it is on unless ``validate_args=False`` (or
``torch.distributions.Distribution.set_default_validate_args(False)``).

With the rest of PyTorch:

* every support and parameter constraint has transforms registered with
  ``torch.distributions.biject_to``/``transform_to`` (the simplex: torch's stick-breaking /
  softmax; the log-simplex: the same in log space; the unit interval is torch's own
  constraint; positive: exp; the real line: identity), so ``TransformedDistribution``, HMC and
  autoguides can map unconstrained parameters and values;
* the sample cache is invisible to autograd: after ``x = d.sample(); x.requires_grad_()``,
  ``log_prob(x)`` and ``cdf(x)`` are computed from ``x`` (the same values and gradients as for
  ``x.clone()``). For the tensor ``rsample()`` returned, gradients of ``log_prob`` flow to the
  parameters through the stored log-space sample (finite at any temperature), not through
  ``x``: differentiate ``log_prob(x.clone())`` for a gradient with respect to that tensor;
* returned samples are new tensors: they may be modified in place (autograd then refuses a
  backward through a modified tensor it needs, as for any torch op, never silently);
* ``torch.func`` (``grad``, ``jacrev``, ``vmap``, per-example gradients),
  ``torch.autograd.functional.jacobian(..., vectorize=True)``, gradcheck's batched-grad check,
  double backward and ``torch.jit.trace`` work; under ``vmap`` pass ``validate_args=False``, as
  with torch's distributions (validation needs data-dependent control flow), and
  ``randomness="same"`` or ``"different"`` to sample;
* ``torch.compile(fullgraph=False)`` gives eager values and gradients (for the same RNG state
  use a backend that draws with torch's generator, e.g. ``aot_eager``, or set
  ``torch._inductor.config.fallback_random = True``). Graph breaks: parameter and value
  validation (a Python ``bool`` of tensor data; none with ``validate_args=False``), and
  ``Concrete``/``BinaryConcrete.log_prob`` of the distribution's own sample (the cache check
  reads the tensor's version counter). Note that torch's Dynamo, when it first initialises,
  calls ``Distribution.set_default_validate_args(False)`` for the whole process (torch 2.14):
  after any ``torch.compile``, validation is off by default for every distribution, ours
  included; pass ``validate_args=True`` where bad parameters must still raise.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Distribution, biject_to, constraints, transform_to
from torch.distributions import transforms as _transforms
from torch.distributions.utils import lazy_property

from concrete.gumbel import _HALF_TYPES, _check_finite, _uniform
from concrete.relaxed import _apply, _concrete_sample, _ExpConcreteLogProb, validate_temperature

__all__ = [
    "ExpConcrete",
    "Concrete",
    "BinaryConcrete",
    "LogitBinaryConcrete",
    "exp_concrete_log_prob",
    "logit_binary_concrete_log_prob",
]

_size = torch.Size | tuple[int, ...] | list[int]
_NO_SAMPLE = torch.Size()


# --------------------------------------------------------------------------- constraints
def _finite(value: Tensor) -> Tensor:
    """Elementwise finiteness as ``value - value == 0`` (several times faster than isfinite)."""
    return (value - value) == 0


def _tol(dtype: torch.dtype, n: int) -> float:
    """Tolerance for 'sums to one' checks: 1e-6 (torch's), widened to n*eps in low precision."""
    return max(1e-6, n * torch.finfo(dtype).eps)


class _PositiveFinite(constraints.Constraint):
    """Strictly positive and finite: the temperature's constraint."""

    def check(self, value: Tensor) -> Tensor:  # noqa: D102
        return _finite(value) & (value > 0)

    def __repr__(self) -> str:
        return "PositiveFinite()"


class _FiniteReal(constraints.Constraint):
    """Finite reals (no NaN, no +-inf)."""

    def check(self, value: Tensor) -> Tensor:  # noqa: D102
        return _finite(value)

    def __repr__(self) -> str:
        return "FiniteReal()"


class _Simplex(constraints.Constraint):
    """x >= 0 and sum_k x_k = 1 along the last dim, to a dtype-aware tolerance."""

    event_dim = 1

    def check(self, value: Tensor) -> Tensor:  # noqa: D102
        tol = _tol(value.dtype, value.shape[-1])
        return (value >= 0).all(-1) & ((value.sum(-1) - 1).abs() <= tol)

    def __repr__(self) -> str:
        return "Simplex()"


class _LogSimplex(constraints.Constraint):
    """y finite, y <= 0 and logsumexp_k y_k = 0 along the last dim (the log of a simplex point)."""

    event_dim = 1

    def check(self, value: Tensor) -> Tensor:  # noqa: D102
        tol = _tol(value.dtype, value.shape[-1])
        return _finite(value).all(-1) & (value <= 0).all(-1) & (value.logsumexp(-1).abs() <= tol)

    def __repr__(self) -> str:
        return "LogSimplex()"


positive_finite = _PositiveFinite()
finite_real = _FiniteReal()
finite_real_vector = constraints.independent(finite_real, 1)
simplex = _Simplex()
log_simplex = _LogSimplex()
# torch's closed interval [0, 1] (float32 samples can round to 0 or 1): the support *is* torch's.
unit_interval = constraints.unit_interval


# --------------------------------------------------------------------------- transforms
class _LogSoftmaxTransform(_transforms.Transform):
    r"""Unconstrained :math:`u \in \mathbb{R}^n` to the log-simplex by
    :math:`y = \log\operatorname{softmax}(u)` (not bijective, like ``SoftmaxTransform``; the
    inverse returns ``y`` itself, one preimage). What ``transform_to(log_simplex)`` returns."""

    domain = constraints.real_vector
    codomain = log_simplex

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _LogSoftmaxTransform)

    def _call(self, x: Tensor) -> Tensor:
        return torch.log_softmax(x, -1)

    def _inverse(self, y: Tensor) -> Tensor:
        return y

    def forward_shape(self, shape: torch.Size) -> torch.Size:  # noqa: D102
        if len(shape) < 1:
            raise ValueError("Too few dimensions on input")
        return shape

    def inverse_shape(self, shape: torch.Size) -> torch.Size:  # noqa: D102
        if len(shape) < 1:
            raise ValueError("Too few dimensions on input")
        return shape


class _LogStickBreakingTransform(_transforms.Transform):
    r"""Bijection :math:`\mathbb{R}^{n-1} 	o` log-simplex: the log of torch's
    ``StickBreakingTransform``, computed in log space (no underflow to :math:`-\infty`).

    With :math:`t_k = u_k - \log(n - k)` (:math:`k = 1..n-1`),
    :math:`y_k = \log\sigma(t_k) + \sum_{j<k}\log\sigma(-t_j)` and
    :math:`y_n = \sum_{j<n}\log\sigma(-t_j)`; inverse
    :math:`u_k = y_k - \operatorname{logsumexp}_{j>k} y_j + \log(n-k)`.
    ``log_abs_det_jacobian`` is the stick-breaking one plus that of the logarithm on all
    :math:`n` coordinates, :math:`\sum_k(\log\sigma(t_k) - t_k) - y_n`, which is what makes
    ``ExpConcrete.log_prob(T(u)) + log|det J_T(u)|`` the log-density of :math:`u` (the ExpConcrete
    density is w.r.t. :math:`dy_{-j}/x_j`, see :class:`ExpConcrete`).
    What ``biject_to(log_simplex)`` returns.
    """

    domain = constraints.real_vector
    codomain = log_simplex
    bijective = True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _LogStickBreakingTransform)

    @staticmethod
    def _shifted(x: Tensor) -> Tensor:
        offset = x.shape[-1] + 1 - x.new_ones(x.shape[-1]).cumsum(-1)
        return x - offset.log()

    def _call(self, x: Tensor) -> Tensor:
        t = self._shifted(x)
        log_rest = torch.nn.functional.logsigmoid(-t).cumsum(-1)
        head = torch.nn.functional.logsigmoid(t)
        pad = torch.nn.functional.pad
        return pad(head, [0, 1], value=0.0) + pad(log_rest, [1, 0], value=0.0)

    def _inverse(self, y: Tensor) -> Tensor:
        k = y.shape[-1] - 1
        offset = y.shape[-1] - y.new_ones(k).cumsum(-1)
        tail = y.flip(-1).logcumsumexp(-1).flip(-1)  # tail_k = logsumexp_{j >= k} y_j
        return y[..., :-1] - tail[..., 1:] + offset.log()

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:  # noqa: D102
        t = self._shifted(x)
        return (torch.nn.functional.logsigmoid(t) - t).sum(-1) - y[..., -1]

    def forward_shape(self, shape: torch.Size) -> torch.Size:  # noqa: D102
        if len(shape) < 1:
            raise ValueError("Too few dimensions on input")
        return shape[:-1] + (shape[-1] + 1,)

    def inverse_shape(self, shape: torch.Size) -> torch.Size:  # noqa: D102
        if len(shape) < 1:
            raise ValueError("Too few dimensions on input")
        return shape[:-1] + (shape[-1] - 1,)


# Register every constraint of this module with torch's registries, so that
# ``biject_to(d.support)``/``transform_to(d.arg_constraints[name])`` work (HMC/NUTS, autoguides,
# TransformedDistribution, torch's own jit tests). Same transforms as torch's for the
# corresponding torch constraints.
biject_to.register(_PositiveFinite, lambda c: _transforms.ExpTransform())
transform_to.register(_PositiveFinite, lambda c: _transforms.ExpTransform())
biject_to.register(_FiniteReal, lambda c: _transforms.identity_transform)
transform_to.register(_FiniteReal, lambda c: _transforms.identity_transform)
biject_to.register(_Simplex, lambda c: _transforms.StickBreakingTransform())
transform_to.register(_Simplex, lambda c: _transforms.SoftmaxTransform())
biject_to.register(_LogSimplex, lambda c: _LogStickBreakingTransform())
transform_to.register(_LogSimplex, lambda c: _LogSoftmaxTransform())


# --------------------------------------------------------------------------- helpers
def _to_float_tensor(name: str, value: object) -> Tensor:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a Tensor of reals, got {name}={value!r}")
    if not isinstance(value, Tensor):
        try:
            value = torch.as_tensor(value, dtype=torch.get_default_dtype())
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(f"{name} must be a Tensor of reals, got {name}={value!r}") from exc
    if value.dtype == torch.bool or value.is_complex():
        raise ValueError(f"{name} must be a real Tensor, got {name}={value}")
    if not value.dtype.is_floating_point:
        value = value.to(torch.get_default_dtype())
    return value


def _describe(value: object) -> str:
    if isinstance(value, Tensor):
        return f"Tensor(shape={tuple(value.shape)}, dtype={value.dtype})"
    return repr(value)


def _show_bad(value: Tensor, bad: Tensor) -> str:
    """The first few offending entries of ``value`` (``bad`` is a mask)."""
    entries = value.detach()[bad]
    return f"{entries[:8]}" + (" ..." if entries.numel() > 8 else "")


def _exactly_one(probs: object, logits: object) -> tuple[str, object]:
    if (probs is None) == (logits is None):
        raise ValueError(
            "exactly one of probs or logits must be given, got "
            f"probs={_describe(probs)}, logits={_describe(logits)}"
        )
    return ("probs", probs) if probs is not None else ("logits", logits)


def _prepare_temperature(
    temperature: object, dtype: torch.dtype, device: torch.device, validate: bool
) -> Tensor:
    if validate or not isinstance(temperature, Tensor):  # numbers are always checked (free)
        return validate_temperature(temperature, dtype=dtype, device=device)
    return temperature.to(dtype=dtype, device=device)


def _common_dtype(param: Tensor, temperature: object) -> torch.dtype:
    if isinstance(temperature, Tensor) and temperature.dtype.is_floating_point:
        return torch.promote_types(param.dtype, temperature.dtype)
    return param.dtype


def _check_sample(dist: Distribution, value: object) -> None:
    """Shape and support validation of ``value`` with messages that name it."""
    if not isinstance(value, Tensor):
        raise ValueError(
            f"value must be a Tensor for {type(dist).__name__}.log_prob, got value={value!r}"
        )
    event_shape = dist.event_shape
    k = len(event_shape)
    if value.dim() < k or value.shape[value.dim() - k :] != event_shape:
        raise ValueError(
            f"value of shape {tuple(value.shape)} does not end with the event shape "
            f"{tuple(event_shape)} of {type(dist).__name__}, got value={value}"
        )
    expected = dist.batch_shape + event_shape
    for i, j in zip(reversed(value.shape), reversed(expected), strict=False):
        if i != 1 and j != 1 and i != j:
            raise ValueError(
                f"value of shape {tuple(value.shape)} does not broadcast with "
                f"batch_shape + event_shape = {tuple(expected)}, got value={value}"
            )
    valid = dist.support.check(value)
    if not bool(valid.all()):
        raise ValueError(
            f"value must lie in the support {dist.support} of {type(dist).__name__}, "
            f"got value={value}"
        )


# --------------------------------------------------------------------------- log-densities
def _python_scale(temperature: object) -> float | None:
    """The temperature as a Python float if it was given as a number (fast path), else None."""
    if isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
        return float(temperature)
    return None


def exp_concrete_log_prob(logits: Tensor, temperature: Tensor | float, value: Tensor) -> Tensor:
    r"""ExpConcrete log-density :math:`\log\kappa(y)` (Maddison et al. 2017, App. C).

    .. math::

        \log\kappa(y) = \log\Gamma(n) + (n-1)\log\lambda + \sum_{k=1}^n s_k
                        - n \operatorname{logsumexp}_k s_k,
        \qquad s_k = \ell_k - \lambda y_k .

    (Equivalently :math:`\kappa(y) = (n-1)!\,\lambda^{n-1}\prod_k \alpha_k e^{-\lambda y_k}
    / (\sum_i \alpha_i e^{-\lambda y_i})^n`.) Computed as
    :math:`\sum_k \log\operatorname{softmax}(s)_k`. Invariant to a shift of :math:`\ell`.
    No validation (the distributions validate).

    Args:
        logits: ``(*batch, n)`` unnormalised log-locations :math:`\ell`.
        temperature: a positive Python float, or a ``batch``-shaped Tensor :math:`\lambda`
            (broadcastable to ``value.shape[:-1]``).
        value: ``(*sample, *batch, n)`` log-simplex points :math:`y`.

    Returns:
        Tensor of shape ``(*sample, *batch)``.
    """
    return _log_kappa(logits, temperature, value, simplex=False)


def _log_kappa(logits: Tensor, temperature: Tensor | float, value: Tensor, simplex: bool) -> Tensor:
    """:func:`exp_concrete_log_prob`, minus ``value.sum(-1)`` if ``simplex`` (one Function)."""
    if isinstance(temperature, Tensor):
        lam = temperature.unsqueeze(-1) if temperature.dim() > 0 else temperature.reshape(1)
        return _apply(_ExpConcreteLogProb, logits, lam, value, None, simplex)[0]
    return _apply(_ExpConcreteLogProb, logits, None, value, float(temperature), simplex)[0]


def logit_binary_concrete_log_prob(
    logits: Tensor, temperature: Tensor | float, value: Tensor
) -> Tensor:
    r"""Log-density of :math:`y = (\ell + L)/\lambda`, :math:`L\sim\mathrm{Logistic}(0,1)`.

    .. math::

        \log p(y) = \log\lambda + d - 2\operatorname{softplus}(d), \qquad d = \ell - \lambda y,

    with :math:`\operatorname{softplus}(d) = \log(1 + e^{d})` evaluated stably, so it does not
    overflow for :math:`|d|` up to the float range.

    Args:
        logits: ``batch``-shaped :math:`\ell`.
        temperature: a positive Python float or a ``batch``-shaped Tensor :math:`\lambda`.
        value: ``(*sample, *batch)`` real :math:`y`.

    Returns:
        Tensor of shape ``(*sample, *batch)``.
    """
    if isinstance(temperature, Tensor):
        d = torch.addcmul(logits, value, temperature, value=-1.0)
        return temperature.log() + d - 2.0 * torch.nn.functional.softplus(d)
    t = float(temperature)
    d = torch.add(logits, value, alpha=-t)
    return d - 2.0 * torch.nn.functional.softplus(d) + math.log(t)


# --------------------------------------------------------------------------- categorical family
def _record(
    sample: Tensor, log_sample: Tensor, log_prob: Tensor | None = None
) -> tuple[Tensor, int, Tensor, bool, Tensor | None, int]:
    """The sample cache: the returned tensor, its version counter, the log-space value it was
    computed from, whether it required grad (see ``_TemperedBase._cached_log_sample``), and
    optionally its log-density with that tensor's version counter (``_cached_log_prob``)."""
    return (sample, sample._version, log_sample, sample.requires_grad, log_prob,
            -1 if log_prob is None else log_prob._version)


class _TemperedBase(Distribution):
    """What every relaxed distribution here shares: the temperature, ``expand``, the sample cache.

    Subclasses set ``temperature`` (batch-shaped), ``_logits_raw`` (``batch_shape +
    event_shape``), ``_scale`` (the temperature as a Python float, or ``None``), ``_temp_raw``
    (the un-expanded temperature tensor) and ``_cache`` in ``__init__``.
    """

    has_rsample = True

    @property
    def param_shape(self) -> torch.Size:
        """Shape of ``logits``/``probs``: ``batch_shape + event_shape``."""
        return self._logits_raw.shape

    @property
    def _temp(self) -> Tensor | float:
        """The temperature for computations: a Python float when given as a number."""
        return self._scale if self._scale is not None else self._temp_raw

    def expand(self, batch_shape: _size, _instance: Distribution | None = None) -> Distribution:
        """Expand to a larger ``batch_shape`` (views, no copies); see ``Distribution.expand``."""
        new = self._get_checked_instance(type(self), _instance)
        batch_shape = torch.Size(batch_shape)
        full = batch_shape + self.event_shape
        new.temperature = self.temperature.expand(batch_shape)
        new._logits_raw = self._logits_raw.expand(full)
        if "probs" in self.__dict__:
            new.probs = self.probs.expand(full)
        if "logits" in self.__dict__:
            new.logits = self.logits.expand(full)
        new._scale = self._scale
        new._temp_raw = self._temp_raw
        new._cache = None
        Distribution.__init__(new, batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def _cached_log_sample(self, value: Tensor) -> Tensor | None:
        """The log-space value stored by the last ``rsample`` if ``value`` is that sample,
        unmodified in place and with the same ``requires_grad`` as when it was drawn; else
        ``None``.

        The ``requires_grad`` check keeps the cache invisible to autograd: after
        ``x = d.sample(); x.requires_grad_()`` the stored value (which has no graph to ``x``)
        is not used, and ``log_prob(x)``/``cdf(x)`` are computed from ``x`` itself, exactly as
        for ``x.clone()``, so gradients with respect to ``x`` exist and are right.
        """
        c = self._cache
        if (
            c is not None
            and value is c[0]
            and value._version == c[1]
            and value.requires_grad == c[3]
        ):
            return c[2]
        return None

    def _cached_log_prob(self, value: Tensor) -> Tensor | None:
        """The log-density stored by the last ``rsample`` if ``value`` is that sample (as in
        :meth:`_cached_log_sample`), it was drawn with gradients (so the stored value carries
        the total derivative that ``log_prob(value)`` has), and the stored tensor is
        unmodified; else ``None``."""
        c = self._cache
        if (
            c is None
            or c[4] is None
            or not c[3]
            or c[4]._version != c[5]
            or self._cached_log_sample(value) is None
        ):
            return None
        return c[4] if torch.is_grad_enabled() else c[4].detach()

    def sample(self, sample_shape: _size = _NO_SAMPLE) -> Tensor:
        """A sample without gradients, ``(*sample_shape, *batch_shape, *event_shape)``."""
        with torch.no_grad():
            return self.rsample(sample_shape)


class _RelaxedCategoricalBase(_TemperedBase):
    """Parameter handling shared by :class:`ExpConcrete` and :class:`Concrete`."""

    arg_constraints = {
        "probs": simplex,
        "logits": finite_real_vector,
        "temperature": positive_finite,
    }

    def __init__(
        self,
        temperature: float | Tensor,
        probs: Tensor | None = None,
        logits: Tensor | None = None,
        validate_args: bool | None = None,
    ) -> None:
        validate = Distribution._validate_args if validate_args is None else bool(validate_args)
        name, param = _exactly_one(probs, logits)
        param = _to_float_tensor(name, param)
        if param.dim() < 1 or param.shape[-1] < 2:
            raise ValueError(
                f"{name} must have shape (*batch, n) with n >= 2 classes, "
                f"got {name} of shape {tuple(param.shape)}"
            )
        dtype = _common_dtype(param, temperature)
        param = param.to(dtype)
        lam = _prepare_temperature(temperature, dtype, param.device, validate)
        n = param.shape[-1]
        if validate:
            if name == "logits":
                _check_finite("logits", param)
            else:
                lo, hi = torch.aminmax(param.detach())
                if not (bool(lo >= 0) and bool(hi <= 1)):  # False for NaN too
                    bad = ~((param >= 0) & (param <= 1))
                    raise ValueError(
                        f"probs must be non-negative and sum to 1, got probs={param} "
                        f"(invalid entries: {_show_bad(param, bad)})"
                    )
                err = (param.detach().sum(-1) - 1).abs()
                if bool((err > _tol(dtype, n)).any()):
                    raise ValueError(
                        f"probs must sum to 1 along the last dimension, got probs={param} "
                        f"(sums: {_show_bad(param.detach().sum(-1), err > _tol(dtype, n))})"
                    )
        param_batch = param.shape[:-1]
        if param.dim() >= 2 and lam.shape == param_batch + (1,) and lam.numel() > 1:
            raise ValueError(
                f"temperature of shape {tuple(lam.shape)} looks like a torch-style temperature "
                f"with an event dimension; here the temperature is batch-shaped, pass "
                f"temperature.squeeze(-1) (shape {tuple(param_batch)}), got temperature={lam}"
            )
        try:  # a 0-dim temperature (the common case) broadcasts trivially
            batch_shape = (
                param_batch if lam.dim() == 0 else torch.broadcast_shapes(param_batch, lam.shape)
            )
        except RuntimeError as exc:
            raise ValueError(
                f"temperature of shape {tuple(lam.shape)} does not broadcast with the batch "
                f"shape {tuple(param_batch)} of {name}, got temperature={lam}"
            ) from exc
        full = batch_shape + (n,)
        param = param.expand(full) if param.shape != full else param
        self.temperature = lam.expand(batch_shape) if lam.shape != batch_shape else lam
        if name == "probs":
            self.probs = param
            self._logits_raw = param.clamp_min(torch.finfo(dtype).tiny).log()
        else:
            self._logits_raw = param
        self._scale = _python_scale(temperature)
        self._temp_raw = lam  # un-expanded: cheaper broadcasting in the kernels
        self._cache: tuple[Tensor, int, Tensor, bool] | None = None
        super().__init__(batch_shape, torch.Size((n,)), validate_args=False)
        self._validate_args = validate

    # -- parameters ---------------------------------------------------------------------------
    @lazy_property
    def logits(self) -> Tensor:
        r"""Normalised logits :math:`\log\pi_k`, ``(*batch, n)`` (log-probabilities)."""
        return self._logits_raw - self._logits_raw.logsumexp(-1, keepdim=True)

    @lazy_property
    def probs(self) -> Tensor:
        r""":math:`\pi = \operatorname{softmax}(\ell)`, ``(*batch, n)``: the rounding law."""
        return torch.softmax(self._logits_raw, -1)

    @property
    def mean(self) -> Tensor:
        """No closed form: raises ``NotImplementedError`` (estimate by Monte Carlo)."""
        raise NotImplementedError(
            f"{type(self).__name__} has no closed-form mean; estimate it by Monte Carlo, "
            "e.g. dist.sample((10000,)).mean(0)"
        )

    @property
    def variance(self) -> Tensor:
        """No closed form: raises ``NotImplementedError`` (estimate by Monte Carlo)."""
        raise NotImplementedError(
            f"{type(self).__name__} has no closed-form variance; estimate it by Monte Carlo, "
            "e.g. dist.sample((10000,)).var(0)"
        )

    def _draw(self, sample_shape: _size, simplex: bool, with_lp: bool):
        shape = self._extended_shape(sample_shape)
        return _concrete_sample(
            self._logits_raw, self._temp, shape, simplex=simplex, with_lp=with_lp
        )


class ExpConcrete(_RelaxedCategoricalBase):
    r"""The ExpConcrete distribution: the log of a Concrete sample (values on the log-simplex).

    Sampling (:math:`G_k` i.i.d. standard Gumbel, :math:`\lambda > 0`):

    .. math::

        y = \frac{\ell + G}{\lambda} - \operatorname{logsumexp}_k\frac{\ell_k + G_k}{\lambda}.

    Log-density (Maddison et al. 2017, App. C), :math:`\alpha = e^{\ell}`:

    .. math::

        \log\kappa(y) = \log\Gamma(n) + (n-1)\log\lambda
            + \sum_{k=1}^n(\log\alpha_k - \lambda y_k)
            - n\operatorname{logsumexp}_k(\log\alpha_k - \lambda y_k).

    (The seed blog post writes :math:`(\lambda-1)y_k`; the term is :math:`-\lambda y_k`.)

    .. warning::

        :math:`\kappa` is a density with respect to the measure
        :math:`d\mu = dy_{-j}/x_j` (drop any one coordinate :math:`j`, :math:`x = e^{y}`; the
        measure does not depend on :math:`j`), *not* Lebesgue measure on
        :math:`y_1..y_{n-1}`: :math:`\int\kappa\,d\mu = 1`, but for :math:`n=2`,
        :math:`\alpha=(2, 0.5)`, :math:`\lambda=0.7` the naive Lebesgue integral is about 0.252.
        The same measure appears for every parameter value, so differences of log-densities
        (``relaxed_kl``) are exact log density ratios of the Concrete distributions.

    Shapes: ``logits``/``probs`` ``(*batch_l, n)``; ``temperature`` a number or a Tensor of a
    *batch* shape (no event dimension) broadcastable with ``batch_l``;
    ``batch_shape = broadcast(batch_l, temperature.shape)``, ``event_shape = (n,)``;
    ``rsample(s)`` is ``(*s, *batch_shape, n)``; ``log_prob`` returns ``(*s, *batch_shape)``.

    Args:
        temperature: :math:`\lambda > 0` (finite).
        probs: class probabilities (non-negative, summing to one along the last dimension
            within ``max(1e-6, n * eps)``); zeros become logits :math:`\log(\text{tiny})`.
            Unnormalised ``probs`` raise ``ValueError`` -- a deliberate difference from
            ``torch.distributions``, which normalises them; use ``logits=w.log()`` for
            unnormalised weights.
        logits: unnormalised log-probabilities :math:`\ell` (finite). Exactly one of
            ``probs``/``logits``.
        validate_args: validate parameters and ``log_prob`` values (default: torch's default,
            on). Errors are ``ValueError`` naming the argument and its value.
    """

    support = log_simplex

    def rsample(self, sample_shape: _size = _NO_SAMPLE) -> Tensor:
        """Reparameterised sample :math:`y`, shape ``(*sample_shape, *batch, n)``."""
        y = self._draw(sample_shape, simplex=False, with_lp=False)
        self._cache = _record(y, y)
        return y

    def rsample_and_log_prob(self, sample_shape: _size = _NO_SAMPLE) -> tuple[Tensor, Tensor]:
        r"""Fused ``y = rsample(s)`` and ``log_prob(y)`` in one pass with an analytic backward.

        For :math:`y = \log\operatorname{softmax}((\ell - \log E)/\lambda)`,
        :math:`E_k\sim\mathrm{Exp}(1)`, the log-density of the sample is exactly

        .. math::

            \log\kappa(y) = \log\Gamma(n) + (n-1)\log\lambda + \sum_k\log E_k
                            - n\log\sum_k E_k ,

        finite for every draw and every temperature, and its total derivative
        (through the sample and the parameters) is :math:`(n-1)/\lambda` in :math:`\lambda`
        and 0 in the logits. Gradients to parameters equal those of
        ``log_prob(rsample())``; the log-density carries no gradient to ``y`` itself.
        Draws the same ``y`` as :meth:`rsample` for the same RNG state.

        Returns:
            ``(y, log_prob)`` of shapes ``(*s, *batch, n)`` and ``(*s, *batch)``.
        """
        y, lp = self._draw(sample_shape, simplex=False, with_lp=True)
        self._cache = _record(y, y)
        return y, lp

    def log_prob(self, value: Tensor) -> Tensor:
        r"""Log-density :math:`\log\kappa(y)` w.r.t. :math:`d\mu` (see the class docstring).

        Args:
            value: ``(*s, *batch, n)`` points :math:`y` of the log-simplex.

        Returns:
            ``(*s, *batch)``.
        """
        if self._validate_args and self._cached_log_sample(value) is None:
            _check_sample(self, value)
        return exp_concrete_log_prob(self._logits_raw, self._temp, value)


class Concrete(_RelaxedCategoricalBase):
    r"""The Concrete (Gumbel-Softmax) distribution on the probability simplex.

    .. math::

        x = \operatorname{softmax}\!\Big(\frac{\ell + G}{\lambda}\Big),\qquad
        p(x) = (n-1)!\,\lambda^{n-1}\prod_{k=1}^n
               \frac{\alpha_k x_k^{-\lambda-1}}{\sum_{i=1}^n \alpha_i x_i^{-\lambda}},

    a density w.r.t. Lebesgue measure on any :math:`n-1` coordinates. In log space,
    :math:`\log p(x) = \log\kappa(\log x) - \sum_{k=1}^n \log x_k` (:math:`n` terms; see
    :class:`ExpConcrete`). ``argmax(x)`` is distributed as ``Categorical(softmax(logits))``.

    Low temperatures: ``rsample``/``sample`` compute the log-space sample :math:`y` first and
    return :math:`x = e^y`; coordinates of :math:`x` may underflow to exactly 0. The distribution
    keeps :math:`y` for its last sample (like a cached transform), and ``log_prob`` of that very
    tensor (same object, not modified in place, ``requires_grad`` unchanged) uses :math:`y`, so
    it is finite; gradients then flow to the parameters through :math:`y` (see the module
    docstring for autograd and the cache).
    For any other ``value`` (a copy, or external data), entries below ``tiny`` -- the smallest
    normal number of the dtype, 1.2e-38 in float32 -- in particular exact zeros, are replaced by
    ``tiny`` before the logarithm: the result is the (finite) log-density at that nudged point,
    not the limit. The support check (``validate_args``) accepts zeros (closed simplex).

    Shapes and arguments as :class:`ExpConcrete` (unnormalised ``probs`` raise ``ValueError``;
    torch normalises them); samples ``(*s, *batch, n)``.
    """

    support = simplex

    @property
    def exp_concrete(self) -> ExpConcrete:
        """The :class:`ExpConcrete` with the same parameters (the law of ``log x``)."""
        d = ExpConcrete(self._temp, logits=self._logits_raw, validate_args=False)
        d._validate_args = self._validate_args
        return d

    def rsample(self, sample_shape: _size = _NO_SAMPLE) -> Tensor:
        """Reparameterised sample :math:`x` on the simplex, ``(*sample_shape, *batch, n)``.

        Its log-density is computed in the same pass, from the noise (as in
        :meth:`rsample_and_log_prob`), and kept: ``log_prob(x)`` of this very tensor then
        returns it at no cost, with the same value and the same gradients as computing it
        from ``x``.
        """
        if torch.is_grad_enabled() and (
            self._logits_raw.requires_grad
            or (isinstance(self._temp, Tensor) and self._temp.requires_grad)
        ):
            x, y, lp = self._draw(sample_shape, simplex=True, with_lp=True)
            self._cache = _record(x, y, lp)
        else:
            x, y = self._draw(sample_shape, simplex=True, with_lp=False)
            self._cache = _record(x, y)
        return x

    def rsample_and_log_prob(self, sample_shape: _size = _NO_SAMPLE) -> tuple[Tensor, Tensor]:
        r"""Fused ``x = rsample(s)`` and ``log_prob(x)`` (see ExpConcrete.rsample_and_log_prob).

        :math:`\log p(x) = \log\kappa(y) - \sum_k y_k` with the fused :math:`\log\kappa(y)`.

        Returns:
            ``(x, log_prob)`` of shapes ``(*s, *batch, n)`` and ``(*s, *batch)``.
        """
        x, y, lp = self._draw(sample_shape, simplex=True, with_lp=True)
        self._cache = _record(x, y)
        return x, lp

    def log_prob(self, value: Tensor) -> Tensor:
        r"""Log-density :math:`\log p(x)`, finite for this distribution's own last sample.

        Args:
            value: ``(*s, *batch, n)`` points of the simplex (see the class docstring for zeros).

        Returns:
            ``(*s, *batch)``.
        """
        lp = self._cached_log_prob(value)
        if lp is not None:
            return lp
        y = self._cached_log_sample(value)
        if y is None:
            if self._validate_args:
                _check_sample(self, value)
            y = value.clamp_min(torch.finfo(value.dtype).tiny).log()
        return _log_kappa(self._logits_raw, self._temp, y, simplex=True)


# --------------------------------------------------------------------------- binary family
class _BinaryBase(_TemperedBase):
    """Parameter handling shared by :class:`BinaryConcrete` and :class:`LogitBinaryConcrete`."""

    arg_constraints = {
        "probs": unit_interval,
        "logits": finite_real,
        "temperature": positive_finite,
    }

    def __init__(
        self,
        temperature: float | Tensor,
        probs: Tensor | float | None = None,
        logits: Tensor | float | None = None,
        validate_args: bool | None = None,
    ) -> None:
        validate = Distribution._validate_args if validate_args is None else bool(validate_args)
        name, param = _exactly_one(probs, logits)
        param = _to_float_tensor(name, param)
        dtype = _common_dtype(param, temperature)
        param = param.to(dtype)
        lam = _prepare_temperature(temperature, dtype, param.device, validate)
        if validate:
            if name == "logits":
                _check_finite("logits", param)
            elif param.numel() > 0:
                lo, hi = torch.aminmax(param.detach())
                if not (bool(lo >= 0) and bool(hi <= 1)):  # False for NaN too
                    bad = ~((param >= 0) & (param <= 1))
                    raise ValueError(
                        f"probs must lie in [0, 1], got probs={param} "
                        f"(invalid entries: {_show_bad(param, bad)})"
                    )
        try:  # a 0-dim temperature (the common case) broadcasts trivially
            batch_shape = (
                param.shape if lam.dim() == 0 else torch.broadcast_shapes(param.shape, lam.shape)
            )
        except RuntimeError as exc:
            raise ValueError(
                f"temperature of shape {tuple(lam.shape)} does not broadcast with {name} of "
                f"shape {tuple(param.shape)}, got temperature={lam}"
            ) from exc
        param = param.expand(batch_shape) if param.shape != batch_shape else param
        self.temperature = lam.expand(batch_shape) if lam.shape != batch_shape else lam
        if name == "probs":
            self.probs = param
            info = torch.finfo(dtype)
            p = param.clamp(info.tiny, 1.0 - info.eps / 2)
            self._logits_raw = p.log() - (-p).log1p()
        else:
            self._logits_raw = param
        self._scale = _python_scale(temperature)
        self._temp_raw = lam  # un-expanded: cheaper broadcasting in the kernels
        self._cache: tuple[Tensor, int, Tensor, bool] | None = None
        super().__init__(batch_shape, torch.Size(), validate_args=False)
        self._validate_args = validate

    @lazy_property
    def logits(self) -> Tensor:
        r"""Logit :math:`\ell` (``batch_shape``); a sample rounds to 1 w.p. :math:`\sigma(\ell)`."""
        return self._logits_raw

    @lazy_property
    def probs(self) -> Tensor:
        r""":math:`\sigma(\ell)` (``batch_shape``): the probability that a sample rounds to 1."""
        return torch.sigmoid(self._logits_raw)

    def _logit_sample(self, sample_shape: _size) -> Tensor:
        shape = self._extended_shape(sample_shape)
        raw = self._logits_raw
        draw = torch.float32 if raw.dtype in _HALF_TYPES else raw.dtype
        u = _uniform(shape, dtype=draw, device=raw.device)
        noise = torch.logit(u).to(raw.dtype)  # Logistic(0, 1), finite: u in [tiny, 1 - 2^-24]
        # ``noise + raw`` out of place: the parameters may be batched (vmap) where noise is not.
        if self._scale is not None:
            return torch.add(noise, raw).div_(self._scale)
        return torch.add(noise, raw) / self._temp_raw


class LogitBinaryConcrete(_BinaryBase):
    r"""The logit of a BinaryConcrete variable: :math:`y = (\ell + L)/\lambda \in \mathbb{R}`.

    :math:`L = \log U - \log(1-U) \sim \mathrm{Logistic}(0,1)`, so
    :math:`y \sim \mathrm{Logistic}(\ell/\lambda,\ 1/\lambda)`:

    .. math::

        \log p(y) = \log\lambda + (\ell - \lambda y) - 2\operatorname{softplus}(\ell - \lambda y),
        \qquad P(Y \le y) = \sigma(\lambda y - \ell).

    This is the right space for a KL term in a VAE: the density is finite for every sample at
    every temperature. Shapes: ``logits``/``probs`` and ``temperature`` broadcast to
    ``batch_shape``; ``event_shape = ()``.

    Args:
        temperature: :math:`\lambda > 0` (finite), number or Tensor.
        probs: :math:`\sigma(\ell) \in [0,1]` (clamped to :math:`[\text{tiny}, 1-\epsilon/2]`).
        logits: :math:`\ell` (finite). Exactly one of ``probs``/``logits``.
        validate_args: as in ``torch.distributions`` (default on).
    """

    support = finite_real

    def rsample(self, sample_shape: _size = _NO_SAMPLE) -> Tensor:
        """Reparameterised sample :math:`y`, shape ``(*sample_shape, *batch)``."""
        y = self._logit_sample(sample_shape)
        self._cache = _record(y, y)
        return y

    def rsample_and_log_prob(self, sample_shape: _size = _NO_SAMPLE) -> tuple[Tensor, Tensor]:
        """``y = rsample(s)`` and ``log_prob(y)``; shapes ``(*s, *batch)`` twice."""
        y = self.rsample(sample_shape)
        return y, self.log_prob(y)

    def log_prob(self, value: Tensor) -> Tensor:
        """Logistic log-density (softplus form, no overflow); ``(*s, *batch)``."""
        if self._validate_args and self._cached_log_sample(value) is None:
            _check_sample(self, value)
        return logit_binary_concrete_log_prob(self._logits_raw, self._temp, value)

    def cdf(self, value: Tensor) -> Tensor:
        r""":math:`\sigma(\lambda y - \ell)`."""
        if self._validate_args:
            _check_sample(self, value)
        return torch.sigmoid(value * self.temperature - self._logits_raw)

    def icdf(self, value: Tensor) -> Tensor:
        r""":math:`(\ell + \operatorname{logit} q)/\lambda` for :math:`q \in (0,1)`."""
        return (self._logits_raw + torch.logit(value)) / self.temperature

    @property
    def mean(self) -> Tensor:
        r""":math:`\ell/\lambda` (the logistic location)."""
        return self._logits_raw / self.temperature

    @property
    def variance(self) -> Tensor:
        r""":math:`\pi^2/(3\lambda^2)`."""
        return (math.pi**2 / 3) / self.temperature.square()

    def entropy(self) -> Tensor:
        r"""Differential entropy :math:`2 - \log\lambda` of the logistic law."""
        return 2.0 - self.temperature.log()


class BinaryConcrete(_BinaryBase):
    r"""The binary Concrete (relaxed Bernoulli) distribution on (0, 1).

    .. math::

        x = \sigma\!\Big(\frac{\ell + L}{\lambda}\Big),\quad L\sim\mathrm{Logistic}(0,1),\qquad
        p(x) = \frac{\lambda\,\alpha\,x^{-\lambda-1}(1-x)^{-\lambda-1}}
                    {\big(\alpha x^{-\lambda} + (1-x)^{-\lambda}\big)^2},

    computed in logit space with :math:`y = \operatorname{logit} x` as

    .. math::

        \log p(x) = \log\lambda + d - 2\operatorname{softplus}(d)
                    + \operatorname{softplus}(y) + \operatorname{softplus}(-y),
        \qquad d = \ell - \lambda y,

    which does not overflow for :math:`|d|` up to the float range (no ``log1p(exp(.))``).
    :math:`P(X \le x) = \sigma(\lambda\operatorname{logit}x - \ell)` and
    :math:`P(X > 1/2) = \sigma(\ell)`.

    Low temperatures: samples may round to exactly 0 or 1 in float32. The distribution keeps the
    logit :math:`y` of its last sample, and ``log_prob`` of that very tensor uses it (finite).
    For any other ``value``, entries are clamped to :math:`[\text{tiny}, 1-\epsilon/2]` before
    the logit (so 0 and 1 give finite values at the nudged points, like
    ``torch.distributions.RelaxedBernoulli``). Support check: the closed interval [0, 1].

    Shapes and arguments as :class:`LogitBinaryConcrete`; ``event_shape = ()``.
    """

    support = unit_interval

    @property
    def mean(self) -> Tensor:
        """No closed form: raises ``NotImplementedError`` (estimate by Monte Carlo)."""
        raise NotImplementedError(
            "BinaryConcrete has no closed-form mean; estimate it by Monte Carlo, "
            "e.g. dist.sample((10000,)).mean(0)"
        )

    @property
    def variance(self) -> Tensor:
        """No closed form: raises ``NotImplementedError`` (estimate by Monte Carlo)."""
        raise NotImplementedError(
            "BinaryConcrete has no closed-form variance; estimate it by Monte Carlo, "
            "e.g. dist.sample((10000,)).var(0)"
        )

    @property
    def logit_binary_concrete(self) -> LogitBinaryConcrete:
        """The :class:`LogitBinaryConcrete` with the same parameters (the law of logit x)."""
        d = LogitBinaryConcrete(self._temp, logits=self._logits_raw, validate_args=False)
        d._validate_args = self._validate_args
        return d

    def rsample(self, sample_shape: _size = _NO_SAMPLE) -> Tensor:
        """Reparameterised sample :math:`x \\in [0,1]`, shape ``(*sample_shape, *batch)``."""
        y = self._logit_sample(sample_shape)
        x = torch.sigmoid(y)
        self._cache = _record(x, y)
        return x

    def rsample_and_log_prob(self, sample_shape: _size = _NO_SAMPLE) -> tuple[Tensor, Tensor]:
        """``x = rsample(s)`` and ``log_prob(x)`` (from the stored logit); ``(*s, *batch)``."""
        x = self.rsample(sample_shape)
        return x, self.log_prob(x)

    def _logit_of(self, value: Tensor) -> Tensor:
        y = self._cached_log_sample(value)
        if y is None:
            if self._validate_args:
                _check_sample(self, value)
            info = torch.finfo(value.dtype)
            v = value.clamp(info.tiny, 1.0 - info.eps / 2)
            y = v.log() - (-v).log1p()
        return y

    def log_prob(self, value: Tensor) -> Tensor:
        """Log-density of ``value`` in (0, 1) (see the class docstring); ``(*s, *batch)``."""
        y = self._logit_of(value)
        sp = torch.nn.functional.softplus
        return logit_binary_concrete_log_prob(self._logits_raw, self._temp, y) + sp(y) + sp(-y)

    def cdf(self, value: Tensor) -> Tensor:
        r""":math:`\sigma(\lambda\operatorname{logit}(x) - \ell)`."""
        y = self._logit_of(value)
        return torch.sigmoid(y * self.temperature - self._logits_raw)

    def icdf(self, value: Tensor) -> Tensor:
        r""":math:`\sigma((\ell + \operatorname{logit} q)/\lambda)` for :math:`q \in (0,1)`."""
        return torch.sigmoid((self._logits_raw + torch.logit(value)) / self.temperature)
