"""Tests for the ternary helpers in concrete.plots."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from concrete.plots import ternary_heatmap, ternary_scatter  # noqa: E402


def test_heatmap_one_face_per_cell_and_values() -> None:
    fig, ax = plt.subplots()
    pc = ternary_heatmap(lambda x: x[:, 0], ax=ax, resolution=6, colorbar=False)
    vals = np.asarray(pc.get_array())
    assert vals.shape == (36,)
    assert 0 < vals.min() < vals.max() < 1
    plt.close(fig)


def test_heatmap_log_scale_and_bad_values() -> None:
    fig, ax = plt.subplots()
    pc = ternary_heatmap(np.linspace(1e-3, 10, 16), ax=ax, resolution=4, log_scale=True)
    assert isinstance(pc.norm, matplotlib.colors.LogNorm)
    with pytest.raises(ValueError, match="resolution"):
        ternary_heatmap(np.ones(10), ax=ax, resolution=4)
    with pytest.raises(ValueError, match="log_scale"):
        ternary_heatmap(np.zeros(16), ax=ax, resolution=4, log_scale=True)
    plt.close(fig)


def test_scatter_rejects_points_off_simplex() -> None:
    fig, ax = plt.subplots()
    ternary_scatter(torch.softmax(torch.randn(50, 3), -1), ax=ax)
    with pytest.raises(ValueError, match="2-simplex"):
        ternary_scatter(np.ones((5, 3)), ax=ax)
    plt.close(fig)


def test_concrete_density_figure_panels_and_bad_input() -> None:
    from concrete.plots import concrete_density_figure

    fig = concrete_density_figure(temperatures=(0.5, 2.0), resolution=12)
    heatmaps = [a for a in fig.axes if a.collections and a.get_title().startswith("$\\lambda")]
    assert len(heatmaps) == 2
    values = np.asarray(heatmaps[1].collections[0].get_array())
    assert values.shape == (144,) and np.all(values > 0)  # a density, evaluated in the interior
    plt.close(fig)
    with pytest.raises(ValueError, match="alpha"):
        concrete_density_figure(alpha=(1.0, -1.0, 2.0))
    with pytest.raises(ValueError, match="temperature"):
        concrete_density_figure(temperatures=(0.0,))
