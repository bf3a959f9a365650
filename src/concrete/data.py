r"""The shapes data set: a few coloured shapes, each repeated many times.

Every example is one of :math:`K` fixed images -- a filled shape of a given colour and size,
centred on a black square RGB canvas -- so the data are exactly a mixture of :math:`K` point
masses: the generative story of a VAE with one categorical latent variable of :math:`K`
classes. The default is the seed post's set: a red 12 px square, a green 14 px circle and a
blue 20 px triangle on a 32×32 canvas, 1000 copies each.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageColor, ImageDraw
from torch.utils.data import TensorDataset

__all__ = ["SHAPES", "shape_image", "shapes_dataset"]

SHAPES = ("square", "circle", "triangle")


def shape_image(shape: str, colour: str, size: int, image_size: int = 32) -> torch.Tensor:
    r"""One filled shape centred on a black ``image_size``×``image_size`` RGB canvas.

    The shape fits in the box :math:`[c - s/2, c + s/2]^2` (:math:`c` = ``image_size // 2``,
    :math:`s` = ``size``, integer halves); the triangle points up, with its base and apex at
    :math:`c \pm s/3`.

    Args:
        shape: ``"square"``, ``"circle"`` or ``"triangle"``.
        colour: a colour PIL understands (``"red"``, ``"#00ff00"``, ``"rgb(0,0,255)"``).
        size: side (or diameter) in pixels, ``2 <= size <= image_size``.
        image_size: canvas side in pixels (``>= 2``).

    Returns:
        Float tensor ``(3, image_size, image_size)`` with values in ``[0, 1]``.
    """
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {SHAPES}, got shape={shape!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 2:
        raise ValueError(f"image_size must be an int >= 2, got image_size={image_size!r}")
    if isinstance(size, bool) or not isinstance(size, int) or not 2 <= size <= image_size:
        raise ValueError(f"size must be an int in [2, image_size={image_size}], got size={size!r}")
    try:
        rgb = ImageColor.getrgb(colour)
    except (ValueError, AttributeError) as exc:
        raise ValueError(f"colour must be a colour name or code PIL knows, got {colour!r}") from exc
    img = Image.new("RGB", (image_size, image_size), color="black")
    draw = ImageDraw.Draw(img)
    c = image_size // 2
    x0, y0, x1, y1 = c - size // 2, c - size // 2, c + size // 2, c + size // 2
    if shape == "square":
        draw.rectangle([(x0, y0), (x1, y1)], fill=rgb)
    elif shape == "circle":
        draw.ellipse([(x0, y0), (x1, y1)], fill=rgb)
    else:
        base, apex = c + size // 3, c - size // 3
        draw.polygon([(x0, base), (x1, base), (c, apex)], fill=rgb)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def shapes_dataset(
    shapes: Sequence[str] = SHAPES,
    colours: Sequence[str] = ("red", "green", "blue"),
    sizes: Sequence[int] = (12, 14, 20),
    copies: int | Sequence[int] = 1000,
    image_size: int = 32,
) -> TensorDataset:
    r"""The shapes data set as ``TensorDataset(images, labels)``.

    Image :math:`k` is ``shape_image(shapes[k], colours[k], sizes[k], image_size)``, repeated
    ``copies`` (or ``copies[k]``) times; the images are stored class by class.

    Args:
        shapes, colours, sizes: one entry per class (same length :math:`K \ge 1`).
        copies: copies per class, an int or one int per class (each ``>= 1``).
        image_size: canvas side in pixels.

    Returns:
        ``TensorDataset`` of images ``(N, 3, image_size, image_size)`` (float32 in [0, 1]) and
        labels ``(N,)`` (int64 class index ``k``), :math:`N = \sum_k` ``copies[k]``.
    """
    shapes, colours, sizes = list(shapes), list(colours), list(sizes)
    if not shapes:
        raise ValueError(f"shapes must name at least one shape, got shapes={shapes!r}")
    if len(colours) != len(shapes) or len(sizes) != len(shapes):
        raise ValueError(
            "shapes, colours and sizes must have the same length, got "
            f"shapes={shapes!r}, colours={colours!r}, sizes={sizes!r}"
        )
    if isinstance(copies, int) and not isinstance(copies, bool):
        copies = [copies] * len(shapes)
    copies = list(copies)
    if len(copies) != len(shapes) or any(
        isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in copies
    ):
        raise ValueError(
            f"copies must be a positive int or one positive int per shape, got copies={copies!r}"
        )
    images = [
        shape_image(s, col, size, image_size)
        for s, col, size in zip(shapes, colours, sizes, strict=True)
    ]
    x = torch.cat(
        [img.unsqueeze(0).expand(n, -1, -1, -1) for img, n in zip(images, copies, strict=True)]
    )
    y = torch.cat([torch.full((n,), k, dtype=torch.long) for k, n in enumerate(copies)])
    return TensorDataset(x.contiguous(), y)
