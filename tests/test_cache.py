"""Tests for concrete.cache: cached training (load instead of retrain, atomic write, env vars)."""

from __future__ import annotations

import pytest
import torch

from concrete.binary_vae import BinaryVAE, NVILObjective
from concrete.cache import (
    CACHE_ENV,
    RETRAIN_ENV,
    cache_dir,
    cache_path,
    cached_fit,
    cached_fit_steps,
)
from concrete.models import DiscreteVAE


def _model(seed: int = 0) -> DiscreteVAE:
    torch.manual_seed(seed)
    return DiscreteVAE(6, 2, 3, hidden=(5,), likelihood="bernoulli", objective="gumbel_softmax")


X = torch.bernoulli(torch.full((30, 6), 0.4), generator=torch.Generator().manual_seed(0))
KW = dict(epochs=2, batch_size=10, seed=0, device="cpu", live=False, log=False)


def test_cache_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "env"))
    assert cache_dir(tmp_path / "a") == tmp_path / "a"
    assert cache_dir() == tmp_path / "env"
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "concrete" / "models"


def test_cache_key_depends_on_config(tmp_path):
    a = cache_path("m", {"lr": 1e-3}, tmp_path)
    assert a == cache_path("m", {"lr": 1e-3}, tmp_path) and a.suffix == ".pt"
    assert a != cache_path("m", {"lr": 2e-3}, tmp_path)
    with pytest.raises(ValueError, match="name"):
        cache_path("a/b", {}, tmp_path)


def test_second_call_loads_the_same_model(tmp_path, monkeypatch):
    monkeypatch.delenv(RETRAIN_ENV, raising=False)
    m1 = _model()
    h1, trained1 = cached_fit(m1, X, name="tiny", config={"v": 1}, root=tmp_path, **KW)
    m2 = _model(seed=5)  # different initial weights
    h2, trained2 = cached_fit(m2, X, name="tiny", config={"v": 1}, root=tmp_path, **KW)
    assert trained1 and not trained2
    assert h2.metrics == h1.metrics and h2.steps == h1.steps == 6
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert not list(tmp_path.glob("*.tmp"))  # atomic write left no temporary file
    # retraining on request (argument or environment), same seed -> same weights on the CPU
    m3 = _model()  # same initial weights
    monkeypatch.setenv(RETRAIN_ENV, "1")
    _, trained3 = cached_fit(m3, X, name="tiny", config={"v": 1}, root=tmp_path, **KW)
    assert trained3
    for a, b in zip(m1.state_dict().values(), m3.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    _, trained4 = cached_fit(_model(), X, name="tiny", config={"v": 2}, root=tmp_path,
                             retrain=False, **KW)
    assert trained4  # a new config is a new cache entry


def test_cached_fit_steps_trains_once_then_loads_the_whole_objective(tmp_path):
    data = (torch.rand(40, 12, generator=torch.Generator().manual_seed(1)) < 0.5).float()

    def objective(seed):
        torch.manual_seed(seed)
        return NVILObjective(BinaryVAE("linear", n_latent=4, n_visible=12))

    kw = dict(steps=6, lr=1e-2, batch_size=8, seed=0, eval_every=3,
              evaluate=lambda m: {"bias": float(m.prior_logits.detach().sum())})
    cfg = {"steps": 6, "lr": 1e-2}
    first = objective(0)
    run, trained = cached_fit_steps(first, data, name="nvil", config=cfg, root=tmp_path, **kw)
    assert trained and run.steps == [3, 6] and len(run.evals) == 2
    second = objective(1)  # other initial weights: loading must overwrite all of them
    run2, trained2 = cached_fit_steps(second, data, name="nvil", config=cfg, root=tmp_path, **kw)
    assert not trained2 and run2.as_dict() == run.as_dict()
    for (k, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), k  # the baseline network and running moments too
    _, trained3 = cached_fit_steps(objective(0), data, name="nvil", config={**cfg, "lr": 2e-2},
                                   root=tmp_path, **kw)
    assert trained3  # another config, another file
    _, again = cached_fit_steps(objective(0), data, name="nvil", config=cfg, root=tmp_path,
                                retrain=True, **kw)
    assert again
