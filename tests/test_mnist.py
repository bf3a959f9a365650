"""Tests for concrete.mnist: data directory, loading, dynamic and fixed binarization."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from concrete.mnist import (
    DATA_ENV,
    LAROCHELLE_FILE,
    DynamicBinarize,
    data_dir,
    dynamic_binarize,
    exp_anneal,
    exp_lr_decay,
    load_binarized_test,
    load_mnist,
    match_labels,
    mnist_vae,
    per_class_indices,
)

DATA = data_dir()
HAVE_MNIST = (DATA / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file()
HAVE_LAROCHELLE = (DATA / LAROCHELLE_FILE).is_file()
needs_mnist = pytest.mark.skipif(not HAVE_MNIST, reason=f"MNIST files not under {DATA}")


def test_data_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "env"))
    assert data_dir(tmp_path / "arg") == tmp_path / "arg"  # argument wins
    assert data_dir() == tmp_path / "env"                  # then the variable
    monkeypatch.delenv(DATA_ENV)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_dir() == tmp_path / "home" / ".cache" / "concrete" / "data"
    with pytest.raises(ValueError, match="root"):
        data_dir("")


def test_missing_files_offline_say_where_to_put_them(tmp_path):
    with pytest.raises(RuntimeError) as info:
        load_mnist(train=False, root=tmp_path, download=False)
    msg = str(info.value)
    assert str(tmp_path / "MNIST" / "raw") in msg and "train-images-idx3-ubyte" in msg
    with pytest.raises(RuntimeError, match="MNIST/raw"):
        load_binarized_test(tmp_path, download=False)


def test_dynamic_binarize_is_bernoulli_of_the_grey_level():
    gen = torch.Generator().manual_seed(0)
    grey = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0]).repeat(40_000, 1)
    x = dynamic_binarize(grey, gen)
    assert x.shape == grey.shape and x.dtype == grey.dtype
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    assert x[:, 0].sum() == 0 and x[:, 4].sum() == len(x)
    # each column's frequency within 5 standard errors of its probability (p ≈ 6e-7 each)
    freq = x.mean(0)
    se = (grey[0] * (1 - grey[0]) / len(x)).sqrt()
    assert ((freq - grey[0]).abs() <= 5 * se + 1e-12).all(), freq
    # fresh noise at each call, reproducible with a seeded generator
    assert not torch.equal(dynamic_binarize(grey), dynamic_binarize(grey))
    a = dynamic_binarize(grey, torch.Generator().manual_seed(3))
    assert torch.equal(a, dynamic_binarize(grey, torch.Generator().manual_seed(3)))


def test_dynamic_binarize_rejects_bad_input():
    with pytest.raises(ValueError, match="grey levels"):
        dynamic_binarize(torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match="dtype"):
        dynamic_binarize(torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="batch"):
        DynamicBinarize()("not a batch")


def test_dynamic_binarize_transform_on_batches():
    t = DynamicBinarize(torch.Generator().manual_seed(1))
    grey = torch.full((8, 784), 0.5)
    labels = torch.arange(8)
    xb, yb = t((grey, labels))
    assert set(xb.unique().tolist()) == {0.0, 1.0} and torch.equal(yb, labels)
    out = t([grey, labels])
    assert isinstance(out, list) and out[1] is labels
    assert t(grey).shape == grey.shape


@needs_mnist
def test_load_mnist_shapes_and_range():
    images, labels = load_mnist(train=False)
    assert images.shape == (10_000, 784) and images.dtype == torch.float32
    assert labels.shape == (10_000,) and labels.dtype == torch.int64
    assert images.min() == 0 and images.max() == 1
    assert sorted(labels.unique().tolist()) == list(range(10))
    # a digit's mean grey level is about 0.13 (the published MNIST mean is 0.1307 for train)
    assert abs(images.mean().item() - 0.133) < 0.01
    with pytest.raises(ValueError, match="train"):
        load_mnist(train="yes")


@needs_mnist
def test_seeded_test_set_is_fixed_and_binary(tmp_path):
    (tmp_path / "MNIST").symlink_to(DATA / "MNIST")  # MNIST present, no Larochelle file
    a = load_binarized_test(tmp_path, seed=0)
    b = load_binarized_test(tmp_path, seed=0)
    c = load_binarized_test(tmp_path, seed=1)
    assert a.source == "seeded" and "seed 0" in a.description and len(a) == 10_000
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    assert set(a.images.unique().tolist()) == {0.0, 1.0}
    grey, labels = load_mnist(train=False)
    assert torch.equal(a.labels, labels)
    # pixel frequency matches the grey levels: |mean diff| < 5 standard errors
    diff = (a.images - grey).mean().item()
    se = math.sqrt((grey * (1 - grey)).sum().item()) / grey.numel()
    assert abs(diff) < 5 * se
    with pytest.raises(ValueError, match="seed"):
        load_binarized_test(tmp_path, seed=-1)


@pytest.mark.skipif(not HAVE_LAROCHELLE, reason=f"no {LAROCHELLE_FILE} under {DATA}")
def test_larochelle_test_set_is_used_when_present():
    t = load_binarized_test()
    assert t.source == "larochelle" and t.labels is None
    assert t.images.shape == (10_000, 784) and t.images.dtype == torch.float32
    assert set(t.images.unique().tolist()) == {0.0, 1.0}
    assert "Larochelle" in t.description and Path(str(DATA)).name in t.description
    if HAVE_MNIST:
        assert load_binarized_test(prefer_larochelle=False).source == "seeded"


def test_schedules():
    tau = exp_anneal(3e-5, 0.5)
    assert tau(0) == 1.0 and tau(10_000) == pytest.approx(math.exp(-0.3))
    assert tau(10**6) == 0.5
    assert exp_anneal(1e-3, 0.1, start=2.0)(0) == 2.0
    f = exp_lr_decay(100, 0.1)
    assert f(0) == 1.0 and f(50) == pytest.approx(0.1**0.5) and f(100) == pytest.approx(0.1)
    assert f(500) == pytest.approx(0.1)
    h = exp_lr_decay(100, 0.1, hold=0.8)  # constant for 80 steps, then down to 0.1 at 100
    assert h(0) == h(80) == 1.0 and h(90) == pytest.approx(0.1**0.5)
    assert h(100) == pytest.approx(0.1) and h(150) == pytest.approx(0.1)
    w = exp_lr_decay(100, 0.1, hold=0.8, warmup=10)  # linear warm-up over 10 steps, then as h
    assert w(0) == pytest.approx(0.1) and w(4) == pytest.approx(0.5) and w(9) == 1.0
    assert all(w(t) == h(t) for t in range(9, 160))
    with pytest.raises(ValueError, match="hold"):
        exp_lr_decay(10, 0.1, hold=1.0)
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="warmup"):
            exp_lr_decay(10, 0.1, warmup=bad)
    with pytest.raises(ValueError, match="minimum"):
        exp_anneal(1e-3, 0.0)
    with pytest.raises(ValueError, match="rate"):
        exp_anneal(float("nan"))
    with pytest.raises(ValueError, match="total_steps"):
        exp_lr_decay(0)
    with pytest.raises(ValueError, match="final_factor"):
        exp_lr_decay(10, 0.0)


def test_mnist_vae_architecture():
    model = mnist_vae("concrete", posterior_temperature=0.5)
    linears = [m for m in model.encoder if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 512), (512, 256),
                                                                  (256, 200)]
    linears = [m for m in model.decoder if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(200, 256), (256, 512),
                                                                  (512, 784)]
    assert model.likelihood == "bernoulli" and model.objective == "concrete"
    assert model.posterior_temperature == 0.5
    x = torch.bernoulli(torch.full((3, 784), 0.2))
    assert model.encode(x).shape == (3, 20, 10)


def test_fit_lr_schedule_is_applied_per_step():
    from concrete.train import fit

    x = torch.rand(40, 784)
    seen: list[int] = []

    def zero(step: int) -> float:
        seen.append(step)
        return 0.0

    torch.manual_seed(0)
    model = mnist_vae("gumbel_softmax", hidden=(8,))
    before = [p.detach().clone() for p in model.parameters()]
    fit(model, x, epochs=2, batch_size=10, seed=0, device="cpu", lr_schedule=zero,
        transform=DynamicBinarize(), live=False, log=False)
    assert seen == list(range(8))  # one call per step, global step count
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    fit(model, x, epochs=1, batch_size=10, seed=0, device="cpu", lr_schedule=lambda s: 1.0,
        live=False, log=False)
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    with pytest.raises(ValueError, match="lr_schedule"):
        fit(model, x, epochs=1, batch_size=10, device="cpu", lr_schedule=lambda s: float("nan"),
            live=False, log=False)


def test_match_labels_finds_the_source_of_each_binarization():
    g = torch.Generator().manual_seed(0)
    grey = torch.rand(50, 784, generator=g) ** 3           # 50 distinct grey images
    labels = torch.arange(50) % 7
    order = torch.randperm(50, generator=g)
    binary = torch.bernoulli(grey[order], generator=g)
    assert torch.equal(match_labels(binary, grey, labels, chunk=8), labels[order])
    with pytest.raises(ValueError, match="labels"):
        match_labels(binary, grey, labels[:3])
    with pytest.raises(ValueError, match="chunk"):
        match_labels(binary, grey, labels, chunk=0)


def test_per_class_indices_is_fixed_stratified_and_checked():
    labels = torch.tensor([0] * 5 + [1] * 3 + [2] * 4)
    idx = per_class_indices(labels, 2, seed=1)
    assert idx.shape == (6,) and labels[idx].tolist() == [0, 0, 1, 1, 2, 2]
    assert len(set(idx.tolist())) == 6
    assert torch.equal(idx, per_class_indices(labels, 2, seed=1))
    others = {tuple(per_class_indices(labels, 2, seed=s).tolist()) for s in range(10)}
    assert len(others) > 1                                   # the seed matters
    with pytest.raises(ValueError, match="fewer than per_class"):
        per_class_indices(labels, 4)
    with pytest.raises(ValueError, match="per_class"):
        per_class_indices(labels, 0)


@needs_mnist
@pytest.mark.skipif(not HAVE_LAROCHELLE, reason=f"{LAROCHELLE_FILE} not under {DATA}")
def test_larochelle_test_set_is_sorted_by_digit():
    # The fixed test set has no labels; matched to torchvision's grey test images it is the MNIST
    # test set sorted by digit (chapter 5 relies on this to pick one image of each digit).
    test = load_binarized_test()
    grey, labels = load_mnist(train=False)
    sample = torch.arange(0, 10_000, 97)                     # 104 images spread over the set
    sorted_labels = torch.repeat_interleave(torch.arange(10), torch.bincount(labels))
    assert torch.equal(match_labels(test.images[sample], grey, labels), sorted_labels[sample])
