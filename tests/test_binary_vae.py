"""Tests of concrete.binary_vae: the binary latent-variable model of Maddison et al. (2017, App. D).

Statistical tests use fixed seeds and two-sided z-tests with the threshold stated at each test
(|z| < 4.5 per quantity: p = 7e-6, so that a family of a few hundred such checks still fails
by chance with probability below 1e-3).
"""

from __future__ import annotations

import itertools
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from concrete.binary_vae import (
    ARCHITECTURES,
    PAPER_NAMES,
    POSTERIOR_TEMPERATURE,
    PRIOR_TEMPERATURE,
    BinaryVAE,
    ConcreteObjective,
    NVILObjective,
    VIMCOObjective,
    bernoulli_log_prob,
    evaluate_bound,
    exact_log_px,
    fit_steps,
    gradient_variance,
    iw_bound,
    linear_decay,
    load_binarized_mnist,
    random_subset,
    relaxed_bound,
    two_class_view,
)
from concrete.evaluate import iw_bound as categorical_iw_bound

Z = 4.5  # two-sided z threshold, p = 6.8e-6 per check
MNIST_RAW = Path("/work/shared/data/MNIST/raw")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one intra-op thread is faster, and steadier on a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_model(n_latent: int = 8, n_visible: int = 12, arch: str = "nonlinear", seed: int = 0,
               scale: float = 1.0) -> BinaryVAE:
    """A float64 model with random (non-zero) weights and biases."""
    torch.manual_seed(seed)
    model = BinaryVAE(arch, n_latent=n_latent, n_visible=n_visible, hidden=6,
                      center_input=False).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(scale * torch.randn_like(p))
    return model


def tiny_images(n: int = 3, d: int = 12, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(n, d, generator=gen, dtype=torch.float64) < 0.4).double()


def all_codes(n: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product((0.0, 1.0), repeat=n)), dtype=torch.float64)


def log_weights(model: BinaryVAE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log w(b) = log p(x, b) - log q(b|x) and log q(b|x) for all 2^N codes: (C, B) each."""
    codes = all_codes(model.n_latent).unsqueeze(1)  # (C, 1, N)
    logits = model.encode(x)
    log_q = bernoulli_log_prob(logits, codes)
    return model.log_joint(x, codes) - log_q, log_q


# --------------------------------------------------------------------------------- model
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_shapes_and_paper_architecture(arch: str) -> None:
    model = BinaryVAE(arch)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    sizes = [(m.in_features, m.out_features) for m in linears]
    if arch == "linear":
        assert sizes == [(784, 200), (200, 784)]
    else:
        assert sizes == [(784, 200), (200, 200), (200, 200), (200, 200), (200, 200), (200, 784)]
        assert sum(isinstance(m, torch.nn.Tanh) for m in model.modules()) == 4
    assert PAPER_NAMES[arch] in repr(model)
    x = (torch.rand(5, 784) < 0.3).float()
    assert model.encode(x).shape == (5, 200)
    assert model.decode(torch.rand(3, 5, 200)).shape == (3, 5, 784)
    b = model.sample_posterior(model.encode(x), 4)
    assert b.shape == (4, 5, 200) and set(b.unique().tolist()) <= {0.0, 1.0}
    assert model.log_joint(x, b).shape == (4, 5)
    assert relaxed_bound(model, x, 3).shape == (5,)
    assert iw_bound(model, x, 7, chunk=3).shape == (5,)
    out = ConcreteObjective(model, 2).loss(x)
    assert out["loss"].shape == () and torch.isclose(out["loss"], -out["bound"])


def test_initialisation_follows_app_d() -> None:
    means = torch.linspace(0.0, 1.0, 784)
    model = BinaryVAE("nonlinear", pixel_means=means)
    p = means.clamp(1e-3, 1 - 1e-3)
    out_bias = model.decoder[-1].bias
    torch.testing.assert_close(out_bias, torch.log(p / (1 - p)))
    assert torch.isfinite(out_bias).all()
    torch.testing.assert_close(model.input_mean, means)
    assert torch.count_nonzero(model.prior_logits) == 0
    for layer in [m for m in model.modules() if isinstance(m, torch.nn.Linear)]:
        if layer is not model.decoder[-1]:
            assert torch.count_nonzero(layer.bias) == 0  # D.3: all other biases 0
        bound = math.sqrt(6.0 / (layer.in_features + layer.out_features))  # Glorot uniform
        assert layer.weight.abs().max() <= bound
        assert layer.weight.abs().max() > 0.9 * bound


def test_input_centring_updates_only_in_training() -> None:
    model = BinaryVAE("linear", n_latent=3, n_visible=4)
    x = torch.tensor([[1.0, 0, 1, 1], [1.0, 0, 0, 1]])
    model.encode(x)
    torch.testing.assert_close(model.input_mean, 0.1 * x.mean(0))  # 0.9 * 0 + 0.1 * mean
    expected = model.encoder(x - model.input_mean)
    model.eval()
    torch.testing.assert_close(model.encode(x), expected)
    torch.testing.assert_close(model.input_mean, 0.1 * x.mean(0))



@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_running_mean_of_an_off_pixel_never_becomes_subnormal(dtype: torch.dtype) -> None:
    # A pixel seen once and then off decays as 0.9^k: float32 passes sqrt(tiny) = 1.1e-19
    # after ~400 batches and the subnormals (< 1.2e-38) after ~800, float64 after ~3300 /
    # ~6700. Subnormal operands put the encoder's products on the CPU's slow path.
    model = BinaryVAE("linear", n_latent=2, n_visible=3).to(dtype)
    x_on = torch.tensor([[1.0, 1.0, 0.0]], dtype=dtype)
    x_off = torch.tensor([[1.0, 0.0, 0.0]], dtype=dtype)
    model.encode(x_on)
    tiny = torch.finfo(dtype).tiny
    n = 1000 if dtype == torch.float32 else 7000
    seen = []
    for _ in range(n):
        model.encode(x_off)
        seen.append(float(model.input_mean[1]))
    seen_t = torch.tensor(seen, dtype=torch.float64)
    assert seen_t[0] == pytest.approx(0.9 * 0.1, rel=1e-6)  # the mean still follows the data
    assert bool(((seen_t == 0) | (seen_t.abs() >= math.sqrt(tiny))).all())
    assert seen_t[-1] == 0  # flushed, where plain decay would sit in (0, tiny) by now
    assert 0.9**n * 0.1 < tiny
    assert model.input_mean[0] == pytest.approx(1.0 - 0.9 ** (n + 1), rel=1e-5)

@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"architecture": "deep"}, "architecture"),
        ({"n_latent": 0}, "n_latent"),
        ({"n_visible": 2.5}, "n_visible"),
        ({"hidden": -1}, "hidden"),
        ({"center_decay": 1.0}, "center_decay"),
        ({"center_input": "yes"}, "center_input"),
        ({"pixel_means": torch.zeros(10)}, "pixel_means"),
        ({"pixel_means": torch.full((784,), 1.5)}, "pixel_means"),
    ],
)
def test_model_bad_arguments(kwargs: dict, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        BinaryVAE(**kwargs)


def test_bad_arguments_of_bounds() -> None:
    model = BinaryVAE("linear", n_latent=4, n_visible=6)
    x = torch.zeros(2, 6)
    for call, word in [
        (lambda: relaxed_bound(model, x, 0), "m"),
        (lambda: relaxed_bound(model, x, 1, posterior_temperature=-1.0), "posterior_temperature"),
        (lambda: relaxed_bound(model, x, 1, prior_temperature=float("nan")), "prior_temperature"),
        (lambda: relaxed_bound(model, torch.zeros(2, 5), 1), "x"),
        (lambda: relaxed_bound(model, x, 2, noise=torch.zeros(1, 2, 4)), "noise"),
        (lambda: iw_bound(model, x, 0), "k"),
        (lambda: iw_bound(model, x, 3, chunk=0), "chunk"),
        (lambda: evaluate_bound(model, torch.zeros(0, 6)), "images"),
        (lambda: random_subset(x, 3), "n"),
        (lambda: random_subset(x, 1, seed=-2), "seed"),
        (lambda: ConcreteObjective(torch.nn.Linear(2, 2)), "model"),
        (lambda: load_binarized_mnist(seed=-1), "seed"),
        (lambda: fit_steps(ConcreteObjective(model), x, steps=0, lr=1e-3), "steps"),
        (lambda: fit_steps(ConcreteObjective(model), x, steps=1, lr=0.0), "lr"),
        (lambda: fit_steps(ConcreteObjective(model), x, steps=1, lr=1e-3, lr_schedule=0.5),
         "lr_schedule"),
        (lambda: fit_steps(ConcreteObjective(model), x, steps=1, lr=1e-3,
                           lr_schedule=lambda i, t: float("nan")), "lr_schedule"),
        (lambda: fit_steps(ConcreteObjective(model), x, steps=1, lr=1e-3,
                           lr_schedule=lambda i, t: -1e-3), "lr_schedule"),
        (lambda: linear_decay(0.0, 0.5, 0.5), "lr"),
        (lambda: linear_decay(1e-3, float("nan"), 0.5), "progress"),
        (lambda: linear_decay(1e-3, -0.1, 0.5), "progress"),
        (lambda: linear_decay(1e-3, 0.5, 1.5), "fraction"),
        (lambda: linear_decay(1e-3, 0.5, True), "fraction"),
    ]:
        with pytest.raises(ValueError, match=word):
            call()


# --------------------------------------------------------------------------------- Concrete
def test_relaxed_bound_m1_equals_the_elbo_formula_by_hand() -> None:
    """L̃_1 = log p(x|σ(y)) + log f_{a,λ2}(y) - log g_{ℓ,λ1}(y), App. C.3.2, in numpy."""
    model = tiny_model(n_latent=5, n_visible=7)
    x = tiny_images(4, 7)
    gen = torch.Generator().manual_seed(3)
    u = torch.rand(1, 4, 5, generator=gen, dtype=torch.float64)
    noise = torch.log(u) - torch.log1p(-u)
    got = relaxed_bound(model, x, 1, noise=noise).detach().numpy()

    p = {k: v.detach().numpy() for k, v in model.named_parameters()}
    w = [p[f"{net}.{i}.{t}"] for net in ("encoder", "decoder") for i in (0, 2, 4)
         for t in ("weight", "bias")] + [p["prior_logits"]]
    xn, ln_ = x.numpy(), noise[0].numpy()
    h = np.tanh(xn @ w[0].T + w[1])
    h = np.tanh(h @ w[2].T + w[3])
    log_alpha = h @ w[4].T + w[5]
    lam1, lam2, a = POSTERIOR_TEMPERATURE, PRIOR_TEMPERATURE, w[12]
    y = (log_alpha + ln_) / lam1

    def log_logistic(y: np.ndarray, log_a: np.ndarray, lam: float) -> np.ndarray:
        return np.log(lam) - lam * y + log_a - 2 * np.log1p(np.exp(-lam * y + log_a))

    s = 2.0 / (1.0 + np.exp(-y)) - 1.0
    g = np.tanh(s @ w[6].T + w[7])
    g = np.tanh(g @ w[8].T + w[9])
    eta = g @ w[10].T + w[11]
    log_px = (xn * eta - np.log1p(np.exp(eta))).sum(-1)
    want = log_px + log_logistic(y, a, lam2).sum(-1) - log_logistic(y, log_alpha, lam1).sum(-1)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)

    # m > 1: log-mean-exp of the single-sample terms on the same noise rows
    noise5 = torch.cat([noise] * 2 + [torch.zeros_like(noise)] * 3)
    singles = torch.stack([relaxed_bound(model, x, 1, noise=noise5[i : i + 1]) for i in range(5)])
    torch.testing.assert_close(relaxed_bound(model, x, 5, noise=noise5),
                               torch.logsumexp(singles, 0) - math.log(5))


def test_concrete_gradient_reaches_every_parameter() -> None:
    model = tiny_model(n_latent=4, n_visible=6)
    ConcreteObjective(model, 3).loss(tiny_images(5, 6))["loss"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.count_nonzero(p.grad) > 0, name


# --------------------------------------------------------------------------------- NVIL, VIMCO
def exact_bound(model: BinaryVAE, x: torch.Tensor, m: int) -> torch.Tensor:
    """E[L_m] averaged over the images, by enumerating all (2^N)^m joint codes (differentiable)."""
    log_w, log_q = log_weights(model, x)  # (C, B)
    c = log_w.shape[0]
    idx = torch.cartesian_prod(*[torch.arange(c)] * m).reshape(-1, m)  # (C^m, m)
    bound = torch.logsumexp(log_w[idx], 1) - math.log(m)  # (C^m, B)
    prob = log_q[idx].sum(1).exp()
    return (prob * bound).sum(0).mean()


def grads(module: torch.nn.Module, loss: torch.Tensor, names: list[str]) -> torch.Tensor:
    module.zero_grad(set_to_none=True)
    loss.backward()
    params = dict(module.named_parameters())
    return torch.cat([params[n].grad.reshape(-1) for n in names])


def estimator_z(objective: torch.nn.Module, surrogate, x: torch.Tensor, names: list[str],
                exact: torch.Tensor, groups: int = 100, reps: int = 1000) -> torch.Tensor:
    """z-scores of the mean of groups × reps gradient estimates against the exact gradient.

    Coordinates with no variance (pixels that are 0 in every image give no encoder gradient)
    must equal the exact value and get z = 0."""
    xs = x.repeat(reps, 1)
    est = torch.stack([grads(objective, surrogate(xs), names) for _ in range(groups)])
    se = est.std(0) / math.sqrt(groups)
    flat = se == 0
    assert flat.sum() < len(se) // 4
    torch.testing.assert_close(est[0, flat], exact[flat])
    return torch.where(flat, 0.0, (est.mean(0) - exact) / se.clamp_min(1e-300))


@pytest.mark.parametrize("which", ["nvil", "vimco"])
def test_score_function_surrogates_are_unbiased_against_enumeration(which: str) -> None:
    """Mean of 1e5 estimates vs the exact gradient of E[L_m] (enumeration over all codes), each
    coordinate a two-sided z-test at |z| < 4.5 (p = 7e-6, Bonferroni over the ~100 coordinates:
    family-wise 1e-3). Power: the same test rejects a deliberately biased variant (the score
    term without -log q in NVIL's signal; VIMCO without its score term)."""
    torch.manual_seed(0)
    model = tiny_model(n_latent=3, n_visible=6, arch="linear", scale=0.7, seed=4)
    x = tiny_images(2, 6, seed=5)
    m = 1 if which == "nvil" else 5
    if which == "nvil":
        objective = NVILObjective(model, baseline_hidden=4).double()
        for _ in range(5):  # move the running moments and make the baseline non-trivial
            objective.loss(x.repeat(50, 1))
        objective.eval()  # freeze them
        scale = max(1.0, float(objective.nvil.running_var.sqrt()))
        assert scale > 1.5  # the variance normalisation is active in this test
    else:
        objective = VIMCOObjective(model, m)
        scale = 1.0
    enc = [f"model.{n}" for n, _ in model.encoder.named_parameters(prefix="encoder")]
    gen = ["model.prior_logits"] + [
        f"model.{n}" for n, _ in model.decoder.named_parameters(prefix="decoder")]
    model.zero_grad()
    (-exact_bound(model, x, m)).backward()
    params = dict(model.named_parameters())
    exact_enc = torch.cat([params[n[6:]].grad.reshape(-1) for n in enc]) / scale
    exact_gen = torch.cat([params[n[6:]].grad.reshape(-1) for n in gen])
    assert exact_enc.abs().max() > 0.05 and exact_gen.abs().max() > 0.05

    def ours(xs: torch.Tensor) -> torch.Tensor:
        return objective.loss(xs)["loss"]

    z = estimator_z(objective, ours, x, enc + gen, torch.cat([exact_enc, exact_gen]))
    z_enc, z_gen = z[: len(exact_enc)], z[len(exact_enc) :]
    assert z_enc.abs().max() < Z, z_enc
    assert z_gen.abs().max() < Z, z_gen

    from concrete.binary_vae import _discrete_terms

    def biased(xs: torch.Tensor) -> torch.Tensor:
        log_p, log_q = _discrete_terms(model, xs, m)
        if which == "nvil":  # signal l = log p(x, b): the -log q term left out
            l_hat, _ = objective.nvil.learning_signal(log_p[0].detach(), xs)
            return -(log_p[0] + l_hat * log_q[0]).mean()
        lw = log_p - log_q  # VIMCO without its score term
        return -(torch.logsumexp(lw, 0) - math.log(m)).mean()

    z_bad = estimator_z(objective, biased, x, enc, exact_enc, groups=20)
    assert z_bad.abs().max() > 2 * Z, z_bad.abs().max()


def test_nvil_and_vimco_shapes_and_arguments() -> None:
    model = BinaryVAE("nonlinear", n_latent=5, n_visible=12, hidden=4)
    x = (torch.rand(7, 12) < 0.5).float()
    nvil = NVILObjective(model)
    out = nvil.loss(x)
    assert out["loss"].shape == () and out["elbo"].shape == ()
    out["loss"].backward()
    baseline = nvil.nvil.baseline
    assert baseline[0].weight.grad is not None and baseline[0].in_features == 12
    assert baseline[0].out_features == 100
    assert len({id(p) for p in nvil.parameters()}) == len(list(model.parameters())) + 4
    vimco = VIMCOObjective(model, 3)
    out = vimco.loss(x)
    assert out["loss"].shape == () and vimco.name == "vimco m=3"
    for call, word in [
        (lambda: VIMCOObjective(model, 1), "m"),
        (lambda: NVILObjective(model, baseline_hidden=0), "baseline_hidden"),
        (lambda: NVILObjective(model, decay=1.0), "decay"),
        (lambda: NVILObjective(torch.nn.Linear(2, 2)), "model"),
        (lambda: nvil.loss(torch.zeros(3, 11)), "x"),
        (lambda: vimco.loss(torch.zeros(3)), "x"),
    ]:
        with pytest.raises(ValueError, match=word):
            call()


# --------------------------------------------------------------------------------- evaluation
def test_exact_log_px_against_brute_force() -> None:
    model = tiny_model(n_latent=8, n_visible=12, arch="linear")
    x = tiny_images(3, 12)
    want = []
    for i in range(len(x)):
        terms = []
        for bits in itertools.product((0.0, 1.0), repeat=8):
            b = torch.tensor(bits, dtype=torch.float64)
            eta = model.decoder(2 * b - 1)
            a = model.prior_logits
            lp = (x[i] * eta - F.softplus(eta)).sum() + (b * a - F.softplus(a)).sum()
            terms.append(lp)
        want.append(torch.logsumexp(torch.stack(terms), 0))
    torch.testing.assert_close(exact_log_px(model, x), torch.stack(want).detach())


def test_iw_bound_is_exact_in_the_limit_against_enumeration() -> None:
    """8 bits, 2^8 codes: L_k → log p(x). Tolerance from the delta method on the exact variance:
    L_k - log p(x) ≈ log(1 + ε), ε ~ N(0, s²/k) with s² = Var_q(w) / p(x)² computed exactly."""
    model = tiny_model(n_latent=8, n_visible=12, scale=0.3)
    x = tiny_images(3, 12)
    with torch.no_grad():
        log_w, log_q = log_weights(model, x)
        log_px = exact_log_px(model, x)
        s2 = torch.exp(torch.logsumexp(2 * log_w + log_q - 2 * log_px, 0)) - 1.0  # (B,)
        k = 40_000
        got = iw_bound(model, x, k, chunk=5000, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(log_px, torch.logsumexp(log_w + log_q, 0))
    tol = Z * torch.sqrt(s2 / k) + s2 / k
    assert (tol < 0.05).all(), tol  # the test resolves 0.05 nats ...
    elbo = (log_q.exp() * log_w).sum(0)
    assert (log_px - elbo > 0.5).all()  # ... and the ELBO is > 0.5 nats below log p(x)
    assert ((got - log_px).abs() <= tol).all(), (got - log_px, tol)


def test_iw_bound_mean_increases_with_k_and_l1_is_the_exact_elbo() -> None:
    model = tiny_model(n_latent=8, n_visible=12, scale=0.8, seed=2)
    x = tiny_images(1, 12)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        log_w, log_q = log_weights(model, x)
        elbo = (log_q.exp() * log_w).sum(0)[0]
        log_px = exact_log_px(model, x)[0]
        reps = 4000
        xs = x.expand(reps, -1)
        means, ses = [], []
        for k in (1, 4, 16, 64):
            v = iw_bound(model, xs, k, chunk=64, generator=gen)
            means.append(float(v.mean()))
            ses.append(float(v.std() / math.sqrt(reps)))
    assert abs(means[0] - float(elbo)) < Z * ses[0]  # E L_1 = ELBO
    for i in range(3):  # strictly increasing (independent runs: SE of a difference)
        assert means[i + 1] - means[i] > 3 * math.hypot(ses[i], ses[i + 1]), (means, ses)
    assert means[-1] < float(log_px) + Z * ses[-1]
    assert float(log_px) - float(elbo) > 1.0  # the tiny model has a real gap to close


def test_iw_bound_matches_concrete_evaluate_two_class_view() -> None:
    """Same law as concrete.evaluate.iw_bound on bits seen as 2-class categoricals: E L_4 equal."""
    model = tiny_model(n_latent=6, n_visible=12, scale=0.8)
    x = tiny_images(1, 12).expand(3000, -1)
    encode, decode, prior = two_class_view(model)
    with torch.no_grad():
        ours = iw_bound(model, x, 4, generator=torch.Generator().manual_seed(0))
        theirs = categorical_iw_bound(encode, decode, x, 4, prior_logits=prior,
                                      generator=torch.Generator().manual_seed(1))
    se = math.hypot(ours.std(), theirs.std()) / math.sqrt(len(x))
    assert abs(float(ours.mean() - theirs.mean())) < Z * se


def test_evaluate_bound_and_random_subset() -> None:
    model = tiny_model(n_latent=4, n_visible=12).float()
    images = (torch.rand(23, 12) < 0.5).float()
    res = evaluate_bound(model, images, k=10, batch_size=5, chunk=4)
    assert res.n == 23 and res.iw.shape == (23,) and res.k == 10
    assert math.isclose(res.neg_log_px, -float(res.iw.mean()), rel_tol=1e-6)
    assert "L_10" in str(res)
    sub = random_subset(torch.arange(100), 10, seed=3)
    assert len(set(sub.tolist())) == 10
    assert torch.equal(sub, random_subset(torch.arange(100), 10, seed=3))
    assert not torch.equal(sub.sort().values, torch.arange(10))  # not the first rows


# --------------------------------------------------------------------------------- training
def test_fit_steps_records_and_trains() -> None:
    model = BinaryVAE("linear", n_latent=4, n_visible=12)
    data = (torch.rand(50, 12) < 0.5).float()
    before = model.decoder[-1].weight.detach().clone()
    run = fit_steps(ConcreteObjective(model), data, steps=7, lr=1e-2, batch_size=8, eval_every=3,
                    evaluate=lambda m: {"train": m.training})
    assert run.steps == [3, 6, 7] and len(run.seconds) == 3 and len(run.train_loss) == 3
    assert all(e == {"train": False} for e in run.evals)  # evaluated in eval mode
    assert model.training
    assert not torch.equal(before, model.decoder[-1].weight)


def test_linear_decay_values() -> None:
    lr = 1e-3
    assert [linear_decay(lr, p, 0.5) for p in (0.0, 0.5, 0.75, 1.0, 1.5)] == pytest.approx(
        [lr, lr, lr / 2, 0.0, 0.0])
    assert linear_decay(lr, 0.9, 0.0) == lr                     # fraction 0: constant
    assert linear_decay(lr, 0.25, 1.0) == pytest.approx(0.75 * lr)  # decay over the whole budget


def test_fit_steps_follows_the_schedule() -> None:
    model = BinaryVAE("linear", n_latent=4, n_visible=12)
    data = (torch.rand(50, 12) < 0.5).float()
    seen: list[tuple[int, float]] = []
    rates: list[float] = []

    class Spy(ConcreteObjective):
        def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            rates.append(opt.param_groups[0]["lr"])   # the rate the coming step will use
            return super().loss(x)

    obj = Spy(model)
    from concrete.train import make_adam

    opt = make_adam(obj.parameters(), lr=1.0, weight_decay=0.0)

    def schedule(done: int, seconds: float) -> float:
        seen.append((done, seconds))
        return linear_decay(1e-2, done / 4, 0.5)

    fit_steps(obj, data, steps=4, lr=1e-2, batch_size=8, optimizer=opt, lr_schedule=schedule)
    assert [d for d, _ in seen] == [0, 1, 2, 3]
    assert all(t >= 0 for _, t in seen) and [t for _, t in seen] == sorted(t for _, t in seen)
    assert rates == pytest.approx([1e-2, 1e-2, 1e-2, 5e-3])
    assert opt.param_groups[0]["lr"] == pytest.approx(5e-3)


class _NoisyLinear(torch.nn.Module):
    """loss = w · ε with ε ~ N(0, I_d) fresh each call: the gradient is ε, so the trace of its
    covariance is d and the mean is 0 (or loss = w · (μ + ε): mean μ)."""

    def __init__(self, d: int, mu: float = 0.0) -> None:
        super().__init__()
        self.model = torch.nn.Module()
        self.model.encoder = torch.nn.Linear(d, 1, bias=False)
        self.model.decoder = torch.nn.Linear(1, 1)
        self.model.n_visible = 3
        self.d, self.mu = d, mu

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        eps = self.mu + torch.randn(self.d)
        return {"loss": (self.model.encoder.weight[0] * eps).sum()}


def test_gradient_variance_against_a_known_covariance() -> None:
    # trace of the covariance of R = 400 draws of eps ~ N(0, I_50): its estimate has mean 50 and
    # sd sqrt(2 * 50 / (R - 1)) * ... ≈ 50 * sqrt(2 / (R - 1)) / sqrt(50) = 0.71; |z| < 4.5
    torch.manual_seed(0)
    obj = _NoisyLinear(50, mu=1.0)
    x = torch.zeros(4, 3)
    stats = gradient_variance(obj, x, repeats=400)
    assert abs(stats.variance - 50) < 4.5 * 50 * math.sqrt(2 / 399) / math.sqrt(50)
    # mean gradient mu·1: |mean|^2 = 50 + trace/R in expectation
    sd = math.sqrt(4 * 50 / 400 + 2 * 50 / 400**2)
    assert abs(stats.mean_norm_sq - (50 + 50 / 400)) < 4.5 * sd
    assert math.isclose(stats.relative_variance, stats.variance / stats.mean_norm_sq)
    assert obj.model.encoder.weight.grad is None  # .grad untouched
    assert obj.training  # mode restored


def test_gradient_variance_of_the_objectives_and_bad_arguments() -> None:
    torch.manual_seed(0)
    model = tiny_model(n_latent=5, n_visible=12).float()
    x = (torch.rand(8, 12) < 0.5).float()
    for obj in (ConcreteObjective(model), NVILObjective(model), VIMCOObjective(model, 3)):
        before = {k: v.clone() for k, v in obj.state_dict().items()}
        stats = gradient_variance(obj, x, repeats=4)
        assert stats.variance > 0 and stats.mean_norm_sq > 0 and stats.repeats == 4
        after = obj.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before)  # no running statistic moved
    dec = gradient_variance(ConcreteObjective(model), x, repeats=3, part="decoder")
    assert dec.variance > 0
    with pytest.raises(ValueError, match="repeats"):
        gradient_variance(ConcreteObjective(model), x, repeats=1)
    with pytest.raises(ValueError, match="part"):
        gradient_variance(ConcreteObjective(model), x, part="prior")
    with pytest.raises(ValueError, match="x"):
        gradient_variance(ConcreteObjective(model), torch.zeros(3, 5))


# --------------------------------------------------------------------------------- data
def test_missing_data_message_says_how_to_obtain_it(tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(RuntimeError) as err:
            load_binarized_mnist(tmp_path, download=False)
    msg = str(err.value)
    assert "binarized_mnist_larochelle.npz" in msg and "larocheh" in msg
    assert "'train'" in msg and "MNIST" in msg and str(tmp_path) in msg
    assert any("binarized_mnist_larochelle.npz" in str(w.message) for w in caught)


@pytest.mark.skipif(not MNIST_RAW.is_dir(), reason="torchvision's MNIST files are not here")
def test_seeded_fallback_is_labelled_and_reproducible(tmp_path: Path) -> None:
    (tmp_path / "MNIST").mkdir()
    (tmp_path / "MNIST" / "raw").symlink_to(MNIST_RAW)
    with pytest.warns(UserWarning, match="seeded binarization"):
        data = load_binarized_mnist(tmp_path, seed=5, download=False)
    assert data.source == "seeded" and "seed 5" in data.description
    assert data.train.shape == (50_000, 784) and data.valid.shape == (10_000, 784)
    assert data.test.shape == (10_000, 784)
    assert set(data.test[:50].unique().tolist()) == {0.0, 1.0}
    from concrete.mnist import load_mnist

    grey, _ = load_mnist(train=True, root=tmp_path, download=False)
    again = torch.bernoulli(grey, generator=torch.Generator().manual_seed(5))
    assert torch.equal(again[:50_000], data.train)
    assert data.pixel_means.shape == (784,)
