"""Figure helpers used by more than one chapter.

Each helper draws on a matplotlib ``Axes`` it is given (or a new one) and returns what it drew,
so chapters keep control of layout, titles and saving.

Ternary plots (the 2-simplex as an equilateral triangle, see :mod:`concrete.simplex`):
:func:`ternary_axes`, :func:`ternary_heatmap`, :func:`ternary_scatter`, and the Concrete paper's
figure :func:`concrete_density_figure` (``scripts/make_figures.py`` writes it to ``figures/``)
and the same panels on a grid for a text column, :func:`concrete_density_grid`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.collections import PolyCollection
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.tri import Triangulation

from concrete.simplex import TRIANGLE_VERTICES, barycentric_to_cartesian, triangular_grid

# --------------------------------------------------------------------------------------------
# ternary (2-simplex) plots
# --------------------------------------------------------------------------------------------


def ternary_axes(
    ax: Axes | None = None,
    labels: Sequence[str] | None = ("$x_1$", "$x_2$", "$x_3$"),
    fontsize: float = 10,
) -> Axes:
    """Prepare ``ax`` for a ternary plot: triangle outline, vertex labels, no frame.

    Vertex ``e_k`` sits at ``TRIANGLE_VERTICES[k]``: ``e_1`` bottom left, ``e_2`` bottom
    right, ``e_3`` top. ``labels``: three strings (``None`` for no labels).
    Raises ``ValueError`` if ``labels`` does not have three entries.
    """
    if labels is not None and len(labels) != 3:
        raise ValueError(f"labels must have 3 entries, got {len(labels)}: {labels!r}")
    if ax is None:
        _, ax = plt.subplots(figsize=(3.2, 3.0))
    closed = np.vstack([TRIANGLE_VERTICES, TRIANGLE_VERTICES[:1]])
    ax.plot(closed[:, 0], closed[:, 1], color="k", lw=0.8, zorder=3)
    if labels is not None:
        offsets = [(-0.04, -0.05, "right"), (0.04, -0.05, "left"), (0.0, 0.04, "center")]
        for (x, y), (dx, dy, ha), lab in zip(TRIANGLE_VERTICES, offsets, labels, strict=True):
            ax.text(x + dx, y + dy, lab, ha=ha, va="center", fontsize=fontsize)
    ax.set_aspect("equal")
    ax.set_xlim(-0.1, 1.1)
    ax.set_ylim(-0.1, np.sqrt(3) / 2 + 0.08)
    ax.axis("off")
    return ax


def ternary_heatmap(
    density: Callable[[torch.Tensor], torch.Tensor | np.ndarray] | np.ndarray,
    ax: Axes | None = None,
    resolution: int = 60,
    log_scale: bool = False,
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    labels: Sequence[str] | None = ("$x_1$", "$x_2$", "$x_3$"),
    colorbar: bool = True,
) -> PolyCollection:
    """Heatmap of a function on the 2-simplex, one flat colour per small triangle.

    ``density`` is either a callable mapping a float64 tensor ``(m, 3)`` of points to ``(m,)``
    values, evaluated at the ``resolution²`` centroids of
    :func:`concrete.simplex.triangular_grid` (never on the boundary, where Concrete densities
    blow up), or an array of those ``resolution²`` values already computed. ``log_scale``
    uses a logarithmic colour scale (values must then be positive). Returns the mappable
    (for a shared colour bar); raises ``ValueError`` for a wrong number of values or
    non-positive values with ``log_scale``.
    """
    grid = triangular_grid(resolution)
    if callable(density):
        vals = density(torch.from_numpy(grid.centroids))
    else:
        vals = density
    if isinstance(vals, torch.Tensor):
        vals = vals.detach().cpu().double().numpy()
    vals = np.asarray(vals, dtype=float).reshape(-1)
    if vals.shape != (resolution * resolution,):
        raise ValueError(
            f"density must give {resolution * resolution} values (resolution²), got {vals.shape}"
        )
    if log_scale and not np.all(vals > 0):
        raise ValueError(
            f"log_scale=True needs positive values; got a minimum of {float(np.nanmin(vals)):.3g}"
        )
    ax = ternary_axes(ax, labels=labels)
    xy = grid.cartesian_points
    tri = Triangulation(xy[:, 0], xy[:, 1], grid.triangles)
    norm = LogNorm(vmin=vmin, vmax=vmax) if log_scale else Normalize(vmin=vmin, vmax=vmax)
    pc = ax.tripcolor(
        tri, facecolors=vals, cmap=cmap, norm=norm, shading="flat", linewidth=0, antialiased=False
    )
    if colorbar:
        ax.figure.colorbar(pc, ax=ax, shrink=0.7, pad=0.02)
    return pc


def ternary_scatter(
    x: torch.Tensor | np.ndarray,
    ax: Axes | None = None,
    labels: Sequence[str] | None = ("$x_1$", "$x_2$", "$x_3$"),
    **scatter_kwargs: object,
) -> Axes:
    """Scatter points of the 2-simplex, ``x`` of shape ``(m, 3)``, on ternary axes.

    Extra keyword arguments go to ``Axes.scatter`` (default: small, semi-transparent dots).
    Raises ``ValueError`` (from :func:`concrete.simplex.barycentric_to_cartesian`) for points
    off the simplex.
    """
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    xy = barycentric_to_cartesian(np.asarray(x, dtype=float))
    ax = ternary_axes(ax, labels=labels)
    kw: dict[str, object] = {"s": 3, "alpha": 0.4, "linewidths": 0}
    kw.update(scatter_kwargs)
    ax.scatter(xy[:, 0], xy[:, 1], **kw)
    return ax


def concrete_density_figure(
    alpha: Sequence[float] = (2.0, 0.5, 1.0),
    temperatures: Sequence[float] = (0.5, 1.0, 2.0),
    resolution: int = 90,
    decades: float = 4.0,
) -> Figure:
    r"""The figure of Maddison et al. (2017, Fig. 2): a discrete law and its Concrete densities.

    Left panel: the discrete distribution :math:`\pi_k = \alpha_k / \sum_i \alpha_i` (the
    :math:`\lambda \to 0` limit) as bars at the vertices of the 2-simplex. Then one ternary
    heatmap per temperature of :math:`p_{\alpha,\lambda}(x) = 2\lambda^2 \prod_k \alpha_k
    x_k^{-\lambda-1} / (\sum_i \alpha_i x_i^{-\lambda})^3` on a log colour scale spanning
    ``decades`` decades below the panel's largest value.

    Args:
        alpha: three positive locations.
        temperatures: positive temperatures, one panel each.
        resolution: edge subdivisions of the heatmap grid (``resolution²`` cells).
        decades: colour range (> 0).

    Returns:
        The matplotlib ``Figure`` (``1 + len(temperatures)`` panels).

    Raises ``ValueError`` for a bad ``alpha``, temperature or ``decades``.
    """
    from concrete.distributions import Concrete  # local import: plots must not need it at load

    a = torch.as_tensor(alpha, dtype=torch.float64)
    if a.shape != (3,) or not bool((a > 0).all()) or not bool(torch.isfinite(a).all()):
        raise ValueError(f"alpha must be three positive finite numbers, got alpha={alpha!r}")
    if not decades > 0:
        raise ValueError(f"decades must be positive, got decades={decades!r}")
    pi = (a / a.sum()).tolist()
    fig, axes = plt.subplots(
        1,
        1 + len(temperatures),
        figsize=(3.25 * (1 + len(temperatures)), 3.4),
        gridspec_kw={"width_ratios": [0.8] + [1.0] * len(temperatures)},  # colour bars: wider
    )
    ax = ternary_axes(axes[0])
    for (vx, vy), p_k in zip(TRIANGLE_VERTICES, pi, strict=True):
        height = 0.15 * p_k / max(pi)
        ax.add_patch(plt.Rectangle((vx - 0.025, vy), 0.05, height, color="C3", zorder=4))
        ax.text(vx, vy + height + 0.04, f"{p_k:.2f}", ha="center", va="center", fontsize=9)
    ax.set_title(r"discrete ($\lambda \to 0$)")
    centroids = torch.from_numpy(triangular_grid(resolution).centroids)
    for ax, lam in zip(axes[1:], temperatures, strict=True):
        dist = Concrete(float(lam), logits=a.log())  # validates the temperature
        values = dist.log_prob(centroids).exp()
        vmax = values.max().item()
        ternary_heatmap(
            values,
            ax=ax,
            resolution=resolution,
            log_scale=True,
            cmap="magma",
            vmin=vmax / 10**decades,
            vmax=vmax,
        )
        ax.set_title(rf"$\lambda = {float(lam):g}$")
    for ax in axes:
        ax.set_ylim(-0.1, 1.1)  # same scale in every panel (room for the bars)
    fig.tight_layout()
    return fig


def concrete_density_grid(
    alpha: Sequence[float] = (2.0, 0.5, 1.0),
    temperatures: Sequence[float] = (0.5, 1.0, 2.0),
    ncols: int = 2,
    width: float = 7.5,
    resolution: int = 90,
    decades: float = 4.0,
    labels: Sequence[str] = ("$e_1$", "$e_2$", "$e_3$"),
    fontsize: float = 11,
) -> Figure:
    r"""The panels of :func:`concrete_density_figure` on a grid, sized for a text column.

    Same content (the discrete law :math:`\pi_k = \alpha_k/\sum_i\alpha_i` as bars at the
    vertices, then one log-scale heatmap of :math:`p_{\alpha,\lambda}` per temperature,
    ``decades`` decades below the panel's largest value) on ``ncols`` columns, ``width`` inches
    wide, with vertex ``labels`` and titles, bar values and colour-bar ticks at ``fontsize``
    points (readable when the figure is shown at a text column's width).

    Returns the ``Figure``; raises ``ValueError`` for a bad ``alpha``, temperature, ``decades``,
    ``ncols`` or ``width``.
    """
    from concrete.distributions import Concrete  # local import: plots must not need it at load

    a = torch.as_tensor(alpha, dtype=torch.float64)
    if a.shape != (3,) or not bool((a > 0).all()) or not bool(torch.isfinite(a).all()):
        raise ValueError(f"alpha must be three positive finite numbers, got alpha={alpha!r}")
    if not decades > 0:
        raise ValueError(f"decades must be positive, got decades={decades!r}")
    if not (isinstance(ncols, int) and ncols >= 1):
        raise ValueError(f"ncols must be a positive integer, got ncols={ncols!r}")
    if not width > 0:
        raise ValueError(f"width must be positive, got width={width!r}")
    n_panels = 1 + len(temperatures)
    nrows = -(-n_panels // ncols)
    panel_w = width / ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, nrows * 0.85 * panel_w), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n_panels:]:
        ax.axis("off")
    pi = (a / a.sum()).tolist()
    ax = ternary_axes(flat[0], labels=None)
    for (vx, vy), p_k, lab in zip(TRIANGLE_VERTICES, pi, labels, strict=True):
        height = 0.15 * p_k / max(pi)
        ax.add_patch(plt.Rectangle((vx - 0.025, vy), 0.05, height, color="C3", zorder=4))
        ax.text(
            vx, vy + height + 0.06, f"{lab}: {p_k:.2f}", ha="center", va="center", fontsize=fontsize
        )
    ax.set_title(r"discrete ($\lambda \to 0$)", fontsize=fontsize + 1)
    spacer = fig.colorbar(ScalarMappable(), ax=ax, shrink=0.75, pad=0.02)  # same panel size
    spacer.ax.set_visible(False)
    centroids = torch.from_numpy(triangular_grid(resolution).centroids)
    for ax, lam in zip(flat[1:n_panels], temperatures, strict=True):
        dist = Concrete(float(lam), logits=a.log())  # validates the temperature
        values = dist.log_prob(centroids).exp()
        vmax = values.max().item()
        pc = ternary_heatmap(
            values,
            ax=ax,
            resolution=resolution,
            log_scale=True,
            cmap="magma",
            vmin=vmax / 10**decades,
            vmax=vmax,
            labels=None,
            colorbar=False,
        )
        ternary_axes(ax, labels=labels, fontsize=fontsize)
        cbar = fig.colorbar(pc, ax=ax, shrink=0.75, pad=0.02)
        cbar.ax.tick_params(labelsize=fontsize - 1)
        ax.set_title(rf"$\lambda = {float(lam):g}$", fontsize=fontsize + 1)
    for ax in flat[:n_panels]:
        ax.set_ylim(-0.12, 1.1)  # same scale in every panel (room for the bars)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# image grids (VAE inputs, reconstructions, traversals; chapters 4 and 5)
# --------------------------------------------------------------------------------------------


def image_grid(
    images: torch.Tensor | np.ndarray,
    *,
    image_shape: Sequence[int] | None = None,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    cell_size: float = 1.0,
    title: str | None = None,
    cmap: str = "gray",
) -> Figure:
    """Draw a grid of images, one per cell, and return the matplotlib ``Figure``.

    Args:
        images: ``(R, C, *image)`` where one image is ``(3, H, W)`` RGB, ``(1, H, W)`` or
            ``(H, W)`` grey, or flat ``(D,)`` with ``image_shape`` given (e.g. ``(28, 28)``).
            ``(N, *image)`` is drawn as one row. Values are clipped to ``[0, 1]`` (decoder
            means of a Gaussian likelihood can leave that range).
        image_shape: shape to reshape flat images to, ``(H, W)`` or ``(3, H, W)``.
        row_labels: ``R`` labels written left of the rows.
        col_labels: ``C`` labels written above the columns.
        cell_size: inches per cell.
        title: figure title.
        cmap: colour map for grey images.

    Raises:
        ValueError: for a label list of the wrong length or images of an unknown layout.
    """
    arr = images.detach().cpu().float().numpy() if torch.is_tensor(images) else np.asarray(images)
    if image_shape is not None:
        arr = arr.reshape(*arr.shape[: arr.ndim - 1], *image_shape)
    # decide where the image dimensions start: RGB/1-channel (3 dims) or grey (2 dims)
    img_dims = 3 if arr.ndim >= 4 and arr.shape[-3] in (1, 3) else 2
    if arr.ndim == img_dims + 1:
        arr = arr[None]
    if arr.ndim != img_dims + 2:
        raise ValueError(
            f"images must have shape (R, C, *image) or (N, *image), got {tuple(arr.shape)}"
        )
    n_rows, n_cols = arr.shape[:2]
    if row_labels is not None and len(row_labels) != n_rows:
        raise ValueError(f"row_labels must have {n_rows} entries, got {len(row_labels)}")
    if col_labels is not None and len(col_labels) != n_cols:
        raise ValueError(f"col_labels must have {n_cols} entries, got {len(col_labels)}")
    arr = np.clip(arr, 0.0, 1.0)
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(cell_size * n_cols + 0.2, cell_size * n_rows + 0.2),
        squeeze=False,
    )
    for r in range(n_rows):
        for c in range(n_cols):
            ax = axes[r, c]
            img = arr[r, c]
            if img_dims == 3:
                img = img.transpose(1, 2, 0)
                img = img[..., 0] if img.shape[-1] == 1 else img
            ax.imshow(img, cmap=cmap if img.ndim == 2 else None, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c == 0 and row_labels is not None:
                ax.set_ylabel(row_labels[r], rotation=0, ha="right", va="center", fontsize=9)
            if r == 0 and col_labels is not None:
                ax.set_title(col_labels[c], fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
