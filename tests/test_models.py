"""GaussianVAE and DiscreteVAE (concrete.models)."""

from __future__ import annotations

import math

import pytest
import torch

from concrete import ExpConcrete, categorical_kl, relaxed_kl
from concrete.models import DiscreteVAE, GaussianVAE, mlp

SHAPE = (3, 8, 8)


@pytest.fixture
def x():
    torch.manual_seed(0)
    return torch.rand(5, *SHAPE)


def test_mlp_layers():
    net = mlp((10, 7, 5, 3))
    assert [m.out_features for m in net if isinstance(m, torch.nn.Linear)] == [7, 5, 3]
    assert not isinstance(net[-1], torch.nn.ReLU)
    with pytest.raises(ValueError, match="sizes"):
        mlp((3,))


def test_gaussian_vae_shapes_and_kl_formula(x):
    torch.manual_seed(1)
    m = GaussianVAE(SHAPE, latent_dim=4, hidden=(16,))
    mu, log_var = m.encode(x)
    assert mu.shape == log_var.shape == (5, 4)
    assert m.decode(mu).shape == x.shape
    out = m.loss(x, reduction="none")
    assert set(out) == {"loss", "nll", "kl"} and out["kl"].shape == (5,)
    # analytic KL equals torch.distributions' KL of the same Gaussians
    q = torch.distributions.Normal(mu, (0.5 * log_var).exp())
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    expect = torch.distributions.kl_divergence(q, p).sum(-1)
    torch.testing.assert_close(out["kl"], expect, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["loss"], out["nll"] + out["kl"])
    mean = m.loss(x)
    torch.testing.assert_close(mean["kl"], out["kl"].mean())


def test_gaussian_log_likelihood_uses_standard_deviation(x):
    m = GaussianVAE(SHAPE, obs_scale=0.1)
    params = torch.zeros_like(x)
    expect = torch.distributions.Normal(params, 0.1).log_prob(x).sum((1, 2, 3))
    torch.testing.assert_close(m.log_likelihood(x, params), expect)
    # a perfect reconstruction: -D (log sigma + log(2 pi)/2)
    d = math.prod(SHAPE)
    perfect = m.log_likelihood(x, x)
    torch.testing.assert_close(
        perfect, torch.full((5,), -d * (math.log(0.1) + 0.5 * math.log(2 * math.pi)))
    )


def test_bernoulli_log_likelihood(x):
    m = GaussianVAE(SHAPE, likelihood="bernoulli")
    xb = (x > 0.5).float()
    logits = torch.randn_like(xb)
    expect = torch.distributions.Bernoulli(logits=logits).log_prob(xb).sum((1, 2, 3))
    torch.testing.assert_close(m.log_likelihood(xb, logits), expect)
    z = torch.zeros(2, 3)
    img = m.decode(z)
    assert float(img.detach().min()) >= 0 and float(img.detach().max()) <= 1  # sigmoid means


@pytest.mark.parametrize("n_latents, n_classes", [(1, 3), (4, 5)])
def test_discrete_vae_shapes(x, n_latents, n_classes):
    m = DiscreteVAE(SHAPE, n_latents=n_latents, n_classes=n_classes, hidden=(16, 8))
    logits = m.encode(x)
    assert logits.shape == (5, n_latents, n_classes)
    codes = m.codes(x)
    assert codes.shape == (5, n_latents) and codes.dtype == torch.long
    one_hot = m.one_hot(codes)
    # (B, N, K) and flattened (B, N*K) codes decode alike
    torch.testing.assert_close(m.decode(one_hot), m.decode(one_hot.flatten(1)))
    assert m.reconstruct(x).shape == x.shape
    assert m.sample_prior(7).shape == (7, n_latents, n_classes)
    with pytest.raises(ValueError, match="z"):
        m.decode(torch.zeros(2, n_latents * n_classes + 1))


def test_concrete_objective_is_the_log_space_relaxed_elbo(x):
    """Same noise → the model's KL equals relaxed_kl of the ExpConcrete posterior and prior."""
    m = DiscreteVAE(SHAPE, n_latents=2, n_classes=3, hidden=(16,), prior_temperature=1.5)
    torch.manual_seed(3)
    out = m.loss(x, reduction="none")
    torch.manual_seed(3)
    logits = m.encode(x)
    q = ExpConcrete(2 / 3, logits=logits)
    p = ExpConcrete(1.5, logits=torch.zeros(2, 3))
    y = q.rsample()
    kl = relaxed_kl(q, p, y).sum(-1)
    nll = -m.log_likelihood(x, m.decoder_params(y.exp()))
    torch.testing.assert_close(out["kl"], kl)
    torch.testing.assert_close(out["nll"], nll)


def test_temperature_override_changes_the_sample(x):
    m = DiscreteVAE(SHAPE, hidden=(16,))
    torch.manual_seed(0)
    a = m.loss(x, reduction="none")["nll"]
    torch.manual_seed(0)
    b = m.loss(x, temperature=0.1, reduction="none")["nll"]
    torch.manual_seed(0)
    c = m.loss(x, temperature=2 / 3, reduction="none")["nll"]
    assert not torch.allclose(a, b)
    torch.testing.assert_close(a, c)
    with pytest.raises(ValueError, match="temperature"):
        m.loss(x, temperature=0.0)
    with pytest.raises(ValueError, match="prior_temperature"):
        m.loss(x, prior_temperature=-1.0)


@pytest.mark.parametrize("objective", ["gumbel_softmax", "straight_through"])
def test_gumbel_softmax_objectives_use_analytic_kl(x, objective):
    prior = torch.tensor([0.5, 0.2, 0.3]).log()
    m = DiscreteVAE(SHAPE, n_latents=2, hidden=(16,), objective=objective, prior_logits=prior)
    out = m.loss(x, reduction="none")
    expect = categorical_kl(m.encode(x), prior.expand(2, 3)).sum(-1)
    torch.testing.assert_close(out["kl"], expect)
    # gradients reach the encoder through the sample (not only through the KL)
    m.zero_grad()
    out["nll"].sum().backward()
    assert float(m.encoder[-1].weight.grad.abs().sum()) > 0


def test_straight_through_decoder_sees_one_hot_codes(x):
    m = DiscreteVAE(SHAPE, n_latents=2, hidden=(16,), objective="straight_through")
    seen = []
    handle = m.decoder.register_forward_pre_hook(lambda mod, inp: seen.append(inp[0]))
    m.loss(x)
    handle.remove()
    z = seen[0].reshape(5, 2, 3)
    assert set(z.unique().tolist()) == {0.0, 1.0}
    torch.testing.assert_close(z.sum(-1), torch.ones(5, 2))


def test_discrete_mode_flag_context_and_argument(x):
    m = DiscreteVAE(SHAPE, n_latents=3, hidden=(16,))
    seen = []
    handle = m.decoder.register_forward_pre_hook(lambda mod, inp: seen.append(inp[0]))
    m.loss(x)  # relaxed: soft codes
    assert not set(seen[-1].unique().tolist()) <= {0.0, 1.0}
    with m.discrete_mode():
        assert m.discrete
        out = m.loss(x, reduction="none")
    assert not m.discrete
    assert set(seen[-1].unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(out["kl"], categorical_kl(m.encode(x), m.prior_logits).sum(-1))
    det = m.loss(x, discrete=True, deterministic=True, reduction="none")
    codes = m.one_hot(m.codes(x))
    expect = -m.log_likelihood(x, m.decoder_params(codes))
    torch.testing.assert_close(det["nll"], expect)
    handle.remove()


def test_discrete_kl_of_a_confident_posterior_is_log_k():
    m = DiscreteVAE(SHAPE, n_classes=4, hidden=(16,))
    logits = torch.tensor([[[30.0, 0.0, 0.0, 0.0]]])
    kl = categorical_kl(logits, m.prior_logits)
    assert abs(float(kl.sum()) - math.log(4)) < 1e-4


def test_bernoulli_discrete_vae_trains_one_step():
    m = DiscreteVAE(20, n_latents=3, n_classes=4, hidden=(8,), likelihood="bernoulli")
    xb = (torch.rand(6, 20) > 0.5).float()
    out = m.loss(xb)
    out["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)


def test_encoder_init_scale_scales_last_layer():
    torch.manual_seed(0)
    a = DiscreteVAE(SHAPE, hidden=(16,))
    torch.manual_seed(0)
    b = DiscreteVAE(SHAPE, hidden=(16,), encoder_init_scale=0.0)
    assert float(b.encoder[-1].weight.detach().abs().sum()) == 0
    torch.testing.assert_close(a.encoder[0].weight, b.encoder[0].weight)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"likelihood": "poisson"}, "likelihood"),
        ({"obs_scale": 0.0}, "obs_scale"),
        ({"obs_scale": float("nan")}, "obs_scale"),
        ({"objective": "reinforce"}, "objective"),
        ({"n_classes": 1}, "n_classes"),
        ({"n_latents": 0}, "n_latents"),
        ({"posterior_temperature": 0.0}, "posterior_temperature"),
        ({"prior_temperature": float("inf")}, "prior_temperature"),
        ({"prior_logits": torch.zeros(4)}, "prior_logits"),
        ({"hidden": (16, -1)}, "hidden"),
        ({"encoder_init_scale": -1.0}, "encoder_init_scale"),
    ],
)
def test_discrete_vae_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        DiscreteVAE(SHAPE, **kwargs)


def test_bad_input_shapes():
    with pytest.raises(ValueError, match="input_shape"):
        GaussianVAE((3, 0, 8))
    with pytest.raises(ValueError, match="latent_dim"):
        GaussianVAE(SHAPE, latent_dim=0)
    m = GaussianVAE(SHAPE, hidden=(8,))
    with pytest.raises(ValueError, match="x must have shape"):
        m.loss(torch.zeros(2, 3, 8, 7))
    with pytest.raises(ValueError, match="reduction"):
        m.loss(torch.zeros(2, *SHAPE), reduction="max")


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
@pytest.mark.parametrize("cls", [GaussianVAE, DiscreteVAE])
def test_data_mean_starts_the_decoder_at_the_mean(cls, likelihood, x):
    mean = x.mean(0)
    m = cls(SHAPE, hidden=(16,), likelihood=likelihood, data_mean=mean)
    z = torch.rand(4, m._code_size)
    out = m.decode(z)
    expect = mean if likelihood == "gaussian" else mean.clamp(1e-3, 1 - 1e-3)
    torch.testing.assert_close(out, expect.expand(4, *SHAPE))
    # at the start the reconstruction gradient does not reach the code (constant decoder)
    z.requires_grad_(True)
    m.log_likelihood(x[:4], m.decoder_params(z)).sum().backward()
    assert float(z.grad.abs().max()) == 0.0
    with pytest.raises(ValueError, match="data_mean"):
        cls(SHAPE, data_mean=torch.zeros(5))
    with pytest.raises(ValueError, match="data_mean"):
        cls(SHAPE, data_mean=torch.full(SHAPE, float("nan")))
