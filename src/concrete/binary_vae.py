r"""The binary latent-variable model of Maddison et al. (2017, Sec. 5.1 and App. D).

One stochastic layer of :math:`N` binary units (200 in the paper) explains a binary image
:math:`x \in \{0, 1\}^D` (:math:`D = 784`):

.. math::

    p_a(b) = \prod_{j=1}^N \sigma(a_j)^{b_j}\,\sigma(-a_j)^{1-b_j}, \qquad
    p_\theta(x \mid b) = \prod_{d=1}^D \sigma(\eta_d)^{x_d}\,\sigma(-\eta_d)^{1-x_d},
    \quad \eta = \mathrm{dec}_\theta(2b - 1),

with a learned factorised Bernoulli prior (logits :math:`a`) and the units presented to the
decoder on the corners of :math:`\{-1, 1\}^N` (App. D.2: :math:`s = 2b - 1`). The variational
posterior is factorised too, :math:`q_\phi(b \mid x) = \prod_j \mathrm{Bernoulli}(b_j;
\sigma(\ell_j(x)))`, :math:`\ell = \mathrm{enc}_\phi(x - \bar x)` with the input centred by a
running mean :math:`\bar x` (App. D.4). Two architectures (:data:`ARCHITECTURES`):

* ``"linear"`` -- the paper's "200H–784V": one affine map each way,
  :math:`\ell(x) = W(x - \bar x) + c`, :math:`\eta(s) = V s + d`;
* ``"nonlinear"`` -- "200H∼784V": two tanh layers of ``hidden`` (200) units in the encoder
  (:math:`D \to 200 \to 200 \to N`) and in the decoder (:math:`N \to 200 \to 200 \to D`).
  App. D.1 sizes the tanh layers "the same size as the preceding stochastic layer in the
  computation graph": 200 for the decoder; we read it the same way for the encoder (the
  architectures of Burda et al. 2016, which App. D says these follow, use equal widths both
  ways) -- ``hidden`` changes it.

App. D.4 centres "the layers of the inference network" by a running mean (rate 0.9) that is
subtracted, without gradient, before a layer is used and not updated in evaluation; with one
stochastic layer the only layer the inference network reads is the image, so that is what is
centred here.

Initialisation (App. D.3, D.5): weights by Glorot & Bengio's uniform heuristic, every bias 0
except the decoder's output bias :math:`d`, set to the logit of the training-pixel means.

Training objectives (modules with ``loss(x) -> dict``, so they drop into a training loop):

* :class:`ConcreteObjective` -- the relaxed multi-sample bound :math:`\tilde{\mathcal L}_m`
  with the pre-sigmoid logistic nodes (``LogitBinaryConcrete``, App. C.3.2), posterior
  temperature :math:`\lambda_1 = 2/3`, prior temperature :math:`\lambda_2 = 1/2` (App. D.5);
* :class:`NVILObjective` -- the discrete single-sample ELBO with NVIL's score-function
  estimator (input-dependent baseline, centring, variance normalisation; Mnih & Gregor 2014);
* :class:`VIMCOObjective` -- the discrete :math:`\mathcal L_m` with VIMCO's leave-one-out
  signals (Mnih & Rezende 2016), :math:`m = 5` in the paper's comparison.

The two score-function objectives take their learning signals from
:mod:`concrete.estimators` (:class:`~concrete.estimators.NVIL`,
:func:`~concrete.estimators.vimco_surrogate`). Each objective's ``loss(x)["loss"]`` is a
scalar whose ``.backward()`` puts the estimator's gradient into encoder, decoder, prior (and
NVIL's baseline network); :func:`fit_steps` trains with Adam as in App. D.5.

Evaluation uses *discrete* latents (:func:`iw_bound`, :func:`evaluate_bound`): the
importance-weighted bound :math:`\mathcal L_k` with :math:`q` as proposal (Burda et al. 2016),
with exact enumeration for tiny models (:func:`exact_log_px`, by :mod:`concrete.evaluate`
through a two-class view of each bit). Data:
:func:`load_binarized_mnist` (the fixed binarization of Salakhutdinov & Murray 2008, or a
labelled seeded fallback). Shapes: ``B`` a batch, ``m``/``k`` samples, ``N`` latent units,
``D`` pixels.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from concrete.distributions import LogitBinaryConcrete
from concrete.evaluate import bernoulli_log_likelihood
from concrete.evaluate import exact_log_px as _exact_log_px_categorical
from concrete.mnist import LAROCHELLE_FILE, _missing_data_message, data_dir, load_mnist

__all__ = [
    "ARCHITECTURES",
    "PAPER_NAMES",
    "POSTERIOR_TEMPERATURE",
    "PRIOR_TEMPERATURE",
    "BinaryBounds",
    "BinarizedMNIST",
    "BinaryVAE",
    "ConcreteObjective",
    "NVILObjective",
    "TrainingRun",
    "VIMCOObjective",
    "bernoulli_log_prob",
    "evaluate_bound",
    "exact_log_px",
    "fit_steps",
    "linear_decay",
    "GradientStats",
    "gradient_variance",
    "iw_bound",
    "load_binarized_mnist",
    "random_subset",
    "relaxed_bound",
    "two_class_view",
]

ARCHITECTURES = ("linear", "nonlinear")
#: The paper's names of the two architectures (Table 1).
PAPER_NAMES = {"linear": "200H–784V", "nonlinear": "200H∼784V"}
#: Temperatures of the binary relaxation, App. D.5: posterior λ1 = 2/3, prior λ2 = 1/2.
POSTERIOR_TEMPERATURE = 2.0 / 3.0
PRIOR_TEMPERATURE = 0.5
#: Clamp of the pixel means before the logit (pixels that are never on would give -inf).
_MEAN_CLAMP = 1e-3


# --------------------------------------------------------------------------------- helpers
def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {name}={value!r}")
    return value


def _positive_float(name: str, value: object) -> float:
    if isinstance(value, Tensor) and value.numel() == 1:
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a positive finite number, got {name}={value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {name}={value!r}")
    return float(value)


def _is_nonnegative_number(value: object) -> bool:
    """Whether ``value`` is an int or float (not a bool), finite and ``>= 0``."""
    return (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and math.isfinite(value)
        and value >= 0
    )


def _unit_float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a number in [0, 1), got {name}={value!r}")
    return float(value)


def _check_images(name: str, x: object, width: int) -> Tensor:
    if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[-1] != width or len(x) == 0:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a (B > 0, {width}) tensor, got {name} of shape {shape}")
    if not torch.is_floating_point(x):
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return x


def _flush_tiny_(t: Tensor) -> Tensor:
    r"""Set the entries of ``t`` below :math:`\sqrt{\text{tiny}}` in magnitude to zero, in place.

    The running input mean of a pixel that stays off for many batches decays geometrically
    (:math:`0.9^k`) towards the subnormal floats (below ``finfo.tiny``, 1.2e-38 in float32),
    and so do its products with the encoder's weights and gradients. x86 CPUs compute with
    subnormal operands on a slow path: the matrix products that read the centred input became
    several times slower and a training step ran at half speed after ~1000 steps. Below
    :math:`\sqrt{\text{tiny}}` (1.1e-19 in float32; a mean that started at 1/640 or more gets
    there after ~390 batches without the pixel) a mean is zero for every purpose here, and a
    product of what remains with a number of that size or larger stays normal.
    """
    return t.masked_fill_(t.abs() < math.sqrt(torch.finfo(t.dtype).tiny), 0.0)


def _glorot_(module: nn.Module) -> None:
    """Glorot & Bengio (2010) uniform weights, zero biases, for every ``nn.Linear`` inside."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def bernoulli_log_prob(logits: Tensor, b: Tensor) -> Tensor:
    r""":math:`\sum_j b_j \ell_j - \operatorname{softplus}(\ell_j)` over the last dimension.

    The log-mass of :math:`b \in \{0,1\}^N` under
    :math:`\prod_j \mathrm{Bernoulli}(\sigma(\ell_j))`.
    ``logits``: ``(..., N)``; ``b``: broadcastable; returns ``(...)``.
    """
    return (b * logits - F.softplus(logits)).sum(-1)


# --------------------------------------------------------------------------------- model
class BinaryVAE(nn.Module):
    r"""One layer of ``n_latent`` binary units, factorised Bernoulli prior, posterior and pixels.

    Args:
        architecture: ``"linear"`` (200H–784V) or ``"nonlinear"`` (200H∼784V; two tanh layers
            of ``hidden`` units in encoder and decoder, App. D.1).
        n_latent: :math:`N`, the number of binary units (200 in the paper).
        n_visible: :math:`D`, the number of pixels (784).
        hidden: width of the tanh layers of ``"nonlinear"`` (200; ignored for ``"linear"``).
        pixel_means: ``(D,)`` mean of the training images; the decoder's output bias becomes
            :math:`\operatorname{logit}(\bar x)` with :math:`\bar x` clamped to
            :math:`[10^{-3}, 1 - 10^{-3}]` (App. D.3) and the running input mean starts there.
            ``None``: zero bias and zero running mean (set it later with
            :meth:`init_output_bias`).
        center_input: subtract the running mean :math:`\bar x` from the encoder's input
            (App. D.4): :math:`\bar x \leftarrow \rho\,\bar x + (1-\rho)\,\mathrm{mean}_B(x)`
            after each training-mode call, :math:`\rho` = ``center_decay`` = 0.9; not updated
            in eval mode; no gradient flows through it. Entries below
            :math:`\sqrt{\text{finfo.tiny}}` are set to 0 after each update (a pixel that stays
            off would otherwise decay into subnormal floats, which halve the CPU's step rate).

    Parameters: ``encoder`` (``(B, D) → (B, N)`` logits :math:`\ell`), ``decoder``
    (``(..., N)`` values :math:`s \in [-1, 1]^N` → ``(..., D)`` logits :math:`\eta`),
    ``prior_logits`` :math:`a` ``(N,)`` (zero at the start: :math:`p(b_j = 1) = 1/2`).
    """

    def __init__(
        self,
        architecture: str = "nonlinear",
        *,
        n_latent: int = 200,
        n_visible: int = 784,
        hidden: int = 200,
        pixel_means: Tensor | None = None,
        center_input: bool = True,
        center_decay: float = 0.9,
    ) -> None:
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(
                f"architecture must be one of {ARCHITECTURES}, got architecture={architecture!r}"
            )
        self.architecture = architecture
        self.n_latent = _positive_int("n_latent", n_latent)
        self.n_visible = _positive_int("n_visible", n_visible)
        self.hidden = _positive_int("hidden", hidden)
        if not isinstance(center_input, bool):
            raise ValueError(f"center_input must be a bool, got center_input={center_input!r}")
        self.center_input = center_input
        self.center_decay = _unit_float("center_decay", center_decay)
        if architecture == "linear":
            enc, dec = [n_visible, n_latent], [n_latent, n_visible]
        else:
            enc, dec = [n_visible, hidden, hidden, n_latent], [n_latent, hidden, hidden, n_visible]
        self.encoder = _mlp(enc)
        self.decoder = _mlp(dec)
        _glorot_(self)
        self.prior_logits = nn.Parameter(torch.zeros(n_latent))
        self.register_buffer("input_mean", torch.zeros(n_visible))
        if pixel_means is not None:
            self.init_output_bias(pixel_means)

    def __repr__(self) -> str:
        return (
            f"BinaryVAE({self.architecture!r} = {PAPER_NAMES.get(self.architecture, '')}, "
            f"n_latent={self.n_latent}, n_visible={self.n_visible}"
            + (f", hidden={self.hidden}" if self.architecture == "nonlinear" else "")
            + f", center_input={self.center_input})"
        )

    @torch.no_grad()
    def init_output_bias(self, pixel_means: Tensor) -> None:
        r"""Decoder output bias :math:`d = \log\bar x - \log(1 - \bar x)` (App. D.3).

        ``pixel_means``: ``(D,)`` in :math:`[0, 1]`, clamped to :math:`[10^{-3}, 1-10^{-3}]`.
        Also starts the running input mean of the centring at :math:`\bar x`.
        """
        if (
            not isinstance(pixel_means, Tensor)
            or pixel_means.shape != (self.n_visible,)
            or not torch.is_floating_point(pixel_means)
        ):
            shape = tuple(pixel_means.shape) if isinstance(pixel_means, Tensor) else pixel_means
            raise ValueError(
                f"pixel_means must be a float tensor of shape ({self.n_visible},), "
                f"got pixel_means={shape!r}"
            )
        if not bool(((pixel_means >= 0) & (pixel_means <= 1)).all()):
            raise ValueError("pixel_means must lie in [0, 1], got values outside (or NaN)")
        p = pixel_means.detach().clamp(_MEAN_CLAMP, 1 - _MEAN_CLAMP)
        bias = self.decoder[-1].bias
        bias.copy_((p.log() - (-p).log1p()).to(bias))
        self.input_mean.copy_(pixel_means.detach().to(self.input_mean))

    def encode(self, x: Tensor) -> Tensor:
        r"""Posterior logits :math:`\ell(x)`: ``(B, D)`` → ``(B, N)``.

        In training mode with ``center_input`` the running mean is updated after use.
        """
        if self.center_input:
            h = x - self.input_mean
            if self.training:
                with torch.no_grad():
                    self.input_mean.lerp_(x.detach().mean(0), 1.0 - self.center_decay)
                    _flush_tiny_(self.input_mean)
            return self.encoder(h)
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        r"""Pixel logits :math:`\eta = \mathrm{dec}(2z - 1)`: ``(..., N)`` → ``(..., D)``.

        ``z``: binary codes :math:`b \in \{0,1\}^N` or relaxed ones in :math:`(0, 1)^N`
        (:math:`z = \sigma(y)`, so :math:`2z - 1 = \tanh(y/2)`), any leading shape.
        """
        return self.decoder(2.0 * z - 1.0)

    def log_joint(self, x: Tensor, b: Tensor) -> Tensor:
        r""":math:`\log p_\theta(x \mid b) + \log p_a(b)` for binary codes.

        ``x``: ``(B, D)``; ``b``: ``(..., B, N)`` in {0, 1}; returns ``(..., B)``.
        """
        return bernoulli_log_likelihood(self.decode(b), x) + bernoulli_log_prob(
            self.prior_logits, b
        )

    def sample_posterior(
        self, logits: Tensor, samples: int, generator: torch.Generator | None = None
    ) -> Tensor:
        r"""Discrete codes :math:`b \sim q(b \mid x)`: ``(B, N)`` logits → ``(samples, B, N)``.

        :math:`b_j = \mathbb 1[u_j < \sigma(\ell_j)]`, :math:`u \sim U(0, 1)`; float 0/1 values.
        """
        _positive_int("samples", samples)
        u = torch.rand(
            (samples, *logits.shape), generator=generator, device=logits.device,
            dtype=logits.dtype,
        )
        return (u < torch.sigmoid(logits)).to(logits.dtype)


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    was = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was)


# --------------------------------------------------------------------------------- Concrete
def relaxed_bound(
    model: BinaryVAE,
    x: Tensor,
    m: int = 1,
    *,
    posterior_temperature: float = POSTERIOR_TEMPERATURE,
    prior_temperature: float = PRIOR_TEMPERATURE,
    noise: Tensor | None = None,
) -> Tensor:
    r"""The relaxed multi-sample bound :math:`\tilde{\mathcal L}_m(x)` of each image, in nats.

    With the pre-sigmoid logistic nodes of App. C.3.2 as the stochastic nodes,
    :math:`y_i = (\ell(x) + L_i)/\lambda_1`, :math:`L_i \sim \mathrm{Logistic}(0, 1)^N`
    (:class:`~concrete.distributions.LogitBinaryConcrete`):

    .. math::

        \tilde{\mathcal L}_m(x) = \log \frac1m \sum_{i=1}^m
            \frac{p_\theta(x \mid \sigma(y_i))\, f_{a,\lambda_2}(y_i)}{g_{\ell,\lambda_1}(y_i)},
        \qquad \log g_{\ell,\lambda}(y) = \log\lambda + \ell - \lambda y
            - 2\operatorname{softplus}(\ell - \lambda y),

    :math:`g` the posterior's and :math:`f` the prior's logistic density (location
    :math:`\ell/\lambda_1` resp. :math:`a/\lambda_2`), summed over the :math:`N` units; the
    decoder sees :math:`2\sigma(y) - 1` (App. D.2). It is a lower bound on the log-density of
    the *relaxed* model (App. C.2, Eq. 23) and reparameterised: its gradient flows into
    encoder, decoder and prior logits.

    Args:
        model: the :class:`BinaryVAE`.
        x: ``(B, D)`` binary images.
        m: number of samples :math:`m \ge 1`.
        posterior_temperature, prior_temperature: :math:`\lambda_1 = 2/3`, :math:`\lambda_2 =
            1/2` (App. D.5).
        noise: optional Logistic(0, 1) noise :math:`L` of shape ``(m, B, N)`` (common random
            numbers, tests); drawn fresh when ``None``.

    Returns:
        ``(B,)``.
    """
    m = _positive_int("m", m)
    lam1 = _positive_float("posterior_temperature", posterior_temperature)
    lam2 = _positive_float("prior_temperature", prior_temperature)
    _check_images("x", x, model.n_visible)
    logits = model.encode(x)
    q = LogitBinaryConcrete(lam1, logits=logits, validate_args=False)
    if noise is None:
        y, log_q = q.rsample_and_log_prob((m,))
    else:
        if noise.shape != (m, *logits.shape):
            raise ValueError(
                f"noise must have shape (m, B, N) = {(m, *logits.shape)}, "
                f"got noise of shape {tuple(noise.shape)}"
            )
        y = (logits + noise) / lam1
        log_q = q.log_prob(y)
    prior = LogitBinaryConcrete(lam2, logits=model.prior_logits, validate_args=False)
    log_w = (
        bernoulli_log_likelihood(model.decode(torch.sigmoid(y)), x)
        + prior.log_prob(y).sum(-1)
        - log_q.sum(-1)
    )  # (m, B)
    if m == 1:
        return log_w[0]
    return torch.logsumexp(log_w, 0) - math.log(m)


class ConcreteObjective(nn.Module):
    r"""Train a :class:`BinaryVAE` on :math:`-\tilde{\mathcal L}_m` (:func:`relaxed_bound`).

    ``loss(x)`` returns ``{"loss": -mean_B L̃_m, "bound": mean_B L̃_m}`` (0-dim tensors); its
    ``.backward()`` gives the reparameterisation gradient of the relaxed bound for encoder,
    decoder and prior. Defaults: :math:`m = 1`, :math:`\lambda_1 = 2/3`, :math:`\lambda_2 =
    1/2` (App. D.5).
    """

    def __init__(
        self,
        model: BinaryVAE,
        m: int = 1,
        *,
        posterior_temperature: float = POSTERIOR_TEMPERATURE,
        prior_temperature: float = PRIOR_TEMPERATURE,
    ) -> None:
        super().__init__()
        if not isinstance(model, BinaryVAE):
            raise ValueError(f"model must be a BinaryVAE, got {type(model).__name__}")
        self.model = model
        self.m = _positive_int("m", m)
        self.posterior_temperature = _positive_float("posterior_temperature",
                                                     posterior_temperature)
        self.prior_temperature = _positive_float("prior_temperature", prior_temperature)

    @property
    def name(self) -> str:
        """``"concrete"`` with ``m``, e.g. ``"concrete m=1"``."""
        return f"concrete m={self.m}"

    def loss(self, x: Tensor) -> dict[str, Tensor]:
        """``{"loss", "bound"}`` for a batch ``x`` ``(B, D)``."""
        bound = relaxed_bound(
            self.model, x, self.m, posterior_temperature=self.posterior_temperature,
            prior_temperature=self.prior_temperature,
        ).mean()
        return {"loss": -bound, "bound": bound.detach()}


# --------------------------------------------------------------------------------- NVIL, VIMCO
def _discrete_terms(model: BinaryVAE, x: Tensor, m: int) -> tuple[Tensor, Tensor]:
    r""":math:`\log p(x, b_i)`, :math:`\log q(b_i \mid x)` for :math:`b_i \sim q`: ``(m, B)`` each.

    The codes are sampled without gradient; ``log_q`` is differentiable in the encoder and
    ``log_p`` in the decoder and the prior.
    """
    logits = model.encode(x)
    b = model.sample_posterior(logits.detach(), m)  # (m, B, N)
    return model.log_joint(x, b), bernoulli_log_prob(logits, b)


class NVILObjective(nn.Module):
    r"""Train a :class:`BinaryVAE` on the single-sample discrete ELBO with NVIL (m = 1).

    For one code :math:`b \sim q_\phi(b \mid x)` per image the learning signal
    :math:`l = \log p_{\theta,a}(x, b) - \log q_\phi(b \mid x)` is centred by an
    input-dependent baseline network :math:`C_\psi(x)` and a running mean :math:`c`, and
    normalised by a running standard deviation (Mnih & Gregor 2014, Alg. 1; computed by
    :class:`concrete.estimators.NVIL`, decay :math:`\alpha = 0.8`):
    :math:`\hat l = (l - C_\psi(x) - c)/\max(1, \sqrt v)`. ``loss(x)`` returns
    ``{"loss", "elbo"}`` with ``loss`` the negated surrogate averaged over the batch, whose
    ``.backward()`` gives (as descent directions)
    :math:`-\nabla_{\theta,a}\log p(x, b)`, :math:`-\hat l\,\nabla_\phi \log q(b\mid x)` and
    :math:`-\hat l\,\nabla_\psi C_\psi(x)`; ``elbo`` is the batch mean of :math:`l`. The
    encoder's expected gradient is :math:`\nabla_\phi\,\mathrm{ELBO}/\max(1, \sqrt v)`: unbiased
    in direction, scaled by the variance normalisation.

    The running moments (and the model's input centring) are updated only in training mode.

    Args:
        model: the :class:`BinaryVAE`.
        baseline_hidden: :math:`C_\psi`: ``D → baseline_hidden (tanh) → 1`` (100 tanh units, the
            baseline of Mnih & Gregor 2014 as described by Gu et al. 2016, Sec. 5); Glorot
            weights, zero biases.
        decay: :math:`\alpha` of the running moments.
        normalise: the variance normalisation.
    """

    def __init__(
        self,
        model: BinaryVAE,
        *,
        baseline_hidden: int = 100,
        decay: float = 0.8,
        normalise: bool = True,
    ) -> None:
        from concrete.estimators import NVIL

        super().__init__()
        if not isinstance(model, BinaryVAE):
            raise ValueError(f"model must be a BinaryVAE, got {type(model).__name__}")
        self.model = model
        hidden = _positive_int("baseline_hidden", baseline_hidden)
        baseline = nn.Sequential(
            nn.Linear(model.n_visible, hidden), nn.Tanh(), nn.Linear(hidden, 1)
        )
        _glorot_(baseline)
        self.nvil = NVIL(baseline, decay=decay, normalise=normalise)

    m = 1
    name = "nvil m=1"

    def loss(self, x: Tensor) -> dict[str, Tensor]:
        """``{"loss", "elbo"}`` for a batch ``x`` ``(B, D)``."""
        _check_images("x", x, self.model.n_visible)
        log_p, log_q = _discrete_terms(self.model, x, 1)
        surrogate = self.nvil.surrogate(log_p[0], log_q[0], x)
        return {"loss": -surrogate / len(x), "elbo": surrogate.detach() / len(x)}


class VIMCOObjective(nn.Module):
    r"""Train a :class:`BinaryVAE` on the discrete multi-sample bound :math:`\mathcal L_m` (VIMCO).

    For :math:`m` codes :math:`b_i \sim q_\phi(b \mid x)` per image (:math:`m = 5` in the
    paper's comparison), :math:`\log w_i = \log p(x, b_i) - \log q(b_i \mid x)`,
    :math:`\hat L = \log\frac1m\sum_i w_i`, and VIMCO's leave-one-out signals
    :math:`\hat l_i = \hat L - \hat L_{-i}` (the geometric mean of the others in place of
    :math:`w_i`; Mnih & Rezende 2016, computed by
    :func:`concrete.estimators.vimco_surrogate`). ``loss(x)`` returns ``{"loss", "bound"}``:
    ``loss`` the negated surrogate averaged over the batch, whose ``.backward()`` gives minus
    :math:`\sum_i \hat l_i \nabla_\phi\log q(b_i \mid x) + \sum_i \tilde w_i \nabla\log w_i`
    (an unbiased estimate of :math:`-\nabla\,\mathbb E\hat L` for encoder, decoder and prior),
    ``bound`` the batch mean of :math:`\hat L`. ``m >= 2``.
    """

    def __init__(self, model: BinaryVAE, m: int = 5) -> None:
        super().__init__()
        if not isinstance(model, BinaryVAE):
            raise ValueError(f"model must be a BinaryVAE, got {type(model).__name__}")
        self.model = model
        if _positive_int("m", m) < 2:
            raise ValueError(f"m must be at least 2 for VIMCO's leave-one-out signals, got m={m}")
        self.m = m

    @property
    def name(self) -> str:
        """``"vimco"`` with ``m``, e.g. ``"vimco m=5"``."""
        return f"vimco m={self.m}"

    def loss(self, x: Tensor) -> dict[str, Tensor]:
        """``{"loss", "bound"}`` for a batch ``x`` ``(B, D)``."""
        from concrete.estimators import vimco_surrogate

        _check_images("x", x, self.model.n_visible)
        log_p, log_q = _discrete_terms(self.model, x, self.m)
        log_w = log_p - log_q
        surrogate = vimco_surrogate(log_w, log_q)
        return {"loss": -surrogate / len(x), "bound": surrogate.detach() / len(x)}


# --------------------------------------------------------------------------------- gradients
@dataclass(frozen=True)
class GradientStats:
    r"""Spread of ``repeats`` independent gradient estimates :math:`g_1, \dots, g_R` of one
    parameter group on one batch (:func:`gradient_variance`).

    ``variance``: :math:`\frac{1}{R-1}\sum_r \lVert g_r - \bar g\rVert^2` (the trace of the
    covariance); ``mean_norm_sq``: :math:`\lVert\bar g\rVert^2`; ``relative_variance``: their
    ratio, invariant to a rescaling of the estimator (NVIL's variance normalisation rescales
    its gradient, so compare estimators by this); ``repeats``: :math:`R`.
    """

    variance: float
    mean_norm_sq: float
    relative_variance: float
    repeats: int


def gradient_variance(
    objective: nn.Module, x: Tensor, *, repeats: int = 16, part: str = "encoder"
) -> GradientStats:
    r"""Variance of an objective's gradient for one parameter group at fixed parameters.

    ``repeats`` backward passes of ``objective.loss(x)["loss"]`` on the same batch ``x``
    ``(B, D)``, each with fresh noise, in eval mode (no running statistic moves), gradients of
    ``objective.model.<part>``'s parameters (``"encoder"``, ``"decoder"``) flattened to
    :math:`g_r \in \mathbb R^d`. Returns :class:`GradientStats`; the parameters' ``.grad``
    are left as they were.
    """
    repeats = _positive_int("repeats", repeats)
    if repeats < 2:
        raise ValueError(f"repeats must be at least 2 to estimate a variance, got {repeats}")
    if part not in ("encoder", "decoder"):
        raise ValueError(f"part must be 'encoder' or 'decoder', got part={part!r}")
    if not hasattr(objective, "loss") or not hasattr(objective, "model"):
        raise ValueError(f"objective must have .model and .loss(x), got {type(objective)}")
    _check_images("x", x, objective.model.n_visible)
    params = list(getattr(objective.model, part).parameters())
    grads = []
    with _eval_mode(objective):
        for _ in range(repeats):
            g = torch.autograd.grad(objective.loss(x)["loss"], params, allow_unused=True)
            grads.append(torch.cat([
                (gi if gi is not None else torch.zeros_like(p)).reshape(-1)
                for gi, p in zip(g, params, strict=True)
            ]))
    g = torch.stack(grads)  # (R, d)
    mean = g.mean(0)
    var = float(((g - mean) ** 2).sum(1).sum() / (repeats - 1))
    msq = float(mean.pow(2).sum())
    rel = var / msq if msq > 0 else math.inf
    return GradientStats(var, msq, rel, repeats)


# --------------------------------------------------------------------------------- evaluation
def two_class_view(model: BinaryVAE) -> tuple[Callable[[Tensor], Tensor],
                                              Callable[[Tensor], Tensor], Tensor]:
    """The model as :mod:`concrete.evaluate` sees it: each bit a 2-class categorical, logits (0, ℓ).

    Returns ``(encode, decode, prior_logits)``: ``encode(x)`` ``(B, N, 2)``, ``decode(z)`` of
    one-hot ``(..., N, 2)`` codes, prior logits ``(N, 2)``.
    """

    def encode(x: Tensor) -> Tensor:
        logits = model.encode(x)
        return torch.stack((torch.zeros_like(logits), logits), -1)  # (B, N, 2)

    def decode(z: Tensor) -> Tensor:  # one-hot (..., N, 2) → pixel logits
        return model.decode(z[..., 1])

    a = model.prior_logits.detach()
    return encode, decode, torch.stack((torch.zeros_like(a), a), -1)  # (N, 2)


@torch.no_grad()
def iw_bound(
    model: BinaryVAE,
    x: Tensor,
    k: int,
    *,
    chunk: int = 100,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Importance-weighted bound :math:`\mathcal L_k(x)` with *discrete* codes, in nats.

    .. math::

        \mathcal L_k(x) = \log\frac1k\sum_{i=1}^k
            \frac{p_\theta(x \mid b_i)\,p_a(b_i)}{q_\phi(b_i \mid x)},
        \qquad b_i \sim q_\phi(b \mid x)\ \text{i.i.d.}

    :math:`\mathbb E\,\mathcal L_k \le \log p(x)`, increasing in :math:`k` (Burda et al.
    2016). The :math:`k` codes are drawn and decoded ``chunk`` at a time (memory about
    ``chunk × B × D`` floats) and combined by a running log-sum-exp, in eval mode (the centring
    mean is not updated). The same law as :func:`concrete.evaluate.iw_bound` with each bit a
    two-class categorical of logits :math:`(0, \ell_j)` (checked in the tests), about twice as
    fast for binary codes. ``x``: ``(B, D)``; returns ``(B,)``.
    """
    _positive_int("k", k)
    _positive_int("chunk", chunk)
    _check_images("x", x, model.n_visible)
    with _eval_mode(model):
        logits = model.encode(x)
        acc = None
        for start in range(0, k, chunk):
            b = model.sample_posterior(logits, min(chunk, k - start), generator)
            log_w = model.log_joint(x, b) - bernoulli_log_prob(logits, b)  # (s, B)
            lse = torch.logsumexp(log_w, 0)
            acc = lse if acc is None else torch.logaddexp(acc, lse)
    return acc - math.log(k)


@torch.no_grad()
def exact_log_px(model: BinaryVAE, x: Tensor, *, max_codes: int = 1 << 16) -> Tensor:
    r"""Exact :math:`\log p(x) = \operatorname{logsumexp}_{b \in \{0,1\}^N}\log p(x, b)`.

    Enumerates the :math:`2^N` codes (refuses more than ``max_codes``) with
    :func:`concrete.evaluate.exact_log_px`. For tiny models and tests. ``x``: ``(B, D)``;
    returns ``(B,)``.
    """
    _check_images("x", x, model.n_visible)
    with _eval_mode(model):
        _, decode, prior = two_class_view(model)
        return _exact_log_px_categorical(
            decode, x, model.n_latent, 2, prior_logits=prior, max_codes=max_codes
        )


@dataclass(frozen=True)
class BinaryBounds:
    r"""Mean :math:`-\mathcal L_k` over a set of images, in nats (an upper bound on the NLL).

    ``neg_log_px``: :math:`-\frac1n\sum_i \mathcal L_k(x_i)`; ``stderr``: its standard error
    over the images (the spread of the images, not of the estimator); ``iw``: per-image
    :math:`\mathcal L_k` ``(n,)``; ``k``, ``n``; ``seconds``: evaluation time.
    """

    neg_log_px: float
    stderr: float
    iw: Tensor
    k: int
    n: int
    seconds: float

    def __str__(self) -> str:
        return f"-L_{self.k} = {self.neg_log_px:.2f} ± {self.stderr:.2f} nats (n={self.n})"


def evaluate_bound(
    model: BinaryVAE,
    images: Tensor,
    *,
    k: int = 1000,
    batch_size: int = 100,
    chunk: int = 100,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> BinaryBounds:
    r""":math:`-\mathcal L_k` (:func:`iw_bound`) averaged over ``images`` ``(n, D)``.

    Images go ``batch_size`` at a time (moved to ``device``, default the model's), the
    :math:`k` codes ``chunk`` at a time: memory about ``chunk × batch_size × D`` floats
    (k = 1000 or 10 000 fit). The paper uses :math:`k = 50\,000` on the whole test set
    (Sec. 5.2); pass a random subset (:func:`random_subset`) -- the fixed test set is sorted
    by digit.
    """
    _positive_int("k", k)
    _positive_int("batch_size", batch_size)
    _positive_int("chunk", chunk)
    _check_images("images", images, model.n_visible)
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    start = time.perf_counter()
    out = []
    for i in range(0, len(images), batch_size):
        x = images[i : i + batch_size].to(dev, torch.float32)
        out.append(iw_bound(model, x, k, chunk=chunk, generator=generator).cpu())
    iw = torch.cat(out)
    if not bool(torch.isfinite(iw).all()):
        raise ValueError("the importance-weighted bound is not finite for some images")
    n = len(iw)
    se = float(iw.std(unbiased=True) / math.sqrt(n)) if n > 1 else float("nan")
    return BinaryBounds(-float(iw.mean()), se, iw, k, n, time.perf_counter() - start)


def random_subset(images: Tensor, n: int, seed: int = 0) -> Tensor:
    """``n`` rows of ``images`` drawn without replacement under ``seed`` (sorted test sets)."""
    if not isinstance(images, Tensor) or images.dim() < 1:
        raise ValueError(f"images must be a tensor with a first dimension, got {images!r}")
    _positive_int("n", n)
    if n > len(images):
        raise ValueError(f"n must be at most len(images)={len(images)}, got n={n}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got seed={seed!r}")
    gen = torch.Generator().manual_seed(seed)
    return images[torch.randperm(len(images), generator=gen)[:n]]


# --------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class BinarizedMNIST:
    """Fixed-binarized MNIST: ``train`` (50000, 784), ``valid`` (10000, 784), ``test`` (10000,
    784), float32 in {0, 1}; ``source``: ``"larochelle"`` (the papers' file) or ``"seeded"``
    (the fallback); ``description``: one line saying which, and from where."""

    train: Tensor
    valid: Tensor
    test: Tensor
    source: str
    description: str

    @property
    def pixel_means(self) -> Tensor:
        """Mean of the training images, ``(784,)`` (for :meth:`BinaryVAE.init_output_bias`)."""
        return self.train.mean(0)


def _obtain_message(path: os.PathLike[str]) -> str:
    return (
        f"The fixed binarization of MNIST (Salakhutdinov & Murray 2008; the file used by "
        f"Maddison et al. 2017 and most papers) is not at {path}. To obtain it, download "
        f"binarized_mnist_train.amat, binarized_mnist_valid.amat and binarized_mnist_test.amat "
        f"(Larochelle & Murray 2011; http://www.cs.toronto.edu/~larocheh/public/datasets/"
        f"binarized_mnist/) and save them as one .npz with uint8 arrays 'train' (50000, 784), "
        f"'valid' (10000, 784), 'test' (10000, 784), e.g. np.savez_compressed(path, "
        f"train=np.loadtxt('binarized_mnist_train.amat', dtype=np.uint8), ...); or set "
        f"$CONCRETE_DATA to a directory holding {LAROCHELLE_FILE}."
    )


def load_binarized_mnist(
    root: str | os.PathLike[str] | None = None,
    *,
    seed: int = 0,
    prefer_larochelle: bool = True,
    download: bool = True,
) -> BinarizedMNIST:
    r"""The fixed binarization of MNIST with the standard 50 000 / 10 000 / 10 000 split.

    Reads ``<data dir>/binarized_mnist/binarized_mnist_larochelle.npz`` (arrays ``train``,
    ``valid``, ``test``; data directory as :func:`concrete.mnist.data_dir`: ``root``,
    ``$CONCRETE_DATA``, ``~/.cache/concrete/data``). Without it a ``UserWarning`` says how to
    obtain it and the fallback is returned, labelled ``source="seeded"``: torchvision's
    training images 0–49 999 (train) and 50 000–59 999 (valid) and its test images, each pixel
    binarized once, :math:`x \sim \mathrm{Bernoulli}(g)`, under a generator seeded with
    ``seed`` (the same on every machine; numbers on it are close to, not equal to, numbers on
    the fixed file). If torchvision's files are missing too (and cannot be downloaded) a
    ``RuntimeError`` says where to put either.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got seed={seed!r}")
    root_path = data_dir(root)
    path = root_path / LAROCHELLE_FILE
    if prefer_larochelle and path.is_file():
        arrays = {}
        with np.load(path) as npz:
            for name, n in (("train", 50_000), ("valid", 10_000), ("test", 10_000)):
                if name not in npz.files:
                    raise ValueError(f"{path} has no {name!r} array (arrays: {npz.files})")
                a = npz[name]
                if a.shape != (n, 784) or a.max(initial=0) > 1:
                    raise ValueError(
                        f"{path}: {name!r} must be ({n}, 784) in {{0, 1}}, got {a.shape}"
                    )
                arrays[name] = torch.from_numpy(a.astype(np.float32))
        return BinarizedMNIST(
            **arrays, source="larochelle",
            description=f"the fixed binarization of Salakhutdinov & Murray (2008), {path}",
        )
    if prefer_larochelle:
        warnings.warn(
            _obtain_message(path) + f" Using a seeded binarization of torchvision's MNIST "
            f"(seed {seed}) instead.", UserWarning, stacklevel=2,
        )
    try:
        train_grey, _ = load_mnist(train=True, root=root_path, download=download)
        test_grey, _ = load_mnist(train=False, root=root_path, download=download)
    except RuntimeError as err:
        raise RuntimeError(
            _obtain_message(path) + " The fallback needs torchvision's MNIST: "
            + _missing_data_message(root_path, err.__cause__ or err)
        ) from err
    gen = torch.Generator().manual_seed(seed)
    train_all = torch.bernoulli(train_grey, generator=gen)
    test = torch.bernoulli(test_grey, generator=gen)
    return BinarizedMNIST(
        train_all[:50_000].contiguous(), train_all[50_000:].contiguous(), test,
        source="seeded",
        description=f"torchvision's MNIST binarized once with seed {seed} ({path} not found)",
    )


# --------------------------------------------------------------------------------- training
@dataclass
class TrainingRun:
    """What :func:`fit_steps` measured: evaluations at ``steps``, after ``seconds`` of training
    (evaluation time excluded), with the values ``evals`` (one dict per evaluation), and the
    training loss averaged over each interval (``train_loss``)."""

    steps: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, list]:
        """JSON-ready lists."""
        return {"steps": self.steps, "seconds": self.seconds, "evals": self.evals,
                "train_loss": self.train_loss}


def linear_decay(lr: float, progress: float, fraction: float) -> float:
    r"""Learning rate at ``progress`` :math:`p \ge 0` of a budget: constant, then linear to 0.

    .. math::

        \eta(p) = \eta_0 \min\Big(1, \frac{\max(0,\, 1 - p)}{f}\Big),

    :math:`\eta_0` = ``lr``, :math:`p` the share of the budget (steps or seconds) spent,
    :math:`f` = ``fraction`` :math:`\in [0, 1]` the final share over which the rate falls to
    zero (:math:`f = 0`: :math:`\eta_0` throughout). Scalars in, scalar out.
    """
    lr = _positive_float("lr", lr)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not (
        0 <= fraction <= 1
    ):
        raise ValueError(f"fraction must be a number in [0, 1], got fraction={fraction!r}")
    if not _is_nonnegative_number(progress):
        raise ValueError(f"progress must be a finite number >= 0, got progress={progress!r}")
    if fraction == 0:
        return lr
    return lr * min(1.0, max(0.0, 1.0 - progress) / fraction)


def fit_steps(
    objective: nn.Module,
    train: Tensor,
    *,
    steps: int,
    lr: float,
    batch_size: int = 64,
    seed: int = 0,
    eval_every: int | None = None,
    evaluate: Callable[[BinaryVAE], dict[str, float]] | None = None,
    time_limit: float | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    lr_schedule: Callable[[int, float], float] | None = None,
) -> TrainingRun:
    r"""Adam on ``objective.loss(x)["loss"]`` for ``steps`` minibatches (the paper's protocol).

    Each step draws ``batch_size`` images of ``train`` ``(n, D)`` (a fresh permutation each
    epoch, seeded by ``seed``; ``torch.manual_seed(seed)`` for the model's noise), and takes one
    Adam step (:math:`\beta = (0.9, 0.999)`, no weight decay; App. D.5) on all parameters of
    ``objective`` (the model's and, for NVIL, its baseline network's). Every ``eval_every``
    steps (and after the last) ``evaluate(model)`` is called in eval mode and its dict stored
    with the step and the training seconds so far. ``time_limit`` (seconds of training) stops
    early. ``optimizer``: continue with an existing one (default a new fused Adam).
    ``lr_schedule(done, seconds)``: the learning rate of the next step, given the steps taken
    and the training seconds spent so far in this call (e.g. a linear decay to zero over the
    end of a time budget with :func:`linear_decay`); ``None``: ``lr`` throughout.
    Raises ``FloatingPointError`` when the loss is not finite, ``ValueError`` when the schedule
    returns a learning rate that is not a finite number ``>= 0``.
    """
    from concrete.train import make_adam

    steps = _positive_int("steps", steps)
    lr = _positive_float("lr", lr)
    batch_size = _positive_int("batch_size", batch_size)
    if eval_every is not None:
        _positive_int("eval_every", eval_every)
    if time_limit is not None:
        _positive_float("time_limit", time_limit)
    if not hasattr(objective, "loss") or not hasattr(objective, "model"):
        raise ValueError(f"objective must have .model and .loss(x), got {type(objective)}")
    if lr_schedule is not None and not callable(lr_schedule):
        raise ValueError(f"lr_schedule must be callable or None, got lr_schedule={lr_schedule!r}")
    train = _check_images("train", train, objective.model.n_visible)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = optimizer or make_adam(objective.parameters(), lr=lr, weight_decay=0.0)
    run = TrainingRun()
    n = len(train)
    perm = torch.randperm(n, generator=gen)
    pos, elapsed, acc, count = 0, 0.0, 0.0, 0
    objective.train()
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        if pos + batch_size > n:
            perm, pos = torch.randperm(n, generator=gen), 0
        x = train[perm[pos : pos + batch_size]]
        pos += batch_size
        if lr_schedule is not None:
            rate = lr_schedule(step - 1, elapsed + time.perf_counter() - t0)
            if not _is_nonnegative_number(rate):
                raise ValueError(
                    f"lr_schedule must return a finite number >= 0, got {rate!r} at step {step}"
                )
            for group in opt.param_groups:
                group["lr"] = rate
        loss = objective.loss(x)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"training loss not finite at step {step}: {value}")
        acc += value
        count += 1
        done = step == steps or (
            time_limit is not None and elapsed + time.perf_counter() - t0 >= time_limit
        )
        if (eval_every is not None and step % eval_every == 0) or done:
            elapsed += time.perf_counter() - t0
            run.steps.append(step)
            run.seconds.append(elapsed)
            run.train_loss.append(acc / count)
            acc, count = 0.0, 0
            if evaluate is not None:
                with _eval_mode(objective):
                    run.evals.append(evaluate(objective.model))
            t0 = time.perf_counter()
        if done:
            break
    objective.train()
    return run
