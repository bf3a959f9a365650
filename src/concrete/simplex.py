"""Grids, coordinates and quadrature on the probability simplex.

The (n-1)-simplex is ``Δ^{n-1} = {x ∈ R^n : x_k ≥ 0, Σ_k x_k = 1}``. A density on it, such as
the Concrete density, is a density with respect to Lebesgue measure on any n-1 of the
coordinates, e.g. ``dx_1 … dx_{n-1}``; every quadrature helper below integrates with respect to
that measure. With it the 1-simplex has length 1 and the 2-simplex has area 1/2.

Contents

* :func:`barycentric_to_cartesian` / :func:`cartesian_to_barycentric`: the 2-simplex drawn as an
  equilateral triangle in the plane (vertex ``e_1`` at (0, 0), ``e_2`` at (1, 0), ``e_3`` at
  (1/2, √3/2)).
* :func:`triangular_grid`: a subdivision of the 2-simplex into ``r²`` small triangles whose
  centroids lie in the interior (for heatmaps and binned tests), and :func:`triangle_cell_index`
  to find the small triangle holding a point.
* :func:`integrate_1simplex`, :func:`integrate_2simplex`: tanh-sinh (double exponential)
  quadrature with an error estimate. It copes with the integrable singularities that Concrete
  densities have at the vertices and edges.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)

#: Cartesian positions (3, 2) of the vertices e_1, e_2, e_3 of the drawn triangle.
TRIANGLE_VERTICES = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, math.sqrt(3.0) / 2.0]])

Density = Callable[[torch.Tensor], "torch.Tensor | np.ndarray"]


def _check_last_dim(x: np.ndarray | torch.Tensor, size: int, name: str) -> None:
    if x.ndim == 0 or x.shape[-1] != size:
        raise ValueError(f"{name} must have shape (..., {size}), got shape {tuple(x.shape)}")


def barycentric_to_cartesian(x: ArrayT, atol: float = 1e-4) -> ArrayT:
    """Map points of the 2-simplex to the plane.

    ``x`` has shape ``(..., 3)`` with non-negative entries summing to one (within ``atol``);
    the result has shape ``(..., 2)``: ``p = Σ_k x_k v_k`` with ``v_k`` the rows of
    :data:`TRIANGLE_VERTICES`. NumPy in, NumPy out; torch in, torch out (same dtype/device).

    Raises ``ValueError`` if the last dimension is not 3 or a point is off the simplex.
    """
    _check_last_dim(x, 3, "x")
    if isinstance(x, torch.Tensor):
        sums = x.sum(-1)
        bad = (sums - 1).abs().gt(atol).any() or x.lt(-atol).any()
        verts = torch.as_tensor(TRIANGLE_VERTICES, dtype=x.dtype, device=x.device)
    else:
        x = np.asarray(x, dtype=float)
        sums = x.sum(-1)
        bad = bool(np.any(np.abs(sums - 1) > atol) or np.any(x < -atol))
        verts = TRIANGLE_VERTICES
    if bad:
        raise ValueError(
            f"x must lie on the 2-simplex (entries >= 0 summing to 1 within atol={atol}); "
            f"got row sums in [{float(sums.min()):.6g}, {float(sums.max()):.6g}]"
        )
    return x @ verts


def cartesian_to_barycentric(p: ArrayT) -> ArrayT:
    """Inverse of :func:`barycentric_to_cartesian`.

    ``p`` has shape ``(..., 2)``; the result has shape ``(..., 3)`` and sums to one. Points
    outside the triangle get negative coordinates (no error: that is how one tests membership).
    """
    _check_last_dim(p, 2, "p")
    s3 = math.sqrt(3.0)
    x3 = p[..., 1] * (2.0 / s3)
    x2 = p[..., 0] - 0.5 * x3
    x1 = 1.0 - x2 - x3
    if isinstance(p, torch.Tensor):
        return torch.stack([x1, x2, x3], dim=-1)
    return np.stack([x1, x2, x3], axis=-1)


@dataclass(frozen=True)
class TriangularGrid:
    """A subdivision of the 2-simplex into ``resolution²`` congruent small triangles.

    Attributes:
        resolution: number of subdivisions ``r`` of each edge.
        points: ``(V, 3)`` barycentric lattice points ``(i, j, k) / r`` with ``i + j + k = r``,
            ``V = (r + 1)(r + 2) / 2`` (boundary included).
        triangles: ``(r², 3)`` int indices into ``points``; the first ``r(r+1)/2`` point up,
            the rest point down.
        centroids: ``(r², 3)`` barycentric centroids, all in the open interior.
        cell_area: area of one small triangle in ``(x_1, x_2)`` coordinates, ``1 / (2 r²)``.
    """

    resolution: int
    points: np.ndarray
    triangles: np.ndarray
    centroids: np.ndarray
    cell_area: float

    @property
    def cartesian_points(self) -> np.ndarray:
        """``(V, 2)`` plane coordinates of :attr:`points` (for ``matplotlib.tri``)."""
        return barycentric_to_cartesian(self.points)

    def cell_corners(self) -> np.ndarray:
        """``(r², 3, 3)`` barycentric corners of every small triangle (corner, coordinate)."""
        return self.points[self.triangles]


def _check_resolution(resolution: int) -> None:
    if not isinstance(resolution, int | np.integer) or isinstance(resolution, bool):
        raise ValueError(f"resolution must be a positive int, got {resolution!r}")
    if resolution < 1:
        raise ValueError(f"resolution must be a positive int, got {resolution!r}")


def _cell_lookup(r: int) -> tuple[np.ndarray, np.ndarray]:
    """Index tables ``up[i, j]`` and ``down[i, j]`` (``-1`` where no such triangle)."""
    up = -np.ones((r, r), dtype=np.int64)
    down = -np.ones((r, r), dtype=np.int64)
    c = 0
    for i in range(r):
        for j in range(r - i):
            up[i, j] = c
            c += 1
    for i in range(r - 1):
        for j in range(r - 1 - i):
            down[i, j] = c
            c += 1
    return up, down


def triangular_grid(resolution: int) -> TriangularGrid:
    """Subdivide the 2-simplex into ``resolution²`` small triangles.

    Upward triangle with base ``(i, j, k)``, ``i + j + k = r - 1``: corners ``(i+1, j, k)``,
    ``(i, j+1, k)``, ``(i, j, k+1)`` (divided by ``r``). Downward triangle with base
    ``i + j + k = r - 2``: corners ``(i, j+1, k+1)``, ``(i+1, j, k+1)``, ``(i+1, j+1, k)``.
    Evaluating a density at :attr:`TriangularGrid.centroids` never touches the boundary, where
    Concrete densities can be infinite.

    Raises ``ValueError`` if ``resolution`` is not a positive int.
    """
    _check_resolution(resolution)
    r = int(resolution)
    index: dict[tuple[int, int], int] = {}
    pts = []
    for i in range(r + 1):
        for j in range(r + 1 - i):
            index[(i, j)] = len(pts)
            pts.append((i, j, r - i - j))
    points = np.asarray(pts, dtype=float) / r
    up, down = _cell_lookup(r)
    tris = np.zeros((r * r, 3), dtype=np.int64)
    for i in range(r):
        for j in range(r - i):
            tris[up[i, j]] = (index[(i + 1, j)], index[(i, j + 1)], index[(i, j)])
    for i in range(r - 1):
        for j in range(r - 1 - i):
            tris[down[i, j]] = (index[(i, j + 1)], index[(i + 1, j)], index[(i + 1, j + 1)])
    centroids = points[tris].mean(axis=1)
    return TriangularGrid(r, points, tris, centroids, 0.5 / (r * r))


def triangle_cell_index(x: np.ndarray | torch.Tensor, resolution: int) -> np.ndarray:
    """Index of the small triangle of :func:`triangular_grid` that holds each point.

    ``x``: ``(..., 3)`` points of the 2-simplex; returns an int64 array of shape ``(...)`` with
    values in ``[0, resolution²)`` matching ``triangular_grid(resolution).triangles``. Points
    on a shared edge go to one of the neighbours. Use it to bin samples (e.g. with
    ``np.bincount(..., minlength=resolution**2)``).

    Raises ``ValueError`` for a bad ``resolution`` or shape.
    """
    _check_resolution(resolution)
    _check_last_dim(x, 3, "x")
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    r = int(resolution)
    x = np.asarray(x, dtype=float)
    # floor(r x_k): an upward cell when the floors sum to r - 1, a downward one at r - 2
    f = np.clip(np.floor(r * x).astype(np.int64), 0, r)
    i, j, k = f[..., 0], f[..., 1], f[..., 2]
    is_down = (i + j + k) <= r - 2
    up, down = _cell_lookup(r)
    # lattice points on the boundary or rounding can push i + j past r - 1: use a neighbour
    iu = np.minimum(i, r - 1)
    ju = np.minimum(j, r - 1 - iu)
    out = up[iu, ju]
    if r >= 2:
        out = np.where(is_down, down[np.minimum(i, r - 2), np.minimum(j, r - 2)], out)
    if np.any(out < 0):  # pragma: no cover - defensive; should not happen on the simplex
        raise ValueError("x has points off the 2-simplex")
    return out


# --------------------------------------------------------------------------------------------
# tanh-sinh quadrature
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuadratureResult:
    """Value of an integral, an error estimate and the number of density evaluations.

    ``error`` is ``|I_h - I_{2h}|``: the change when the step of the tanh-sinh rule is halved.
    The rule converges so fast that this over-estimates the error of ``value`` (computed with
    step ``h``) for integrands that are analytic in the interior.
    """

    value: float
    error: float
    n_evals: int

    def __float__(self) -> float:
        return self.value


def _check_level(level: int, min_coordinate: float) -> None:
    if not isinstance(level, int | np.integer) or isinstance(level, bool) or level < 1:
        raise ValueError(f"level must be an int >= 1, got {level!r}")
    if not (0.0 < min_coordinate < 0.5):
        raise ValueError(f"min_coordinate must be in (0, 0.5), got {min_coordinate!r}")


def _tanh_sinh_nodes(level: int, min_coordinate: float) -> tuple[np.ndarray, ...]:
    """Nodes ``u`` on (0, 1), ``1 - u`` (accurate), weights for step ``2^-level``, and a mask
    of the nodes that belong to the coarser step ``2^-(level-1)``."""
    t_max = math.asinh(math.log((1.0 - min_coordinate) / min_coordinate) / math.pi)
    h = 2.0**-level
    m = int(math.floor(t_max / h))
    k = np.arange(-m, m + 1)
    t = k * h
    s = math.pi * np.sinh(t)
    u = 1.0 / (1.0 + np.exp(-s))
    v = 1.0 / (1.0 + np.exp(s))  # = 1 - u without cancellation
    w = h * u * v * math.pi * np.cosh(t)
    coarse = (k % 2) == 0
    return u, v, w, coarse


def _evaluate(density: Density, x: np.ndarray) -> np.ndarray:
    out = density(torch.from_numpy(x))
    if isinstance(out, torch.Tensor):
        out = out.detach().cpu().double().numpy()
    out = np.asarray(out, dtype=float)
    if out.shape != x.shape[:-1]:
        raise ValueError(
            f"density must map points of shape (m, {x.shape[-1]}) to values of shape (m,), "
            f"got {tuple(out.shape)} for m={x.shape[0]}"
        )
    if not np.all(np.isfinite(out)):
        bad = x[~np.isfinite(out)][0]
        raise ValueError(f"density returned a non-finite value, e.g. at x={bad.tolist()}")
    return out


def integrate_1simplex(
    density: Density, level: int = 6, min_coordinate: float = 1e-100
) -> QuadratureResult:
    """Integrate ``f(x)`` over the 1-simplex with respect to ``dx_1``.

    ``∫_0^1 f((x_1, 1 - x_1)) dx_1`` by the tanh-sinh rule
    ``x_1 = σ(π sinh t)``, ``dx_1 = x_1 x_2 π cosh t dt``, with step ``h = 2^-level`` and
    ``t`` truncated where a coordinate falls below ``min_coordinate``.

    Args:
        density: callable taking a float64 tensor of shape ``(m, 2)`` (rows ``(x_1, x_2)``,
            both coordinates computed without cancellation) and returning ``(m,)`` values
            (tensor or array).
        level: refinement level (≥ 1); the error estimate compares with ``level - 1``.
        min_coordinate: smallest coordinate at which ``density`` is evaluated.

    Returns:
        :class:`QuadratureResult`.

    Raises ``ValueError`` for a bad ``level``/``min_coordinate``, a wrong output shape or a
    non-finite density value.
    """
    _check_level(level, min_coordinate)
    u, v, w, coarse = _tanh_sinh_nodes(level, min_coordinate)
    x = np.stack([u, v], axis=-1)
    f = _evaluate(density, x)
    fine = float(np.sum(w * f))
    rough = float(np.sum(2.0 * w[coarse] * f[coarse]))
    return QuadratureResult(fine, abs(fine - rough), len(u))


def integrate_2simplex(
    density: Density,
    level: int = 5,
    min_coordinate: float = 1e-100,
    corners: np.ndarray | None = None,
) -> QuadratureResult:
    """Integrate ``f(x)`` over the 2-simplex (or a triangle inside it) w.r.t. ``dx_1 dx_2``.

    The unit square is mapped onto the triangle with corners ``c_0, c_1, c_2`` by
    ``x = u c_0 + (1 - u) v c_1 + (1 - u)(1 - v) c_2`` (Jacobian ``2 A (1 - u)`` with ``A`` the
    triangle's area in ``(x_1, x_2)`` coordinates) and a product tanh-sinh rule is used in
    ``(u, v)``. Every coordinate is a sum of non-negative terms, so points near a vertex or an
    edge keep full relative precision.

    Args:
        density: callable taking a float64 tensor ``(m, 3)`` of points and returning ``(m,)``.
        level: refinement level (≥ 1); ``(2^level · t_max · 2 + 1)²`` evaluations.
        min_coordinate: truncation of the tanh-sinh rule (see :func:`integrate_1simplex`).
        corners: ``(3, 3)`` barycentric corners (rows) of a triangle inside the simplex;
            default: the whole simplex (``np.eye(3)``).

    Returns:
        :class:`QuadratureResult`; for the whole simplex and ``f ≡ 1`` the value is 1/2.

    Raises ``ValueError`` for bad arguments, a wrong output shape or non-finite values.
    """
    _check_level(level, min_coordinate)
    c = np.eye(3) if corners is None else np.asarray(corners, dtype=float)
    if c.shape != (3, 3):
        raise ValueError(f"corners must have shape (3, 3), got {c.shape}")
    if np.any(c < -1e-12) or np.any(np.abs(c.sum(1) - 1) > 1e-9):
        raise ValueError(f"corners must be points of the 2-simplex, got {c.tolist()}")
    area = 0.5 * abs(
        (c[1, 0] - c[0, 0]) * (c[2, 1] - c[0, 1]) - (c[2, 0] - c[0, 0]) * (c[1, 1] - c[0, 1])
    )
    u, um, w, coarse = _tanh_sinh_nodes(level, min_coordinate)
    v, vm = u, um
    b0 = np.broadcast_to(u[:, None], (len(u), len(v)))
    b1 = um[:, None] * v[None, :]
    b2 = um[:, None] * vm[None, :]
    bary = np.stack([b0, b1, b2], axis=-1).reshape(-1, 3)
    x = bary @ c
    f = _evaluate(density, x).reshape(len(u), len(v))
    jac = 2.0 * area * um[:, None]
    ww = w[:, None] * w[None, :] * jac
    fine = float(np.sum(ww * f))
    cc = coarse[:, None] & coarse[None, :]
    rough = float(np.sum(4.0 * ww[cc] * f[cc]))
    return QuadratureResult(fine, abs(fine - rough), f.size)


def integrate_simplex(density: Density, n: int, **kwargs: object) -> QuadratureResult:
    """Dispatch to :func:`integrate_1simplex` (``n = 2``) or :func:`integrate_2simplex`
    (``n = 3``); ``n`` is the number of coordinates. Raises ``ValueError`` otherwise."""
    if n == 2:
        return integrate_1simplex(density, **kwargs)  # type: ignore[arg-type]
    if n == 3:
        return integrate_2simplex(density, **kwargs)  # type: ignore[arg-type]
    raise ValueError(f"n must be 2 or 3 (points with n coordinates), got {n!r}")


def cell_probabilities(
    density: Density, resolution: int, level: int = 3, max_points: int = 2_000_000
) -> np.ndarray:
    """Probability of each small triangle of ``triangular_grid(resolution)`` under ``density``.

    Returns ``(resolution²,)`` integrals of ``density`` over the cells (w.r.t. ``dx_1 dx_2``),
    in the order of :attr:`TriangularGrid.triangles`; they sum to the total integral. Each cell
    uses the product tanh-sinh rule of :func:`integrate_2simplex` at ``level``; the density is
    called on the nodes of many cells at once (at most ``max_points`` points per call). Pair it
    with :func:`triangle_cell_index` for a binned chi-square test of samples.

    Raises ``ValueError`` for a bad ``resolution``, ``level`` or ``max_points``, a wrong output
    shape or non-finite density values.
    """
    _check_level(level, 1e-100)
    if not isinstance(max_points, int) or max_points < 1:
        raise ValueError(f"max_points must be a positive int, got {max_points!r}")
    grid = triangular_grid(resolution)
    u, um, w, _ = _tanh_sinh_nodes(level, 1e-100)
    b0 = np.broadcast_to(u[:, None], (len(u), len(u)))
    bary = np.stack([b0, um[:, None] * u[None, :], um[:, None] * um[None, :]], -1).reshape(-1, 3)
    ww = (w[:, None] * w[None, :] * (2.0 * grid.cell_area) * um[:, None]).reshape(-1)
    corners = grid.cell_corners()  # (T, corner, coordinate)
    per_call = max(1, max_points // len(bary))
    out = np.empty(len(corners))
    for start in range(0, len(corners), per_call):
        c = corners[start : start + per_call]
        x = np.einsum("pi,tij->tpj", bary, c).reshape(-1, 3)
        f = _evaluate(density, x).reshape(len(c), len(bary))
        out[start : start + len(c)] = f @ ww
    return out
