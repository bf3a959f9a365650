"""concrete.plots.image_grid (figures of chapters 4 and 5)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from concrete.plots import image_grid


def test_rgb_grid_layout_labels_and_clipping():
    imgs = torch.rand(2, 3, 3, 8, 8) * 1.4 - 0.2  # outside [0, 1] on purpose
    fig = image_grid(imgs, row_labels=["a", "b"], col_labels=["x", "y", "z"])
    assert len(fig.axes) == 6
    first = fig.axes[0]
    assert first.get_ylabel() == "a" and first.get_title() == "x"
    shown = first.get_images()[0].get_array()
    assert shown.shape == (8, 8, 3)
    assert float(np.min(shown)) >= 0.0 and float(np.max(shown)) <= 1.0
    plt.close(fig)


def test_flat_grey_images_with_image_shape_and_single_row():
    imgs = torch.rand(4, 784)
    fig = image_grid(imgs, image_shape=(28, 28))
    assert len(fig.axes) == 4
    assert fig.axes[0].get_images()[0].get_array().shape == (28, 28)
    plt.close(fig)


def test_bad_labels_and_layout():
    with pytest.raises(ValueError, match="row_labels"):
        image_grid(torch.rand(2, 2, 3, 4, 4), row_labels=["only one"])
    with pytest.raises(ValueError, match="col_labels"):
        image_grid(torch.rand(2, 2, 3, 4, 4), col_labels=["a"])
    with pytest.raises(ValueError, match="images"):
        image_grid(torch.rand(5))
