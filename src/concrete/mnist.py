"""MNIST for the categorical VAE: loading, dynamic binarization, a fixed binarized test set.

Two binarizations are used, as in the papers (Maddison et al. 2017; Jang et al. 2017):

* **training** uses *dynamic* binarization: every time a batch is drawn, each grey level
  ``g ∈ [0, 1]`` becomes a fresh Bernoulli draw ``x ~ Bernoulli(g)``
  (:class:`DynamicBinarize`, a per-batch transform), so the model never sees the same
  binary image twice and overfits less;
* **evaluation** uses a *fixed* binarized test set (:func:`load_binarized_test`): the
  Larochelle & Murray (2011) binarization of Salakhutdinov & Murray (2008), which the papers'
  tables use, when ``<data dir>/binarized_mnist/binarized_mnist_larochelle.npz`` is present;
  otherwise one seeded Bernoulli draw of torchvision's test images. The returned
  :class:`BinarizedTestSet` says which one was used: numbers on the two are close but not
  identical.

The data directory is, in this order: an explicit ``root`` argument, ``$CONCRETE_DATA``,
``~/.cache/concrete/data`` (:func:`data_dir`). torchvision's files live in
``<data dir>/MNIST/raw/``; with them present nothing is downloaded.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "DATA_ENV",
    "LAROCHELLE_FILE",
    "BinarizedTestSet",
    "exp_anneal",
    "exp_lr_decay",
    "mnist_vae",
    "DynamicBinarize",
    "data_dir",
    "dynamic_binarize",
    "load_binarized_test",
    "load_mnist",
    "match_labels",
    "per_class_indices",
]

DATA_ENV = "CONCRETE_DATA"
#: Path of the fixed binarization, relative to the data directory.
LAROCHELLE_FILE = Path("binarized_mnist") / "binarized_mnist_larochelle.npz"
_MNIST_RAW = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def data_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """The data directory: ``root``, else ``$CONCRETE_DATA``, else ``~/.cache/concrete/data``.

    The directory is not created here (torchvision creates it when it downloads).
    """
    if root is not None:
        if str(root).strip() == "":
            raise ValueError(f"root must be a non-empty path, got {root!r}")
        return Path(root).expanduser()
    env = os.environ.get(DATA_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "concrete" / "data"


def _missing_data_message(root: Path, err: BaseException) -> str:
    raw = root / "MNIST" / "raw"
    return (
        f"MNIST is not available under {root} and could not be downloaded ({err}). "
        f"Put the four uncompressed files {', '.join(_MNIST_RAW)} into {raw} "
        f"(or set ${DATA_ENV} to a directory whose MNIST/raw/ holds them); optionally add "
        f"the fixed binarization as {root / LAROCHELLE_FILE}."
    )


def load_mnist(
    train: bool = True,
    root: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST grey levels and labels as flat tensors, via ``torchvision.datasets.MNIST``.

    Returns ``(images, labels)``: ``images`` float32 of shape ``(n, 784)`` with values
    ``g = pixel / 255 ∈ [0, 1]`` (row-major 28×28), ``labels`` int64 of shape ``(n,)``;
    ``n = 60000`` for ``train=True``, ``10000`` otherwise.

    With the files present under ``<data dir>/MNIST/raw`` nothing is downloaded. When they are
    missing and cannot be downloaded (offline) a ``RuntimeError`` says where to put them.
    """
    from torchvision.datasets import MNIST

    if not isinstance(train, bool):
        raise ValueError(f"train must be a bool, got {train!r}")
    root_path = data_dir(root)
    try:
        ds = MNIST(root=str(root_path), train=train, download=download)
    except Exception as err:  # torchvision raises RuntimeError / URLError / OSError offline
        raise RuntimeError(_missing_data_message(root_path, err)) from err
    images = ds.data.reshape(len(ds.data), -1).to(torch.float32).div_(255.0)
    return images, ds.targets.to(torch.int64)


def dynamic_binarize(
    images: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One Bernoulli draw per pixel: ``x_ij ~ Bernoulli(g_ij)``.

    ``images``: grey levels in ``[0, 1]``, any shape; returns a float tensor of the same shape,
    dtype and device with values in ``{0, 1}``. ``generator`` (on the images' device) makes the
    draw reproducible; otherwise torch's global RNG is used.
    """
    if not torch.is_floating_point(images):
        raise ValueError(
            f"images must be a floating-point tensor of grey levels, got dtype {images.dtype}"
        )
    if images.numel() and (images.min() < 0 or images.max() > 1):
        raise ValueError(
            f"images must hold grey levels in [0, 1], got range "
            f"[{images.min().item():.4g}, {images.max().item():.4g}]"
        )
    return torch.bernoulli(images, generator=generator)


class DynamicBinarize:
    """Per-batch transform for training: ``x ↦ Bernoulli(x)``, fresh noise at every call.

    Applies to a tensor batch, or to the first element of a ``(images, labels, ...)`` tuple or
    list batch (the rest passes through unchanged), so it can be given as the per-batch
    transform of a training loop. ``images``: ``(B, 784)`` grey levels in ``[0, 1]``.
    """

    def __init__(self, generator: torch.Generator | None = None) -> None:
        self.generator = generator

    def __call__(self, batch):  # noqa: ANN001, ANN204 - tensor or tuple/list batch
        if isinstance(batch, torch.Tensor):
            return dynamic_binarize(batch, self.generator)
        if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
            out = [dynamic_binarize(batch[0], self.generator), *batch[1:]]
            return type(batch)(out) if isinstance(batch, tuple) else out
        raise ValueError(
            f"batch must be a tensor or a (images, ...) tuple/list, got {type(batch).__name__}"
        )

    def __repr__(self) -> str:
        return "DynamicBinarize()"


@dataclass(frozen=True)
class BinarizedTestSet:
    """A fixed binarized MNIST test set.

    ``images``: float32 ``(10000, 784)`` with values in ``{0, 1}``; ``labels``: int64 ``(10000,)``
    or ``None`` (Larochelle's file has no labels); ``source``: ``"larochelle"`` or
    ``"seeded"``; ``description``: one line for a reader (what was used, and from where).
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    source: str
    description: str

    def __len__(self) -> int:
        return len(self.images)


def load_binarized_test(
    root: str | os.PathLike[str] | None = None,
    *,
    seed: int = 0,
    prefer_larochelle: bool = True,
    download: bool = True,
) -> BinarizedTestSet:
    """The fixed binarized test set used for every reported number.

    If ``prefer_larochelle`` and ``<data dir>/binarized_mnist/binarized_mnist_larochelle.npz``
    exists, its ``test`` array (10000 × 784, uint8 in {0, 1}) is returned
    (``source="larochelle"``). Otherwise torchvision's test images are binarized once with
    ``x ~ Bernoulli(g)`` under a generator seeded with ``seed`` (``source="seeded"``): the same
    seed gives the same test set on every machine.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    root_path = data_dir(root)
    path = root_path / LAROCHELLE_FILE
    if prefer_larochelle and path.is_file():
        with np.load(path) as npz:
            if "test" not in npz.files:
                raise ValueError(f"{path} has no 'test' array (arrays: {npz.files})")
            test = npz["test"]
        if test.ndim != 2 or test.shape[1] != 784 or test.max(initial=0) > 1:
            raise ValueError(f"{path}: 'test' must be (n, 784) in {{0, 1}}, got {test.shape}")
        images = torch.from_numpy(test.astype(np.float32))
        return BinarizedTestSet(
            images,
            None,
            "larochelle",
            f"Larochelle & Murray's fixed binarization ({len(images)} images, {path})",
        )
    grey, labels = load_mnist(train=False, root=root_path, download=download)
    gen = torch.Generator().manual_seed(seed)
    images = torch.bernoulli(grey, generator=gen)
    return BinarizedTestSet(
        images,
        labels,
        "seeded",
        f"torchvision's MNIST test images binarized once with seed {seed} "
        f"({len(images)} images; {path} not found)",
    )


def match_labels(
    images: torch.Tensor, grey: torch.Tensor, labels: torch.Tensor, *, chunk: int = 1000
) -> torch.Tensor:
    r"""Label each binary image by the grey image it was most likely binarized from.

    For binary ``images`` ``(n, D)`` and grey levels ``grey`` ``(m, D)`` with ``labels``
    ``(m,)``, image :math:`i` gets ``labels[j*]`` with
    :math:`j^* = \arg\max_j \sum_d x_{id}\log g_{jd} + (1 - x_{id})\log(1 - g_{jd})`, the
    Bernoulli log-likelihood of :math:`x_i` under :math:`g_j` (grey levels clipped to
    :math:`[10^{-3}, 1 - 10^{-3}]`). Used to recover the digit of each image of Larochelle's
    fixed binarization, which ships without labels. ``chunk`` images are matched at a time.
    Returns int64 ``(n,)``.
    """
    if images.dim() != 2 or grey.dim() != 2 or images.shape[1] != grey.shape[1]:
        raise ValueError(
            f"images and grey must be (n, D) and (m, D), got images={tuple(images.shape)}, "
            f"grey={tuple(grey.shape)}"
        )
    if labels.shape != (len(grey),):
        raise ValueError(f"labels must have shape ({len(grey)},), got {tuple(labels.shape)}")
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive int, got chunk={chunk!r}")
    g = grey.to(torch.float32).clamp(1e-3, 1 - 1e-3)
    log_g, log_1g = g.log().T, torch.log1p(-g).T
    best = [
        (x @ log_g + (1 - x) @ log_1g).argmax(1)
        for x in images.to(torch.float32).split(chunk)
    ]
    return labels[torch.cat(best)]


def per_class_indices(labels: torch.Tensor, per_class: int, *, seed: int = 0) -> torch.Tensor:
    """A fixed random selection of ``per_class`` indices of each class, ordered by class.

    ``labels``: int64 ``(n,)`` with classes ``0 .. C-1``; within each class the indices are a
    random draw without replacement under ``torch.Generator().manual_seed(seed)``. Returns
    int64 ``(C * per_class,)``: class 0's indices first. (Chapter 5 shows one test image of
    each digit and evaluates on a stratified subset: the fixed test set is sorted by digit.)
    """
    if labels.dim() != 1 or labels.dtype != torch.int64 or len(labels) == 0:
        raise ValueError(f"labels must be a non-empty int64 vector, got {labels.dtype} "
                         f"{tuple(labels.shape)}")
    if not isinstance(per_class, int) or isinstance(per_class, bool) or per_class < 1:
        raise ValueError(f"per_class must be a positive int, got per_class={per_class!r}")
    gen = torch.Generator().manual_seed(seed)
    out = []
    for c in range(int(labels.max()) + 1):
        idx = (labels == c).nonzero().squeeze(1)
        if len(idx) < per_class:
            raise ValueError(f"class {c} has {len(idx)} images, fewer than per_class={per_class}")
        out.append(idx[torch.randperm(len(idx), generator=gen)[:per_class]])
    return torch.cat(out)


# ------------------------------------------------------------------------ model and schedules
def mnist_vae(objective: str = "gumbel_softmax", **kwargs: object):  # noqa: ANN201
    """The chapter's categorical VAE (Jang et al. 2017): 20 latents × 10 classes, Bernoulli.

    ``concrete.models.DiscreteVAE(784, n_latents=20, n_classes=10, hidden=(512, 256),
    likelihood="bernoulli", objective=objective, **kwargs)``: encoder MLP 784-512-256-200,
    decoder 200-256-512-784 (ReLU), decoder output = Bernoulli logits of the 784 pixels.
    Keyword arguments override any of these (e.g. ``posterior_temperature``).
    """
    from concrete.models import DiscreteVAE

    config: dict[str, object] = {
        "n_latents": 20, "n_classes": 10, "hidden": (512, 256), "likelihood": "bernoulli",
        "objective": objective,
    }
    config.update(kwargs)
    return DiscreteVAE(784, **config)


def exp_anneal(rate: float, minimum: float = 0.5, start: float = 1.0):  # noqa: ANN201
    r"""Temperature schedule :math:`\tau_t = \max(\tau_{min}, \tau_0 e^{-r t})` (step ``t``).

    Jang et al. (2017) use :math:`\tau_0 = 1`, :math:`r = 3\cdot10^{-5}`,
    :math:`\tau_{min} = 0.5`. Returns a function ``step -> float`` for ``fit``.
    """
    for name, v in (("rate", rate), ("minimum", minimum), ("start", start)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{name} must be a finite number, got {name}={v!r}")
    if rate < 0 or minimum <= 0 or start <= 0:
        raise ValueError(
            f"need rate >= 0, minimum > 0, start > 0; got rate={rate!r}, minimum={minimum!r}, "
            f"start={start!r}"
        )

    def schedule(step: int) -> float:
        return max(minimum, start * math.exp(-rate * step))

    return schedule


def exp_lr_decay(  # noqa: ANN201
    total_steps: int, final_factor: float = 0.1, hold: float = 0.0, warmup: int = 0
):
    r"""Learning-rate factor for ``fit``'s ``lr_schedule``: warm-up, hold, exponential decay.

    :math:`f_t = w_t \, d_t` at step :math:`t` (from 0) of :math:`T` = ``total_steps``, with the
    linear warm-up :math:`w_t = \min(1, (t + 1) / W)` over the first :math:`W` = ``warmup``
    steps (:math:`w_t = 1` when ``warmup = 0``) and the decay :math:`d_t = 1` for the first
    :math:`hT` steps (``hold``), then :math:`d_t = f_{end}^{\,(t - hT) / (T - hT)}` down to
    ``final_factor`` :math:`f_{end}` at step :math:`T` (held after). ``hold = 0`` decays from
    the first step. Chapter 5 uses ``warmup = 600`` (one epoch): without it most first-layer ReLU
    units of the encoder ended up dead (320 of 512; ``benchmarks/README.md``).
    """
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"total_steps must be a positive int, got total_steps={total_steps!r}")
    if not (isinstance(final_factor, (int, float)) and 0 < final_factor <= 1):
        raise ValueError(f"final_factor must be in (0, 1], got final_factor={final_factor!r}")
    if not (isinstance(hold, (int, float)) and 0 <= hold < 1):
        raise ValueError(f"hold must be in [0, 1), got hold={hold!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an int >= 0, got warmup={warmup!r}")
    log_f = math.log(final_factor)
    start = hold * total_steps

    def schedule(step: int) -> float:
        t = min(max(step - start, 0.0), total_steps - start)
        warm = min(1.0, (step + 1) / warmup) if warmup else 1.0
        return warm * math.exp(log_f * t / (total_steps - start))

    return schedule
