"""The training loop (concrete.train.fit)."""

from __future__ import annotations

import copy
import os

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from concrete import train as train_module
from concrete.models import DiscreteVAE, GaussianVAE
from concrete.monitor import TrainingMonitor
from concrete.train import History, as_tensor_data, fit, make_adam

SHAPE = (3, 4, 4)


def _data(n: int = 60) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    protos = torch.rand(3, *SHAPE, generator=g)
    y = torch.arange(n) % 3
    return TensorDataset(protos[y], y)


def _model(seed: int = 0) -> DiscreteVAE:
    torch.manual_seed(seed)
    return DiscreteVAE(SHAPE, n_latents=2, hidden=(8,))


def _fit(model, data, **kw):
    kw.setdefault("epochs", 2)
    kw.setdefault("batch_size", 16)
    return fit(model, data, device="cpu", log=False, **kw)


def test_history_metrics_and_loss_decreases():
    data = _data()
    model = _model()
    h = _fit(model, data, epochs=6, lr=1e-2)
    assert isinstance(h, History)
    assert h.epochs == [1, 2, 3, 4, 5, 6]
    assert set(h.metrics) == {"loss", "nll", "kl"}
    assert all(len(v) == 6 for v in h.metrics.values())
    assert h.steps == 6 * 4  # 60 examples, batches of 16 -> 4 steps per epoch
    assert h["loss"][-1] < h["loss"][0]
    assert h.last("loss") == pytest.approx(h.last("nll") + h.last("kl"), rel=1e-4, abs=1e-3)


def test_epoch_metrics_are_example_weighted_means():
    """With lr tiny the parameters hardly move: the epoch mean equals the full-data loss."""
    data = _data(50)  # batches 16, 16, 16, 2
    model = GaussianVAE(SHAPE, latent_dim=2, hidden=(8,))
    h = _fit(model, data, epochs=1, lr=1e-12, weight_decay=0.0, seed=3)
    # the KL part is deterministic given the parameters, which did not move
    with torch.no_grad():
        mu, log_var = model.encode(data.tensors[0])
    kl = (-0.5 * (1 + log_var - mu.square() - log_var.exp()).sum(-1)).mean()
    assert h.last("kl") == pytest.approx(float(kl), rel=1e-5)


def test_same_seed_same_result_and_different_seed_differs():
    data = _data()
    a, b, c = _model(), _model(), _model()
    ha = _fit(a, data, seed=1)
    hb = _fit(b, data, seed=1)
    hc = _fit(c, data, seed=2)
    assert ha.metrics == hb.metrics
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert ha.metrics != hc.metrics


def test_temperature_schedule_and_transform_are_called():
    data = _data(32)
    seen_steps, seen_batches = [], []

    def schedule(step: int) -> float:
        seen_steps.append(step)
        return max(0.5, 1.0 - 0.1 * step)

    def transform(x: torch.Tensor) -> torch.Tensor:
        seen_batches.append(x.shape[0])
        return (x > 0.5).float()

    model = _model()
    h = _fit(model, data, epochs=2, temperature_schedule=schedule, transform=transform)
    assert seen_steps == list(range(4))
    assert seen_batches == [16, 16, 16, 16]
    assert h.steps == 4


def test_eval_data_adds_val_metrics_with_eval_kwargs():
    data = _data()
    model = _model()
    h = _fit(model, data, eval_data=data, eval_kwargs={"discrete": True})
    assert {"val_loss", "val_nll", "val_kl"} <= set(h.metrics)
    with torch.no_grad():
        expect = model.loss(data.tensors[0], discrete=True, reduction="none")["kl"].mean()
    # the categorical KL is deterministic given the parameters
    assert h.last("val_kl") == pytest.approx(float(expect), rel=1e-5)


class _Exploding(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(1.0))
        self.calls = 0

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.calls += 1
        bad = torch.tensor(float("nan")) if self.calls == 6 else torch.tensor(0.0)
        return {"loss": self.w * x.mean() + bad}


def test_non_finite_loss_raises_naming_epoch_and_step():
    model = _Exploding()
    with pytest.raises(FloatingPointError, match=r"epoch 2, step 2/4 \(global step 6\).*nan"):
        _fit(model, _data(), epochs=3)


def test_checkpoint_is_written_and_resume_equals_uninterrupted(tmp_path):
    data = _data()
    path = tmp_path / "sub" / "ckpt.pt"
    full = _model()
    h_full = _fit(full, data, epochs=4, seed=5)

    part = _model()
    _fit(part, data, epochs=2, seed=5, checkpoint=path)
    assert path.exists()
    assert not [p for p in os.listdir(path.parent) if p.endswith(".tmp")]  # no temp left
    resumed = _model(seed=123)  # different init: everything must come from the checkpoint
    h_res = _fit(resumed, data, epochs=4, seed=5, checkpoint=path, resume=True)
    assert h_res.epochs == [1, 2, 3, 4]
    assert h_res.steps == h_full.steps
    for k in h_full.metrics:
        assert h_res[k] == pytest.approx(h_full[k], rel=1e-5)
    for pa, pb in zip(full.parameters(), resumed.parameters(), strict=True):
        torch.testing.assert_close(pa, pb)
    # a finished run resumes to no further training
    again = _model(seed=9)
    h_again = _fit(again, data, epochs=4, seed=5, checkpoint=path, resume=True)
    assert h_again.steps == h_full.steps
    for pa, pb in zip(full.parameters(), again.parameters(), strict=True):
        torch.testing.assert_close(pa, pb)


def test_failed_save_leaves_previous_checkpoint(tmp_path, monkeypatch):
    data = _data()
    path = tmp_path / "ckpt.pt"
    _fit(_model(), data, epochs=1, checkpoint=path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        _fit(_model(), data, epochs=1, checkpoint=path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ckpt.pt"]


def test_monitor_receives_epochs_and_headless_figure(capsys):
    data = _data()
    mon = TrainingMonitor(total_epochs=2, live=False, log=True)
    h = fit(_model(), data, epochs=2, batch_size=16, device="cpu", monitor=mon)
    assert mon.history["loss"] == h["loss"]
    out = capsys.readouterr().out
    assert "epoch 1/2 | loss" in out and "epoch 2/2" in out
    h2 = fit(_model(), data, epochs=1, batch_size=16, device="cpu", live=False, log=False)
    assert h2.figure is not None and len(h2.figure.axes) == 3


def test_as_tensor_data_accepts_tensor_dataset_and_tuple():
    ds = _data(6)
    x = ds.tensors[0]
    assert as_tensor_data(ds) is x and as_tensor_data(x) is x and as_tensor_data((x, 1)) is x
    with pytest.raises(ValueError, match="data"):
        as_tensor_data([1, 2, 3])
    with pytest.raises(ValueError, match="at least one"):
        as_tensor_data(torch.zeros(0, 3))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": 0.0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"seed": -1}, "seed"),
        ({"resume": True}, "checkpoint"),
        ({"batch_size": 100, "drop_last": True}, "batch_size"),
    ],
)
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        _fit(_model(), _data(), **kwargs)


def test_model_without_loss_is_rejected():
    with pytest.raises(ValueError, match="loss"):
        _fit(nn.Linear(2, 2), _data())


def test_plot_false_draws_no_figure():
    import matplotlib.pyplot as plt

    before = len(plt.get_fignums())
    h = fit(
        _model(), _data(), epochs=1, batch_size=16, device="cpu", live=False, log=False, plot=False
    )
    assert h.figure is None and len(plt.get_fignums()) == before


def test_make_adam_is_fused_on_cpu_and_matches_torch_adam():
    """The fused optimiser does Adam's arithmetic: same trajectory as the default per-tensor
    loop up to float32 rounding (relative 1e-5 after 20 steps with weight decay)."""
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))
    b = copy.deepcopy(a)
    opt_a = make_adam(a.parameters(), lr=1e-2, weight_decay=1e-3)
    opt_b = torch.optim.Adam(b.parameters(), lr=1e-2, weight_decay=1e-3)
    assert opt_a.defaults["fused"] is True and not opt_b.defaults["fused"]
    x = torch.randn(32, 5)
    for _ in range(20):
        for model, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)


def test_make_adam_accepts_parameter_groups():
    lin = nn.Linear(3, 2)
    opt = make_adam([{"params": [lin.weight]}, {"params": [lin.bias], "lr": 0.1}], lr=1e-3)
    assert opt.defaults["fused"] is True
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 0.1]
    with pytest.raises(ValueError, match="empty parameter list"):
        make_adam([])


def test_fit_builds_its_optimiser_with_make_adam(monkeypatch):
    made = []

    def spy(params, **kw):
        opt = make_adam(params, **kw)
        made.append((opt, kw))
        return opt

    monkeypatch.setattr(train_module, "make_adam", spy)
    _fit(_model(), _data(), epochs=1, lr=2e-3, weight_decay=1e-4)
    assert len(made) == 1 and made[0][1] == {"lr": 2e-3, "weight_decay": 1e-4}
    assert made[0][0].defaults["fused"] is True


def test_fit_trains_only_parameters_that_require_grad():
    model = _model()
    model.encoder.requires_grad_(False)
    enc = [p.detach().clone() for p in model.encoder.parameters()]
    dec = [p.detach().clone() for p in model.decoder.parameters()]
    _fit(model, _data(), epochs=1, loss_kwargs={"discrete": True})
    assert all(torch.equal(a, p) for a, p in zip(enc, model.encoder.parameters(), strict=True))
    assert not all(torch.equal(a, p) for a, p in zip(dec, model.decoder.parameters(),
                                                      strict=True))
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="requires_grad"):
        _fit(model, _data(), epochs=1)
