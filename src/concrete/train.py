r"""``fit()``: the book's training loop for models with a ``loss(x, **kwargs) -> dict`` method.

The loop is deliberately plain -- Adam on mini-batches of an in-memory tensor -- with the parts
every chapter needs:

* **device-agnostic and seeded**: data and model move to ``device`` (default
  :func:`concrete.get_device`); ``seed`` seeds torch's global RNG (the models draw their noise
  from it) and a separate generator for the shuffling, so the same seed gives the same run;
* **low overhead**: batches are slices of a once-shuffled index into a tensor that lives on the
  device (no ``DataLoader``), and metrics are accumulated on the device and read once per epoch
  (no per-step ``.item()`` synchronisation), and Adam runs as one fused kernel per parameter
  tensor where PyTorch has one (CPU and CUDA: :func:`make_adam`) -- on the CPU torch otherwise
  uses its per-tensor loop of about ten elementwise passes;
* **output** through :class:`concrete.monitor.TrainingMonitor`: live livelossplot + tqdm in
  Jupyter, one compact line per epoch and one static figure when headless;
* **non-finite guard**: a NaN/inf loss stops training with a ``FloatingPointError`` naming the
  epoch, the step and the value;
* **checkpoints**: optional, written atomically (temporary file + ``os.replace``) after each
  epoch; ``resume=True`` continues from one (RNG states included, so an interrupted and
  resumed run equals an uninterrupted one on the CPU).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from concrete.device import get_device
from concrete.monitor import TrainingMonitor

__all__ = ["History", "fit", "as_tensor_data", "make_adam"]

_FUSED_ADAM_DEVICES = ("cpu", "cuda")


def make_adam(
    params: Any, *, lr: float = 1e-3, weight_decay: float = 0.0
) -> torch.optim.Adam:
    r"""``torch.optim.Adam`` with the fused implementation where it applies.

    The update is Adam's (Kingma & Ba 2015) with the L2 penalty of ``torch.optim.Adam``:
    :math:`g \leftarrow \nabla_\theta L + w\,\theta`,
    :math:`m \leftarrow \beta_1 m + (1-\beta_1) g`,
    :math:`v \leftarrow \beta_2 v + (1-\beta_2) g^2`,
    :math:`\theta \leftarrow \theta - \eta\,\hat m / (\sqrt{\hat v} + \epsilon)` with the bias
    corrections :math:`\hat m = m / (1-\beta_1^t)`, :math:`\hat v = v / (1-\beta_2^t)` and torch's
    defaults :math:`\beta = (0.9, 0.999)`, :math:`\epsilon = 10^{-8}`. ``fused=True`` (one kernel
    per tensor) is used when every parameter is a floating-point tensor on the CPU or a CUDA
    device -- the same arithmetic as the default per-tensor loop up to float rounding, about
    3x faster per step on the CPU for the chapter-5 model (``benchmarks/bench_mnist_epoch.py``);
    other devices (e.g. MPS) get torch's default implementation.

    Args:
        params: an iterable of parameters (e.g. ``model.parameters()``) or parameter groups.
        lr: learning rate :math:`\eta > 0`.
        weight_decay: L2 penalty :math:`w \ge 0`.
    """
    params = list(params)
    tensors = [p for g in params for p in (g["params"] if isinstance(g, dict) else [g])]
    fused = bool(tensors) and all(
        p.device.type in _FUSED_ADAM_DEVICES and p.is_floating_point() for p in tensors
    )
    if fused:
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


@dataclass
class History:
    """Per-epoch metrics of a :func:`fit` run.

    Attributes:
        metrics: name → list of per-epoch values (training metrics are means over the epoch's
            examples; ``val_*`` are means over ``eval_data``).
        epochs: the epoch numbers (1-based) the values belong to.
        steps: optimiser steps taken in total (including those before a resume).
        seconds: wall-clock seconds spent in training epochs in this call.
        figure: the static figure drawn in headless mode (``None`` when live or not drawn).
    """

    metrics: dict[str, list[float]] = field(default_factory=dict)
    epochs: list[int] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    figure: Any = None

    def __getitem__(self, name: str) -> list[float]:
        """``history["loss"]``: the per-epoch values of one metric."""
        return self.metrics[name]

    def last(self, name: str) -> float:
        """The value of ``name`` after the last epoch."""
        return self.metrics[name][-1]

    def state(self) -> dict[str, Any]:
        """Picklable content (without the figure), for checkpoints."""
        return {"metrics": self.metrics, "epochs": self.epochs, "steps": self.steps}


def as_tensor_data(data: object) -> Tensor:
    """The example tensor of ``data``: a Tensor, a ``TensorDataset`` (first tensor), or a
    tuple/list whose first element is a Tensor. Shape ``(N, *input_shape)``."""
    if isinstance(data, Tensor):
        x = data
    elif isinstance(data, TensorDataset):
        x = data.tensors[0]
    elif isinstance(data, (tuple, list)) and data and isinstance(data[0], Tensor):
        x = data[0]
    else:
        raise ValueError(
            "data must be a Tensor, a TensorDataset or an (images, ...) tuple, "
            f"got data of type {type(data).__name__}"
        )
    if x.dim() < 1 or x.shape[0] == 0:
        raise ValueError(f"data must hold at least one example, got shape {tuple(x.shape)}")
    if not x.dtype.is_floating_point:
        x = x.float()
    return x


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {name}={value!r}")
    return value


def _check_float(name: str, value: object, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {name}={value!r}")
    v = float(value)
    ok = v > 0 if positive else v >= 0
    if not (ok and v < float("inf")):
        kind = "positive" if positive else "non-negative"
        raise ValueError(f"{name} must be a {kind} finite number, got {name}={value!r}")
    return v


def _save_atomic(obj: object, path: Path) -> None:
    """``torch.save`` to a temporary file in the same directory, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


@torch.no_grad()
def _evaluate(
    model: nn.Module, x: Tensor, batch_size: int, kwargs: Mapping[str, Any]
) -> dict[str, float]:
    was_training = model.training
    model.eval()
    total: Tensor | None = None
    names: list[str] = []
    for start in range(0, x.shape[0], batch_size):
        xb = x[start : start + batch_size]
        out = model.loss(xb, **kwargs)
        names = list(out)
        vals = torch.stack([v.detach().float() for v in out.values()]) * xb.shape[0]
        total = vals if total is None else total + vals
    model.train(was_training)
    assert total is not None
    return {f"val_{k}": v / x.shape[0] for k, v in zip(names, total.tolist(), strict=True)}


def fit(
    model: nn.Module,
    data: object,
    *,
    epochs: int = 15,
    batch_size: int = 128,
    lr: float = 1e-3,
    weight_decay: float = 1e-6,
    seed: int = 0,
    device: torch.device | str | None = None,
    temperature_schedule: Callable[[int], float] | None = None,
    lr_schedule: Callable[[int], float] | None = None,
    transform: Callable[[Tensor], Tensor] | None = None,
    loss_kwargs: Mapping[str, Any] | None = None,
    eval_data: object | None = None,
    eval_kwargs: Mapping[str, Any] | None = None,
    eval_batch_size: int = 1000,
    monitor: TrainingMonitor | None = None,
    live: bool | None = None,
    log: bool = True,
    plot: bool = True,
    title: str | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = False,
    drop_last: bool = False,
    callback: Callable[[int, nn.Module, dict[str, float]], None] | None = None,
) -> History:
    r"""Train ``model`` by minimising ``model.loss(x)["loss"]`` with Adam.

    Each step: ``x = data[batch]`` (a random permutation per epoch, batches of ``batch_size``),
    ``x = transform(x)`` if given (e.g. dynamic binarization), ``out = model.loss(x,
    **loss_kwargs, temperature=temperature_schedule(step))`` (the temperature only when a
    schedule is given; ``step`` counts from 0 over the whole run), ``out["loss"].backward()``,
    Adam step (:func:`make_adam`: ``lr``, ``weight_decay`` as L2 penalty, as
    ``torch.optim.Adam``) on the parameters with ``requires_grad=True`` -- freeze a part of the
    model with ``module.requires_grad_(False)`` to train the rest (chapter 5 fine-tunes the
    decoder alone this way). Every value of
    ``out`` (0-dim tensors, e.g. ``loss``, ``nll``, ``kl``) is averaged over the epoch's
    examples and reported to the monitor; with ``eval_data`` the same keys prefixed ``val_``
    are computed after each epoch under ``torch.no_grad()`` with ``eval_kwargs`` (e.g.
    ``{"discrete": True}``).

    Args:
        model: an ``nn.Module`` with ``loss(x, **kwargs) -> dict[str, Tensor]`` containing
            ``"loss"``. It is moved to ``device`` and left in train mode.
        data: Tensor ``(N, *input_shape)``, ``TensorDataset`` or ``(images, labels)`` tuple;
            only the images are used. Moved to ``device`` once.
        epochs: total number of epochs (with ``resume``, including those already done).
        batch_size, lr, weight_decay: Adam mini-batch settings (defaults as in the seed post).
        seed: seeds ``torch.manual_seed`` (model noise) and the shuffling generator.
        device: where to train (default :func:`concrete.get_device`).
        temperature_schedule: ``step -> temperature`` passed as ``temperature=`` to the loss.
        lr_schedule: ``step -> factor``; the learning rate of step ``step`` is
            ``lr * lr_schedule(step)`` (e.g. a decay); ``None`` keeps ``lr`` constant.
        transform: per-batch function applied to ``x`` on the device before the loss.
        loss_kwargs: extra keyword arguments of ``model.loss`` during training.
        eval_data, eval_kwargs, eval_batch_size: optional per-epoch evaluation.
        monitor: a :class:`TrainingMonitor` to report to (default: a new one with ``live``,
            ``log`` and ``title``; it is closed at the end, drawing the static figure).
        plot: headless only: draw the static figure at the end (``False``: no figure, e.g.
            for many runs in a loop). Ignored when ``monitor`` is given.
        checkpoint: file to write after every epoch (atomically); ``None`` for none.
        resume: if ``checkpoint`` exists, load model, optimiser, RNG states and history from
            it and continue with the next epoch (a finished run trains no further).
        drop_last: drop the last incomplete batch of each epoch.
        callback: ``callback(epoch, model, metrics)`` after each epoch (e.g. diagnostics).

    Returns:
        :class:`History` with the per-epoch metrics.

    Raises:
        FloatingPointError: the loss became NaN or infinite (message: epoch, step, value).
        ValueError: bad arguments (named with their value).
    """
    epochs = _check_int("epochs", epochs, 1)
    batch_size = _check_int("batch_size", batch_size, 1)
    eval_batch_size = _check_int("eval_batch_size", eval_batch_size, 1)
    seed = _check_int("seed", seed, 0)
    lr = _check_float("lr", lr, positive=True)
    weight_decay = _check_float("weight_decay", weight_decay, positive=False)
    if not hasattr(model, "loss") or not callable(model.loss):
        raise ValueError(f"model must have a loss(x) method, got {type(model).__name__}")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs a checkpoint path, got checkpoint=None")
    device = torch.device(device) if device is not None else get_device()
    x_all = as_tensor_data(data).to(device)
    x_eval = as_tensor_data(eval_data).to(device) if eval_data is not None else None
    n = x_all.shape[0]
    n_batches = n // batch_size if drop_last else -(-n // batch_size)
    if n_batches == 0:
        raise ValueError(
            f"batch_size={batch_size} with drop_last=True leaves no batch of the {n} examples"
        )
    kwargs = dict(loss_kwargs or {})
    ekwargs = dict(eval_kwargs or {})

    model.to(device)
    model.train()
    torch.manual_seed(seed)
    shuffle = torch.Generator()
    shuffle.manual_seed(seed)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("model has no parameter with requires_grad=True: nothing to train")
    optimizer = make_adam(trainable, lr=lr, weight_decay=weight_decay)
    history = History()
    start_epoch = 1
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if resume and ckpt is not None and ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        _set_rng_state(state["rng"], device)
        shuffle.set_state(state["shuffle_rng"])
        history.metrics = {k: list(v) for k, v in state["history"]["metrics"].items()}
        history.epochs = list(state["history"]["epochs"])
        history.steps = int(state["history"]["steps"])
        start_epoch = int(state["epoch"]) + 1

    own_monitor = monitor is None
    if monitor is None:
        monitor = TrainingMonitor(total_epochs=epochs, live=live, log=log, title=title)
    for e, epoch in enumerate(history.epochs):  # replay a resumed history into the monitor
        monitor.update(epoch, {k: v[e] for k, v in history.metrics.items()})

    step = history.steps
    t0 = time.perf_counter()
    for epoch in range(start_epoch, epochs + 1):
        perm = torch.randperm(n, generator=shuffle).to(device)
        sizes = [min(batch_size, n - b * batch_size) for b in range(n_batches)]
        weights = torch.tensor(sizes, dtype=torch.float32, device=device)
        buf: Tensor | None = None
        names: list[str] = []
        batches = monitor.progress(range(n_batches), total=n_batches, desc=f"epoch {epoch}")
        for b in batches:
            xb = x_all[perm[b * batch_size : b * batch_size + batch_size]]
            if transform is not None:
                xb = transform(xb)
            if temperature_schedule is not None:
                out = model.loss(xb, temperature=temperature_schedule(step), **kwargs)
            else:
                out = model.loss(xb, **kwargs)
            optimizer.zero_grad(set_to_none=True)
            out["loss"].backward()
            if lr_schedule is not None:
                factor = float(lr_schedule(step))
                if not (0 <= factor < float("inf")):
                    raise ValueError(f"lr_schedule({step}) must be a finite number >= 0, "
                                     f"got {factor!r}")
                for group in optimizer.param_groups:
                    group["lr"] = lr * factor
            optimizer.step()
            vals = torch.stack([v.detach().float() for v in out.values()])
            if buf is None:
                names = list(out)
                buf = torch.empty(n_batches, len(names), device=device)
            buf[b] = vals
            step += 1
        assert buf is not None
        losses = buf[:, names.index("loss")]
        bad = ~torch.isfinite(losses)
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            raise FloatingPointError(
                f"non-finite loss at epoch {epoch}, step {i + 1}/{n_batches} "
                f"(global step {step - n_batches + i + 1}): loss={float(losses[i])!r}; "
                "lower the learning rate or check the data and the model's scale parameters"
            )
        means = (weights @ buf) / float(sum(sizes))
        metrics = dict(zip(names, means.tolist(), strict=True))
        if x_eval is not None:
            metrics.update(_evaluate(model, x_eval, eval_batch_size, ekwargs))
        for k, v in metrics.items():
            history.metrics.setdefault(k, []).append(v)
        history.epochs.append(epoch)
        history.steps = step
        monitor.update(epoch, metrics)
        if callback is not None:
            callback(epoch, model, metrics)
        if ckpt is not None:
            _save_atomic(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "epoch": epoch,
                    "rng": _rng_state(device),
                    "shuffle_rng": shuffle.get_state(),
                    "history": history.state(),
                },
                ckpt,
            )
    history.seconds = time.perf_counter() - t0
    if own_monitor and (plot or monitor.live):
        history.figure = monitor.close()
    return history
