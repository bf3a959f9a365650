"""Trained-model cache: train once, re-run a chapter without retraining.

``cached_fit(model, data, name=..., config=..., **fit_kwargs)`` looks for
``<cache dir>/<name>-<hash of config>.pt``. If it exists (and retraining was not asked for),
the model's weights and the training history are loaded from it; otherwise
:func:`concrete.train.fit` trains the model and the result is written atomically (temporary file
in the same directory, then ``os.replace``), so an interrupted run never leaves a half-written
file that a later run would load.

The cache directory is an explicit argument, else ``$CONCRETE_CACHE``, else
``~/.cache/concrete/models``. Retraining is forced with ``retrain=True`` or
``CONCRETE_RETRAIN=1``. The ``config`` dictionary (JSON-serialisable: the settings that define
the run) goes into the file name's hash, so changing a setting trains a new model instead of
silently loading a stale one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from concrete.train import History, fit

__all__ = ["CACHE_ENV", "RETRAIN_ENV", "cache_dir", "cache_path", "cached_fit", "cached_fit_steps"]

CACHE_ENV = "CONCRETE_CACHE"
RETRAIN_ENV = "CONCRETE_RETRAIN"
_TRUTHY = frozenset({"1", "true", "yes", "on"})


def cache_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """The model cache: ``root``, else ``$CONCRETE_CACHE``, else ``~/.cache/concrete/models``."""
    if root is not None:
        if str(root).strip() == "":
            raise ValueError(f"root must be a non-empty path, got {root!r}")
        return Path(root).expanduser()
    env = os.environ.get(CACHE_ENV, "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "concrete" / "models"


def cache_path(name: str, config: dict[str, Any], root: str | os.PathLike[str] | None = None
               ) -> Path:
    """``<cache dir>/<name>-<first 12 hex digits of sha256(json(config))>.pt``."""
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "-_." for c in name):
        raise ValueError(f"name must be a non-empty string of [A-Za-z0-9._-], got {name!r}")
    try:
        blob = json.dumps(config, sort_keys=True, default=str)
    except TypeError as err:
        raise ValueError(f"config must be JSON-serialisable, got {config!r}") from err
    digest = hashlib.sha256(blob.encode()).hexdigest()[:12]
    return cache_dir(root) / f"{name}-{digest}.pt"


def _retrain_from_env() -> bool:
    return os.environ.get(RETRAIN_ENV, "").strip().lower() in _TRUTHY


def cached_fit(
    model: nn.Module,
    data: object,
    *,
    name: str,
    config: dict[str, Any],
    retrain: bool | None = None,
    root: str | os.PathLike[str] | None = None,
    **fit_kwargs: Any,
) -> tuple[History, bool]:
    """Load ``model``'s trained weights from the cache, or train it with ``fit`` and cache them.

    Returns ``(history, trained)``: the :class:`~concrete.train.History` (loaded: metrics,
    epochs, steps and training seconds of the original run; ``figure`` is ``None``) and whether
    training happened in this call. ``retrain``: ``None`` reads ``$CONCRETE_RETRAIN``.
    ``fit_kwargs`` go to :func:`concrete.train.fit`; ``config`` must describe them (and the
    model) for the cache key.
    """
    path = cache_path(name, config, root)
    retrain = _retrain_from_env() if retrain is None else bool(retrain)
    if path.is_file() and not retrain:
        device = fit_kwargs.get("device")
        state = torch.load(path, map_location=device or "cpu", weights_only=False)
        model.load_state_dict(state["model"])
        if device is not None:
            model.to(device)
        h = state["history"]
        history = History(metrics={k: list(v) for k, v in h["metrics"].items()},
                          epochs=list(h["epochs"]), steps=int(h["steps"]),
                          seconds=float(h["seconds"]))
        return history, False
    history = fit(model, data, **fit_kwargs)
    _save_atomic(path, {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                        "history": {**history.state(), "seconds": history.seconds},
                        "config": config})
    return history, True


def _save_atomic(path: Path, state: dict[str, Any]) -> None:
    """``torch.save`` to a temporary file beside ``path``, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def cached_fit_steps(
    objective: nn.Module,
    train: torch.Tensor,
    *,
    name: str,
    config: dict[str, Any],
    retrain: bool | None = None,
    root: str | os.PathLike[str] | None = None,
    **fit_kwargs: Any,
) -> tuple[Any, bool]:
    """:func:`concrete.binary_vae.fit_steps` through the cache, as :func:`cached_fit` does.

    ``objective`` (e.g. a :class:`~concrete.binary_vae.ConcreteObjective`; its whole state is
    cached, NVIL's baseline network and running moments included) is trained on ``train``
    with ``fit_kwargs`` (``steps``, ``lr``, ``seed``, ``eval_every``, ``evaluate``, ...), or
    loaded. Returns ``(run, trained)``: the :class:`~concrete.binary_vae.TrainingRun` (steps,
    training seconds, evaluations and losses of the original run) and whether training
    happened in this call. ``config`` must describe the run for the cache key.
    """
    from concrete.binary_vae import TrainingRun, fit_steps

    path = cache_path(name, config, root)
    retrain = _retrain_from_env() if retrain is None else bool(retrain)
    if path.is_file() and not retrain:
        state = torch.load(path, map_location="cpu", weights_only=False)
        objective.load_state_dict(state["objective"])
        return TrainingRun(**state["run"]), False
    run = fit_steps(objective, train, **fit_kwargs)
    _save_atomic(path, {"objective": {k: v.detach().cpu()
                                      for k, v in objective.state_dict().items()},
                        "run": run.as_dict(), "config": config})
    return run, True
