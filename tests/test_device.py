import random

import numpy as np
import pytest
import torch

from concrete import get_device, seed_everything


def test_seed_everything_repeats_all_generators():
    seed_everything(123)
    a = (random.random(), np.random.rand(), torch.rand(3))
    seed_everything(123)
    b = (random.random(), np.random.rand(), torch.rand(3))
    assert a[0] == b[0] and a[1] == b[1]
    torch.testing.assert_close(a[2], b[2])


def test_seed_everything_rejects_bad_seed():
    with pytest.raises(ValueError, match="seed"):
        seed_everything(-1)


def test_get_device_env_forces_cpu(monkeypatch):
    monkeypatch.setenv("CONCRETE_DEVICE", "cpu")
    assert get_device().type == "cpu"


def test_get_device_rejects_unknown(monkeypatch):
    monkeypatch.setenv("CONCRETE_DEVICE", "tpu")
    with pytest.raises(ValueError, match="CONCRETE_DEVICE"):
        get_device()


def test_get_device_default_is_available():
    dev = get_device(None) if torch.cuda.is_available() else get_device("cpu")
    assert torch.zeros(1, device=dev).device.type == dev.type
