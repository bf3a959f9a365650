"""concrete.plots.concrete_density_grid: the density figure laid out for a text column."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from concrete.plots import concrete_density_grid  # noqa: E402


def test_grid_layout_and_readable_text():
    fig = concrete_density_grid(temperatures=(0.5, 1.0, 2.0), ncols=2, width=7.5, resolution=20)
    try:
        w, _ = fig.get_size_inches()
        assert w == pytest.approx(7.5)
        visible = [ax for ax in fig.axes if ax.get_visible() and ax.axison is False]
        assert len(visible) == 4  # discrete panel + three heatmaps (colour bars keep their axes)
        sizes = [t.get_fontsize() for ax in fig.axes for t in ax.texts]
        sizes += [lab.get_fontsize() for ax in fig.axes for lab in ax.get_yticklabels()]
        assert sizes and min(sizes) >= 9
    finally:
        plt.close(fig)


@pytest.mark.parametrize("kwargs", [{"ncols": 0}, {"width": 0.0}, {"alpha": (1.0, -1.0, 1.0)}])
def test_grid_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        concrete_density_grid(resolution=10, **kwargs)
