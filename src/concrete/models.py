r"""Variational autoencoders with Gaussian and with categorical (relaxed) latent variables.

Two models share the same multilayer-perceptron encoder/decoder and the same observation model
(:class:`_VAEBase`):

* :class:`GaussianVAE` -- latent :math:`z \in \mathbb{R}^d`, posterior
  :math:`\mathcal{N}(\mu(x), \operatorname{diag}\sigma^2(x))`, prior :math:`\mathcal{N}(0, I)`,
  analytic KL (Kingma & Welling 2014);
* :class:`DiscreteVAE` -- :math:`N` categorical latent variables with :math:`K` classes each.
  Training uses a continuous relaxation (``objective``):

  - ``"concrete"`` (Maddison et al. 2017, App. C): :math:`y \sim \mathrm{ExpConcrete}(\alpha,
    \lambda_1)` in log space, the decoder sees :math:`z = e^{y}`, and the KL term is the
    single-sample estimate :math:`\log\kappa_{\alpha,\lambda_1}(y) - \log\kappa_{a,\lambda_2}(y)`
    against an ExpConcrete prior at temperature :math:`\lambda_2`;
  - ``"gumbel_softmax"`` (Jang et al. 2017): :math:`z = \operatorname{softmax}((\ell+G)/\lambda_1)`
    and the analytic KL of the *categorical* posterior to the categorical prior;
  - ``"straight_through"``: the same with a one-hot forward value and the relaxed gradient.

  Test (discrete) mode -- a flag on the same model, not a copy: the encoder's logits define
  categorical posteriors, codes are one-hot (sampled, or the arg max), and the KL term is the
  analytic categorical KL, so the loss is the negative discrete ELBO.

Observation models (``likelihood``): ``"gaussian"`` with a fixed standard deviation
``obs_scale`` :math:`\sigma` (the decoder outputs the mean) or ``"bernoulli"`` (the decoder
outputs logits). All log-likelihoods are summed over the data dimensions and are in nats.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from concrete.distributions import ExpConcrete
from concrete.kl import categorical_kl, relaxed_kl
from concrete.relaxed import gumbel_softmax

__all__ = ["GaussianVAE", "DiscreteVAE", "LIKELIHOODS", "OBJECTIVES", "mlp"]

LIKELIHOODS = ("gaussian", "bernoulli")
OBJECTIVES = ("concrete", "gumbel_softmax", "straight_through")
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


# --------------------------------------------------------------------------------- helpers
def _positive_float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a positive finite number, got {name}={value!r}")
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a positive finite number, got {name}={value!r}")
    return v


def _temperature(name: str, value: object) -> float | Tensor:
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a scalar, got {name} of shape {tuple(value.shape)}")
        return _positive_float(name, float(value))
    return _positive_float(name, value)


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {name}={value!r}")
    return int(value)


def _shape(input_shape: object) -> tuple[int, ...]:
    if isinstance(input_shape, int) and not isinstance(input_shape, bool):
        input_shape = (input_shape,)
    if not isinstance(input_shape, Sequence) or not input_shape:
        raise ValueError(f"input_shape must be an int or a tuple of ints, got {input_shape!r}")
    for d in input_shape:
        if isinstance(d, bool) or not isinstance(d, int) or d < 1:
            raise ValueError(
                f"input_shape must hold positive ints, got input_shape={input_shape!r}"
            )
    return tuple(int(d) for d in input_shape)


def _hidden(hidden: object) -> tuple[int, ...]:
    if isinstance(hidden, int) and not isinstance(hidden, bool):
        hidden = (hidden,)
    if not isinstance(hidden, Sequence):
        raise ValueError(f"hidden must be an int or a tuple of ints, got hidden={hidden!r}")
    for h in hidden:
        if isinstance(h, bool) or not isinstance(h, int) or h < 1:
            raise ValueError(f"hidden must hold positive ints, got hidden={hidden!r}")
    return tuple(int(h) for h in hidden)


def mlp(sizes: Sequence[int], activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    r"""A multilayer perceptron ``Linear(sizes[0], sizes[1]) → act → … → Linear(…, sizes[-1])``.

    No activation after the last layer. Input ``(B, sizes[0])``, output ``(B, sizes[-1])``.
    """
    if len(sizes) < 2:
        raise ValueError(f"sizes must have at least 2 entries, got sizes={list(sizes)!r}")
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------------- base class
class _VAEBase(nn.Module):
    r"""Shared parts: input shape, decoder output → observation model, log-likelihood.

    ``likelihood="gaussian"``: :math:`\log p(x\mid z) = \sum_i \log\mathcal{N}(x_i;
    \mu_i(z), \sigma^2)`; ``likelihood="bernoulli"``: :math:`\log p(x\mid z) = \sum_i x_i
    \log\pi_i + (1-x_i)\log(1-\pi_i)`, :math:`\pi = \operatorname{sigmoid}(\text{logits}(z))`.
    """

    def __init__(
        self,
        input_shape: int | Sequence[int],
        likelihood: str,
        obs_scale: float,
    ) -> None:
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
        self.input_shape = _shape(input_shape)
        self.input_dim = math.prod(self.input_shape)
        self.likelihood = likelihood
        self.obs_scale = _positive_float("obs_scale", obs_scale)

    def _flatten(self, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"x must have shape (B, {', '.join(map(str, self.input_shape))}), "
                f"got x of shape {tuple(x.shape)}"
            )
        return x.reshape(x.shape[0], self.input_dim)

    def log_likelihood(self, x: Tensor, params: Tensor) -> Tensor:
        r""":math:`\log p(x \mid z)` summed over the data dimensions, in nats.

        Args:
            x: ``(*S, B, *input_shape)`` data.
            params: decoder output :meth:`decoder_params` (Gaussian mean or Bernoulli
                logits), broadcastable to ``x``.

        Returns:
            ``(*S, B)``. Gaussian: :math:`-\tfrac12\sum_i((x_i-\mu_i)/\sigma)^2 -
            D(\log\sigma + \tfrac12\log 2\pi)`; Bernoulli: :math:`-\sum_i
            \mathrm{BCEWithLogits}(\text{logits}_i, x_i)`.
        """
        dims = tuple(range(-len(self.input_shape), 0))
        if self.likelihood == "gaussian":
            sq = ((x - params) / self.obs_scale).square().sum(dims)
            return -0.5 * sq - self.input_dim * (math.log(self.obs_scale) + _HALF_LOG_2PI)
        x_b, p_b = torch.broadcast_tensors(x, params)
        return -F.binary_cross_entropy_with_logits(p_b, x_b, reduction="none").sum(dims)

    def mean(self, params: Tensor) -> Tensor:
        """Mean of :math:`p(x\\mid z)` from decoder parameters (identity / sigmoid)."""
        return params if self.likelihood == "gaussian" else torch.sigmoid(params)

    def init_decoder_output(self, data_mean: Tensor) -> None:
        r"""Start the decoder as the constant function :math:`\hat x(z) = ar x`.

        The output layer's weights become zero and its bias the data mean :math:`ar x`
        (Gaussian) or its logit :math:`\logar x - \log(1-ar x)` with :math:`ar x` clamped
        to :math:`[10^{-3}, 1-10^{-3}]` (Bernoulli). At the first step the reconstruction
        gradient then carries only what distinguishes the examples, :math:`x_i - ar x`, and
        nothing common to all of them (see chapter 4 for why that matters for discrete codes).

        Args:
            data_mean: the mean example, shape ``input_shape`` (or flattened ``(D,)``).
        """
        if not isinstance(data_mean, Tensor) or data_mean.numel() != self.input_dim:
            shape = tuple(data_mean.shape) if isinstance(data_mean, Tensor) else data_mean
            raise ValueError(
                f"data_mean must be a Tensor with {self.input_dim} entries "
                f"(shape {self.input_shape}), got data_mean of shape {shape!r}"
            )
        mean = data_mean.detach().reshape(self.input_dim).to(torch.get_default_dtype())
        if not bool(torch.isfinite(mean).all()):
            raise ValueError("data_mean must be finite, got non-finite entries")
        if self.likelihood == "bernoulli":
            mean = mean.clamp(1e-3, 1 - 1e-3)
            mean = mean.log() - (-mean).log1p()
        last = self.decoder[-1]
        with torch.no_grad():
            last.weight.zero_()
            last.bias.copy_(mean.to(last.bias.device))

    def _flat_code(self, z: Tensor) -> Tensor:
        if z.shape[-1] != self._code_size:
            raise ValueError(
                f"z must end with dimension {self._code_size}, got z of shape {tuple(z.shape)}"
            )
        return z

    def decoder_params(self, z: Tensor) -> Tensor:
        """Decoder output reshaped to ``(*B, *input_shape)``: Gaussian mean or Bernoulli logits.

        ``z``: ``(*B, latent_dim)`` (Gaussian) or codes ``(*B, N, K)`` / ``(*B, N*K)`` (discrete).
        """
        out = self.decoder(self._flat_code(z))
        return out.reshape(*out.shape[:-1], *self.input_shape)

    def decode(self, z: Tensor) -> Tensor:
        """Mean image :math:`\\mathbb{E}[x\\mid z]`, shape ``(B, *input_shape)``.

        For the Gaussian likelihood the mean is not clipped; clip to [0, 1] for display.
        """
        return self.mean(self.decoder_params(z))

    @staticmethod
    def _reduce(out: dict[str, Tensor], reduction: str) -> dict[str, Tensor]:
        if reduction == "none":
            return out
        if reduction == "mean":
            return {k: v.mean() for k, v in out.items()}
        if reduction == "sum":
            return {k: v.sum() for k, v in out.items()}
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


# --------------------------------------------------------------------------------- Gaussian
class GaussianVAE(_VAEBase):
    r"""VAE with a Gaussian latent :math:`z\in\mathbb{R}^d` (Kingma & Welling 2014).

    Encoder MLP ``D → hidden… → 2d`` gives :math:`(\mu, \log\sigma^2)`; decoder MLP
    ``d → reversed(hidden)… → D``. Training loss per example (negative ELBO, nats):

    .. math::

        -\log p(x\mid z) + \mathrm{KL}\big(\mathcal{N}(\mu,\sigma^2)\,\|\,\mathcal{N}(0,I)\big),
        \quad z = \mu + \sigma\odot\varepsilon,\quad
        \mathrm{KL} = -\tfrac12\sum_j\big(1 + \log\sigma_j^2 - \mu_j^2 - \sigma_j^2\big).

    Args:
        input_shape: shape of one example, e.g. ``(3, 32, 32)`` or ``784``.
        latent_dim: :math:`d`.
        hidden: widths of the hidden layers of the encoder (the decoder mirrors them).
        likelihood: ``"gaussian"`` (decoder outputs the mean) or ``"bernoulli"`` (logits).
        obs_scale: standard deviation :math:`\sigma_x` of the Gaussian likelihood (ignored for
            Bernoulli). A standard deviation, not a variance.
        activation: activation module class of the hidden layers.
        data_mean: if given, the decoder starts as the constant function equal to this mean
            example (:meth:`init_decoder_output`); ``None``: PyTorch's default initialisation.
    """

    def __init__(
        self,
        input_shape: int | Sequence[int],
        latent_dim: int = 3,
        hidden: int | Sequence[int] = (200,),
        likelihood: str = "gaussian",
        obs_scale: float = 0.1,
        activation: type[nn.Module] = nn.ReLU,
        data_mean: Tensor | None = None,
    ) -> None:
        super().__init__(input_shape, likelihood, obs_scale)
        self.latent_dim = _positive_int("latent_dim", latent_dim)
        self.hidden = _hidden(hidden)
        self.encoder = mlp((self.input_dim, *self.hidden, 2 * self.latent_dim), activation)
        self.decoder = mlp((self.latent_dim, *self.hidden[::-1], self.input_dim), activation)
        if data_mean is not None:
            self.init_decoder_output(data_mean)
        self._code_size = self.latent_dim

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior parameters ``(mu, log_var)``, each ``(B, latent_dim)``."""
        mu, log_var = self.encoder(self._flatten(x)).chunk(2, dim=-1)
        return mu, log_var

    def loss(self, x: Tensor, *, reduction: str = "mean") -> dict[str, Tensor]:
        """Negative ELBO with one reparameterised sample.

        Returns ``{"loss": nll + kl, "nll": -log p(x|z), "kl": KL}``, batch means (or per
        example ``(B,)`` with ``reduction="none"``).
        """
        mu, log_var = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * log_var).exp()
        nll = -self.log_likelihood(x, self.decoder_params(z))
        kl = -0.5 * (1 + log_var - mu.square() - log_var.exp()).sum(-1)
        return self._reduce({"loss": nll + kl, "nll": nll, "kl": kl}, reduction)

    def reconstruct(self, x: Tensor) -> Tensor:
        """Decode the posterior mean: ``decode(mu(x))``, shape of ``x``."""
        return self.decode(self.encode(x)[0])


# --------------------------------------------------------------------------------- discrete
class DiscreteVAE(_VAEBase):
    r"""VAE with :math:`N` categorical latent variables of :math:`K` classes each.

    The encoder MLP ``D → hidden… → N·K`` gives logits :math:`\ell` of shape ``(B, N, K)``
    (:math:`\alpha = e^{\ell}`); the decoder MLP ``N·K → reversed(hidden)… → D`` reads the
    flattened code ``(B, N·K)`` -- a relaxed sample during training, one-hot vectors in
    discrete mode. The prior is categorical with logits ``prior_logits`` :math:`a` (uniform by
    default); with ``objective="concrete"`` its relaxation is :math:`\mathrm{ExpConcrete}(a,
    \lambda_2)`.

    Training loss per example with ``objective="concrete"`` (Maddison et al. 2017, App. C),
    summed over the :math:`N` latent variables:

    .. math::

        -\log p(x \mid e^{y}) + \sum_{j=1}^N \big[\log\kappa_{\alpha_j,\lambda_1}(y_j)
        - \log\kappa_{a_j,\lambda_2}(y_j)\big], \qquad y_j \sim
        \mathrm{ExpConcrete}(\alpha_j, \lambda_1).

    ``"gumbel_softmax"``/``"straight_through"``: :math:`-\log p(x\mid z) +
    \sum_j \mathrm{KL}(\mathrm{Cat}(\pi_j)\|\mathrm{Cat}(\operatorname{softmax} a_j))` with
    :math:`z_j` the (hard, straight-through) Gumbel-Softmax sample at :math:`\lambda_1`.

    Discrete mode (``model.discrete = True``, ``with model.discrete_mode():`` or
    ``loss(x, discrete=True)``): :math:`d_j \sim \mathrm{Cat}(\pi_j)` one-hot (or the arg max
    with ``deterministic=True``) and the same analytic categorical KL; the loss is the
    negative discrete ELBO, a bound on :math:`-\log p(x)` of the discrete model.

    Args:
        input_shape: shape of one example, e.g. ``(3, 32, 32)`` or ``784``.
        n_latents: :math:`N`.
        n_classes: :math:`K \ge 2`.
        hidden: hidden widths of the encoder (the decoder mirrors them).
        likelihood: ``"gaussian"`` or ``"bernoulli"``.
        obs_scale: standard deviation :math:`\sigma_x` of the Gaussian likelihood.
        objective: ``"concrete"``, ``"gumbel_softmax"`` or ``"straight_through"``.
        posterior_temperature: :math:`\lambda_1 > 0` (default 2/3).
        prior_temperature: :math:`\lambda_2 > 0` of the ExpConcrete prior (``"concrete"``
            only; default 2).
        prior_logits: ``(K,)`` or ``(N, K)`` logits :math:`a` of the categorical prior
            (default uniform).
        activation: activation module class of the hidden layers.
        encoder_init_scale: factor applied to the initial weights and bias of the encoder's
            last layer (1 = PyTorch's default initialisation).
        data_mean: if given, the decoder starts as the constant function equal to this mean
            example (:meth:`init_decoder_output`): the setting that makes the shapes chapter's
            code assignment reliable. ``None``: PyTorch's default initialisation.
    """

    def __init__(
        self,
        input_shape: int | Sequence[int],
        n_latents: int = 1,
        n_classes: int = 3,
        hidden: int | Sequence[int] = (200,),
        likelihood: str = "gaussian",
        obs_scale: float = 0.1,
        objective: str = "concrete",
        posterior_temperature: float = 2 / 3,
        prior_temperature: float = 2.0,
        prior_logits: Tensor | None = None,
        activation: type[nn.Module] = nn.ReLU,
        encoder_init_scale: float = 1.0,
        data_mean: Tensor | None = None,
    ) -> None:
        super().__init__(input_shape, likelihood, obs_scale)
        self.n_latents = _positive_int("n_latents", n_latents)
        self.n_classes = _positive_int("n_classes", n_classes)
        if self.n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got n_classes={n_classes!r}")
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        self.objective = objective
        self.posterior_temperature = _positive_float("posterior_temperature", posterior_temperature)
        self.prior_temperature = _positive_float("prior_temperature", prior_temperature)
        self.hidden = _hidden(hidden)
        nk = self.n_latents * self.n_classes
        self.encoder = mlp((self.input_dim, *self.hidden, nk), activation)
        self.decoder = mlp((nk, *self.hidden[::-1], self.input_dim), activation)
        scale = float(encoder_init_scale)
        if not (math.isfinite(scale) and scale >= 0):
            raise ValueError(
                "encoder_init_scale must be a non-negative finite number, "
                f"got encoder_init_scale={encoder_init_scale!r}"
            )
        if scale != 1.0:
            with torch.no_grad():
                self.encoder[-1].weight.mul_(scale)
                self.encoder[-1].bias.mul_(scale)
        self.encoder_init_scale = scale
        if data_mean is not None:
            self.init_decoder_output(data_mean)
        shape = (self.n_latents, self.n_classes)
        if prior_logits is None:
            prior = torch.zeros(shape)
        else:
            prior = torch.as_tensor(prior_logits, dtype=torch.get_default_dtype())
            if prior.shape not in ((self.n_classes,), shape) or not bool(
                torch.isfinite(prior).all()
            ):
                raise ValueError(
                    f"prior_logits must be finite with shape ({self.n_classes},) or {shape}, "
                    f"got prior_logits={prior_logits!r}"
                )
            prior = prior.expand(shape).clone()
        self.register_buffer("prior_logits", prior - prior.logsumexp(-1, keepdim=True))
        self.discrete = False
        self._code_size = nk

    # -- modes ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def discrete_mode(self, on: bool = True) -> Iterator[DiscreteVAE]:
        """Context manager: ``with model.discrete_mode(): ...`` uses one-hot codes inside."""
        old = self.discrete
        self.discrete = bool(on)
        try:
            yield self
        finally:
            self.discrete = old

    def _flat_code(self, z: Tensor) -> Tensor:
        if z.dim() >= 2 and tuple(z.shape[-2:]) == (self.n_latents, self.n_classes):
            return z.flatten(-2)
        return super()._flat_code(z)

    # -- encoder / codes ---------------------------------------------------------------------
    def encode(self, x: Tensor) -> Tensor:
        """Posterior logits :math:`\\ell`, shape ``(B, N, K)`` (unnormalised)."""
        return self.encoder(self._flatten(x)).reshape(-1, self.n_latents, self.n_classes)

    def one_hot(self, index: Tensor) -> Tensor:
        """One-hot codes ``(..., N, K)`` from class indices ``(..., N)``."""
        return F.one_hot(index, self.n_classes).to(self.prior_logits.dtype)

    def codes(self, x: Tensor) -> Tensor:
        """Most probable class of each latent variable, LongTensor ``(B, N)``."""
        return self.encode(x).argmax(-1)

    def sample_prior(self, n: int) -> Tensor:
        """``n`` one-hot codes ``(n, N, K)`` drawn from the categorical prior."""
        logits = self.prior_logits.expand(_positive_int("n", n), -1, -1)
        idx = torch.distributions.Categorical(logits=logits).sample()
        return self.one_hot(idx)

    def all_codes(self) -> Tensor:
        """For ``N = 1``: the ``K`` one-hot codes ``(K, 1, K)``, in class order."""
        if self.n_latents != 1:
            raise ValueError(
                f"all_codes needs n_latents=1 (K^N codes otherwise), got {self.n_latents}"
            )
        return torch.eye(self.n_classes, device=self.prior_logits.device).unsqueeze(1)

    # -- loss ---------------------------------------------------------------------------------
    def loss(
        self,
        x: Tensor,
        *,
        temperature: float | None = None,
        prior_temperature: float | None = None,
        discrete: bool | None = None,
        deterministic: bool = False,
        reduction: str = "mean",
    ) -> dict[str, Tensor]:
        r"""Negative (relaxed or discrete) ELBO with one sample of the latent code.

        Args:
            x: ``(B, *input_shape)``.
            temperature: override of :math:`\lambda_1` for this call (annealing).
            prior_temperature: override of :math:`\lambda_2` for this call.
            discrete: one-hot codes and categorical KL (default: ``self.discrete``).
            deterministic: in discrete mode, use the arg max instead of a sample.
            reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (per example ``(B,)``).

        Returns:
            ``{"loss": nll + kl, "nll": -log p(x|z), "kl": KL term}`` in nats.
        """
        logits = self.encode(x)
        discrete = self.discrete if discrete is None else bool(discrete)
        if discrete:
            if deterministic:
                idx = logits.argmax(-1)
            else:
                idx = torch.distributions.Categorical(logits=logits).sample()
            z = self.one_hot(idx)
            kl = categorical_kl(logits, self.prior_logits).sum(-1)
        else:
            lam1 = self.posterior_temperature
            if temperature is not None:
                lam1 = _temperature("temperature", temperature)
            if self.objective == "concrete":
                lam2 = self.prior_temperature
                if prior_temperature is not None:
                    lam2 = _temperature("prior_temperature", prior_temperature)
                q = ExpConcrete(lam1, logits=logits, validate_args=False)
                p = ExpConcrete(lam2, logits=self.prior_logits, validate_args=False)
                y = q.rsample()
                kl = relaxed_kl(q, p, y).sum(-1)
                z = y.exp()
            else:
                z = gumbel_softmax(logits, lam1, hard=self.objective == "straight_through")
                kl = categorical_kl(logits, self.prior_logits).sum(-1)
        nll = -self.log_likelihood(x, self.decoder_params(z))
        return self._reduce({"loss": nll + kl, "nll": nll, "kl": kl}, reduction)

    def reconstruct(self, x: Tensor) -> Tensor:
        """Decode the most probable one-hot code of each example, shape of ``x``."""
        return self.decode(self.one_hot(self.codes(x)))
