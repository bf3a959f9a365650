"""The plain control of chapter 7 (``benchmarks/plain_control.py``) scores its hand-written model
with the library's evaluation: the weights must carry over exactly."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_binary_vae import PlainModel, bern_log_prob  # noqa: E402
from plain_control import to_library  # noqa: E402


@pytest.mark.parametrize("arch", ["linear", "nonlinear"])
def test_to_library_gives_the_plain_models_densities(arch):
    gen = torch.Generator().manual_seed(0)
    means = torch.rand(784, generator=gen) * 0.8 + 0.1
    plain = PlainModel(arch == "nonlinear", means)
    with torch.no_grad():   # move every parameter and the running input mean off their init
        for p in plain.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
        plain.xbar.add_(0.05)
    model = to_library(plain, arch)
    assert not model.training
    x = (torch.rand(7, 784, generator=gen) < means).float()
    with torch.no_grad():
        logits = plain.enc(x - plain.xbar)
        torch.testing.assert_close(model.encode(x), logits, rtol=0, atol=0)
        b = torch.bernoulli(torch.sigmoid(logits).expand(3, 7, 200), generator=gen)
        plain_joint = plain.log_px(b, x) + bern_log_prob(plain.prior, b)
        torch.testing.assert_close(model.log_joint(x, b), plain_joint, rtol=1e-6, atol=1e-3)
    torch.testing.assert_close(model.input_mean, plain.xbar)   # eval mode: not updated


@pytest.mark.parametrize("value", ["0", "-1e-3", "nan"])
def test_a_baseline_rate_that_is_not_positive_is_rejected(monkeypatch, value):
    import plain_control
    monkeypatch.setattr(sys, "argv", ["plain_control.py", f"--baseline-lr={value}"])
    with pytest.raises(ValueError, match="--baseline-lr"):
        plain_control.main()
