"""Tests for concrete.evaluate: discrete-latent ELBO and importance-weighted bound."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from concrete.evaluate import (
    bernoulli_log_likelihood,
    discrete_elbo,
    evaluate_discrete,
    exact_log_px,
    iw_bound,
    iw_bounds_by_k,
    iw_log_weights,
    sample_codes,
)

N, K, D = 2, 3, 6


def tiny_model(seed: int = 0, n: int = N, k: int = K, d: int = D):
    """A random linear encoder/decoder with a small enumerable latent space (K^N codes)."""
    g = torch.Generator().manual_seed(seed)
    w_enc = torch.randn(d, n * k, generator=g)
    w_dec = 2 * torch.randn(n * k, d, generator=g)
    b_dec = torch.randn(d, generator=g)

    def encode(x):
        return (x @ w_enc).view(-1, n, k)

    def decode(z):
        return z.flatten(-2) @ w_dec + b_dec

    return encode, decode


def data(seed: int = 1, b: int = 4, d: int = D) -> torch.Tensor:
    return torch.bernoulli(torch.full((b, d), 0.5), generator=torch.Generator().manual_seed(seed))


def brute_force(encode, decode, x, prior_logits=None, n=N, k=K):
    """log p(x) and the exact ELBO by explicit loops over all K^N codes (independent code)."""
    log_prior = (torch.full((n, k), -math.log(k)) if prior_logits is None
                 else torch.log_softmax(prior_logits, -1).expand(n, k))
    log_q = torch.log_softmax(encode(x), -1)                      # (B, n, k)
    log_px, elbo = [], []
    for b in range(len(x)):
        joint, e = [], 0.0
        for code in itertools.product(range(k), repeat=n):
            z = torch.zeros(n, k)
            for i, c in enumerate(code):
                z[i, c] = 1.0
            eta = decode(z)
            ll = (x[b] * torch.log(torch.sigmoid(eta))
                  + (1 - x[b]) * torch.log(1 - torch.sigmoid(eta))).sum()
            lp = sum(log_prior[i, c] for i, c in enumerate(code))
            lq = sum(log_q[b, i, c] for i, c in enumerate(code))
            joint.append(ll + lp)
            e = e + lq.exp() * (ll + lp - lq)
        log_px.append(torch.logsumexp(torch.stack(joint), 0))
        elbo.append(e)
    return torch.stack(log_px), torch.stack(elbo)


def test_bernoulli_log_likelihood_is_minus_bce():
    g = torch.Generator().manual_seed(0)
    eta = 5 * torch.randn(3, 7, generator=g)
    x = torch.bernoulli(torch.full((3, 7), 0.3), generator=g)
    expected = -F.binary_cross_entropy_with_logits(eta, x, reduction="none").sum(-1)
    torch.testing.assert_close(bernoulli_log_likelihood(eta, x), expected)


def test_sample_codes_follow_the_categorical():
    logits = torch.tensor([[[0.0, 1.0, -1.0]]])
    idx = sample_codes(logits, 60_000, torch.Generator().manual_seed(0))
    assert idx.shape == (60_000, 1, 1)
    freq = torch.bincount(idx.flatten(), minlength=3).float() / idx.numel()
    p = torch.softmax(logits.flatten(), 0)
    assert ((freq - p).abs() < 5 * (p * (1 - p) / idx.numel()).sqrt()).all(), (freq, p)


@pytest.mark.parametrize("prior", [None, torch.tensor([0.5, -1.0, 0.2])])
def test_exact_log_px_matches_brute_force(prior):
    encode, decode = tiny_model()
    x = data()
    ref, _ = brute_force(encode, decode, x, prior)
    torch.testing.assert_close(exact_log_px(decode, x, N, K, prior_logits=prior), ref)


def marginal_posterior_encoder(decode, x, prior=None):
    """q(z|x) = product of the exact posterior marginals p(z_n|x) (by enumeration of codes)."""
    idx = torch.tensor(list(itertools.product(range(K), repeat=N)))          # (C, N)
    z = F.one_hot(idx, K).float()
    log_prior = (torch.full((N, K), -math.log(K)) if prior is None
                 else torch.log_softmax(prior, -1).expand(N, K))
    log_joint = bernoulli_log_likelihood(decode(z).unsqueeze(1), x)          # (C, B)
    log_joint = log_joint + log_prior.gather(-1, idx.T).sum(0).unsqueeze(1)
    post = torch.softmax(log_joint, 0)                                       # (C, B)
    marg = torch.stack([torch.stack([post[idx[:, n] == c].sum(0) for c in range(K)], -1)
                        for n in range(N)], 1)                               # (B, N, K)
    logits = marg.log()

    def encode(xb):
        assert torch.equal(xb, x)
        return logits

    return encode


@pytest.mark.parametrize("prior", [None, torch.tensor([[0.5, -1.0, 0.2], [0.0, 0.3, 1.0]])])
def test_iw_bound_converges_to_exact_log_px(prior):
    # N=2, K=3: 9 codes; q = product of the posterior marginals (it covers every code). With
    # k = 20000 the bound's bias and spread are far below 0.02 nats here.
    _, decode = tiny_model()
    x = data()
    encode = marginal_posterior_encoder(decode, x, prior)
    exact = exact_log_px(decode, x, N, K, prior_logits=prior)
    assert (exact < 0).all()
    gen = torch.Generator().manual_seed(0)
    iw = iw_bound(encode, decode, x, 20_000, prior_logits=prior, generator=gen, chunk=5000)
    torch.testing.assert_close(iw, exact, atol=0.02, rtol=0)


def test_elbo_matches_enumeration_and_iw_bound_is_ordered():
    encode, decode = tiny_model(seed=3)
    x = data(seed=4, b=3)
    log_px, exact_elbo = brute_force(encode, decode, x)
    assert (exact_elbo < log_px - 0.05).all()  # a gap to see
    reps = 4000
    xr = x.repeat(reps, 1)
    gen = torch.Generator().manual_seed(0)
    elbo, rec, kl = discrete_elbo(encode, decode, xr, samples=1, generator=gen)
    assert (kl >= 0).all()
    torch.testing.assert_close(elbo - rec, -kl)
    means = {}
    for k in (1, 5, 50):  # E[L_k] by averaging over the replicas
        means[k] = iw_bound(encode, decode, xr, k, generator=gen).view(reps, -1).mean(0)
    # E[ELBO] and E[L_1] equal the exact ELBO: within 5 standard errors (p ≈ 6e-7 each)
    l1 = iw_bound(encode, decode, xr, 1, generator=gen).view(reps, -1)
    for est in (elbo.view(reps, -1), l1):
        se = est.std(0) / math.sqrt(reps)
        assert ((est.mean(0) - exact_elbo).abs() < 5 * se).all(), (est.mean(0), exact_elbo)
    # E[L_k] increases with k and stays below log p(x)
    assert (means[5] > means[1]).all() and (means[50] > means[5]).all()
    assert (means[50] <= log_px + 0.02).all()


def test_iw_bound_is_exact_with_the_true_posterior():
    # N = 1: the exact posterior is a categorical, so q = p(z|x) makes every weight p(x).
    _, decode = tiny_model(seed=5, n=1)
    x = data(seed=6)
    codes = torch.eye(K).unsqueeze(1)                             # (K, 1, K)
    log_joint = bernoulli_log_likelihood(decode(codes).unsqueeze(1), x) - math.log(K)  # (K, B)

    def encode(xb):
        assert xb.shape == x.shape
        return log_joint.T.unsqueeze(1)                           # (B, 1, K) = log posterior

    exact = exact_log_px(decode, x, 1, K)
    iw1 = iw_bound(encode, decode, x, 1, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(iw1, exact)


def test_evaluate_discrete_batches_and_summary():
    encode, decode = tiny_model()
    x = data(b=50)
    a = evaluate_discrete(encode, decode, x, n_class=K, elbo_samples=2, iw_samples=7,
                          batch_size=8, chunk=3, generator=torch.Generator().manual_seed(0))
    b = evaluate_discrete(encode, decode, x, n_class=K, elbo_samples=2, iw_samples=7,
                          batch_size=50, chunk=7, generator=torch.Generator().manual_seed(0))
    assert a.n == 50 and a.k == 7 and a.elbo.shape == (50,) and a.iw.shape == (50,)
    # the KL is exact, so it does not depend on the batching; the sampled terms do only a little
    assert a.kl == pytest.approx(b.kl, abs=1e-5)
    assert a.neg_elbo == pytest.approx(-a.elbo.mean().item())
    assert a.neg_elbo == pytest.approx(a.rec + a.kl, abs=1e-4)
    assert a.neg_log_px <= a.neg_elbo  # IW bound (k=7) tighter than the ELBO on average
    assert "k=7" in str(a) and "nats" in str(a)


def test_bad_input_raises_value_error():
    encode, decode = tiny_model()
    x = data()
    with pytest.raises(ValueError, match="k"):
        iw_bound(encode, decode, x, 0)
    with pytest.raises(ValueError, match="samples"):
        discrete_elbo(encode, decode, x, samples=0)
    with pytest.raises(ValueError, match="x must have shape"):
        discrete_elbo(encode, decode, x.view(-1))
    with pytest.raises(ValueError, match="encode"):
        discrete_elbo(lambda v: v, decode, x)
    with pytest.raises(ValueError, match="prior_logits"):
        iw_bound(encode, decode, x, 2, prior_logits=torch.zeros(4))
    with pytest.raises(ValueError, match="max_codes"):
        exact_log_px(decode, x, 20, 10)
    with pytest.raises(ValueError, match="n_class"):
        evaluate_discrete(encode, decode, x, n_class=5)
    with pytest.raises(ValueError, match="iw_samples"):
        evaluate_discrete(encode, decode, x, iw_samples=0)
    with pytest.raises(ValueError, match="finite"):
        discrete_elbo(lambda v: torch.full((len(v), N, K), float("nan")), decode, x)


def test_inactive_units_counts_units_that_never_fire():
    from concrete.evaluate import inactive_units
    from concrete.models import DiscreteVAE

    torch.manual_seed(0)
    model = DiscreteVAE(6, n_latents=2, n_classes=3, hidden=(5, 4), likelihood="bernoulli")
    x = torch.rand(50, 6)
    before = inactive_units(model, x)
    assert set(before) == {"encoder layer 1", "encoder layer 2", "decoder layer 1",
                           "decoder layer 2"}
    assert before["encoder layer 1"][1] == 5 and before["decoder layer 1"][1] == 4
    with torch.no_grad():  # switch off two first-layer encoder units for every input in [0, 1]
        model.encoder[0].weight[:2] = -1.0
        model.encoder[0].bias[:2] = -1.0
    after = inactive_units(model, x)
    with torch.no_grad():
        pre = model.encoder[0](x)  # ReLU output <= 0 on every input  <=>  pre-activation <= 0
    assert bool((pre[:, :2] <= 0).all())
    assert after["encoder layer 1"][0] == int((pre.amax(0) <= 0).sum()) >= 2
    assert not any(h for m in model.modules() for h in m._forward_hooks.values())
    with pytest.raises(ValueError, match="images"):
        inactive_units(model, torch.rand(6))


def test_iw_log_weights_reproduce_iw_bound_and_bounds_by_k():
    encode, decode = tiny_model(seed=5)
    x = data(seed=6, b=5)
    lw = iw_log_weights(encode, decode, x, 40, generator=torch.Generator().manual_seed(3), chunk=7)
    assert lw.shape == (40, 5)
    iw = iw_bound(encode, decode, x, 40, generator=torch.Generator().manual_seed(3), chunk=7)
    torch.testing.assert_close(torch.logsumexp(lw, 0) - math.log(40), iw)
    by_k = iw_bounds_by_k(lw, [1, 4, 40])
    # k = k_max is the bound itself; k = 1 is the mean log weight (a one-code ELBO estimate)
    torch.testing.assert_close(by_k[2], iw)
    torch.testing.assert_close(by_k[0], lw.mean(0))
    groups = lw.reshape(10, 4, 5)
    torch.testing.assert_close(by_k[1], (torch.logsumexp(groups, 1) - math.log(4)).mean(0))


def test_iw_bounds_by_k_increase_towards_log_px():
    # E L_1 = ELBO <= E L_k <= log p(x): with 20 000 codes the group means are ordered and the
    # largest k is within 0.05 nats of the exact log p(x) (9 codes, same tiny model as above).
    encode, decode = tiny_model(seed=3)
    x = data(seed=4, b=3)
    log_px, exact_elbo = brute_force(encode, decode, x)
    lw = iw_log_weights(encode, decode, x, 20_000, generator=torch.Generator().manual_seed(0),
                        chunk=5000)
    by_k = iw_bounds_by_k(lw, [1, 10, 100, 1000, 20_000])
    torch.testing.assert_close(by_k[0], exact_elbo, atol=0.05, rtol=0)
    assert (by_k[1:] >= by_k[:-1] - 1e-3).all()
    assert (by_k[-1] <= log_px + 0.05).all()
    torch.testing.assert_close(by_k[-1], log_px, atol=0.05, rtol=0)


def test_iw_bounds_by_k_rejects_bad_input():
    lw = torch.zeros(10, 3)
    with pytest.raises(ValueError, match="divide"):
        iw_bounds_by_k(lw, [3])
    with pytest.raises(ValueError, match="k_max, B"):
        iw_bounds_by_k(torch.zeros(10), [1])
    with pytest.raises(ValueError, match="ks"):
        iw_bounds_by_k(lw, [])
    with pytest.raises(ValueError, match="finite"):
        iw_bounds_by_k(torch.full((10, 3), float("nan")), [1])
