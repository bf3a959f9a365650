"""Device selection and seeding used by every chapter."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

DEVICE_ENV = "CONCRETE_DEVICE"
_VALID = ("cpu", "cuda", "mps")


def get_device(prefer: str | None = None) -> torch.device:
    """Return the device the book computes on.

    Order: an explicit ``prefer`` argument, then the environment variable
    ``CONCRETE_DEVICE`` (``cpu``, ``cuda`` or ``mps``), then the first available
    of cuda → mps → cpu.

    Raises ``ValueError`` for an unknown name and ``RuntimeError`` when a forced
    accelerator is not available.
    """
    choice = prefer if prefer is not None else os.environ.get(DEVICE_ENV, "").strip().lower()
    if choice:
        name = choice.split(":")[0]
        if name not in _VALID:
            raise ValueError(
                f"device must be one of {_VALID} (from argument or ${DEVICE_ENV}), got {choice!r}"
            )
        if name == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {choice!r} requested but CUDA is not available")
        if name == "mps" and not torch.backends.mps.is_available():
            raise RuntimeError(f"device {choice!r} requested but MPS is not available")
        return torch.device(choice)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python's ``random``, NumPy and torch (all devices) with ``seed``.

    Returns a fresh ``torch.Generator`` seeded with the same value, for code that
    wants an explicit generator. ``seed`` must be a non-negative int.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen
