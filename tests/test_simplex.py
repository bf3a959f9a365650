"""Tests for concrete.simplex: coordinates, grids, cell lookup and quadrature."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from concrete.simplex import (
    TRIANGLE_VERTICES,
    barycentric_to_cartesian,
    cartesian_to_barycentric,
    cell_probabilities,
    integrate_1simplex,
    integrate_2simplex,
    integrate_simplex,
    triangle_cell_index,
    triangular_grid,
)


def _dirichlet(alpha: list[float]) -> torch.distributions.Dirichlet:
    return torch.distributions.Dirichlet(torch.tensor(alpha, dtype=torch.float64))


# --- coordinates -----------------------------------------------------------------------------


def test_vertices_and_centre_map_to_triangle() -> None:
    np.testing.assert_allclose(barycentric_to_cartesian(np.eye(3)), TRIANGLE_VERTICES)
    centre = barycentric_to_cartesian(np.full(3, 1 / 3))
    np.testing.assert_allclose(centre, [0.5, math.sqrt(3) / 6])


def test_round_trip_numpy_and_torch() -> None:
    x = np.random.default_rng(0).dirichlet([1.0, 2.0, 0.5], size=200)
    np.testing.assert_allclose(cartesian_to_barycentric(barycentric_to_cartesian(x)), x, atol=1e-12)
    xt = torch.from_numpy(x)
    back = cartesian_to_barycentric(barycentric_to_cartesian(xt))
    assert isinstance(back, torch.Tensor)
    torch.testing.assert_close(back, xt)


def test_outside_point_has_negative_coordinate() -> None:
    assert cartesian_to_barycentric(np.array([1.2, 0.1])).min() < 0


@pytest.mark.parametrize(
    "bad", [np.ones((4, 2)) / 2, np.array([0.5, 0.6, 0.1]), np.array([1.2, -0.2, 0.0])]
)
def test_barycentric_rejects_bad_input(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="x must"):
        barycentric_to_cartesian(bad)


def test_cartesian_rejects_bad_shape() -> None:
    with pytest.raises(ValueError, match="p must have shape"):
        cartesian_to_barycentric(np.zeros((5, 3)))


# --- grid ------------------------------------------------------------------------------------


@pytest.mark.parametrize("r", [1, 2, 5, 13])
def test_grid_counts_areas_interior(r: int) -> None:
    g = triangular_grid(r)
    assert g.triangles.shape == (r * r, 3)
    assert len(g.points) == (r + 1) * (r + 2) // 2
    assert g.centroids.min() > 0
    np.testing.assert_allclose(g.centroids.sum(1), 1.0)
    # shoelace area of every small triangle in (x1, x2) coordinates
    c = g.cell_corners()[..., :2]
    areas = 0.5 * np.abs(
        (c[:, 1, 0] - c[:, 0, 0]) * (c[:, 2, 1] - c[:, 0, 1])
        - (c[:, 2, 0] - c[:, 0, 0]) * (c[:, 1, 1] - c[:, 0, 1])
    )
    np.testing.assert_allclose(areas, g.cell_area)
    assert areas.sum() == pytest.approx(0.5)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_grid_rejects_bad_resolution(bad: object) -> None:
    with pytest.raises(ValueError, match="resolution"):
        triangular_grid(bad)  # type: ignore[arg-type]


def test_cell_index_of_centroids_and_random_points() -> None:
    r = 7
    g = triangular_grid(r)
    np.testing.assert_array_equal(triangle_cell_index(g.centroids, r), np.arange(r * r))
    x = np.random.default_rng(1).dirichlet([1.0, 1.0, 1.0], size=5000)
    idx = triangle_cell_index(x, r)
    corners = g.cell_corners()[idx]  # (m, corner, coord)
    local = np.linalg.solve(np.transpose(corners, (0, 2, 1)), x[:, :, None])[..., 0]
    assert local.min() > -1e-9  # each point lies inside the cell it was given
    # vertices and edges still get a valid cell
    edge = np.array([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5], [0.0, 0.0, 1.0]])
    assert np.all((triangle_cell_index(edge, r) >= 0) & (triangle_cell_index(edge, r) < r * r))


# --- quadrature ------------------------------------------------------------------------------


@pytest.mark.parametrize("a,b", [(0.5, 2.0), (0.3, 0.3), (3.0, 1.0)])
def test_1simplex_beta_integrates_to_one(a: float, b: float) -> None:
    lognorm = math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)

    def beta(x: torch.Tensor) -> torch.Tensor:
        return torch.exp((a - 1) * x[:, 0].log() + (b - 1) * x[:, 1].log() - lognorm)

    res = integrate_1simplex(beta)
    assert abs(res.value - 1.0) < 1e-9
    assert res.error < 1e-6


def test_1simplex_polynomial_and_error_estimate_is_honest() -> None:
    res = integrate_1simplex(lambda x: x[:, 0] ** 2, level=3)
    assert abs(res.value - 1 / 3) <= max(res.error, 1e-14)
    coarse = integrate_1simplex(lambda x: x[:, 0] ** -0.9, level=1, min_coordinate=1e-300)
    fine = integrate_1simplex(lambda x: x[:, 0] ** -0.9, level=7, min_coordinate=1e-300)
    assert abs(fine.value - 10.0) < 1e-3  # ∫ x^-0.9 dx = 10, a strong endpoint singularity
    assert coarse.error > fine.error


@pytest.mark.parametrize("alpha", [[0.5, 0.7, 2.0], [1.0, 1.0, 1.0], [0.3, 0.4, 0.5]])
def test_2simplex_dirichlet_integrates_to_one(alpha: list[float]) -> None:
    d = _dirichlet(alpha)
    res = integrate_2simplex(lambda x: d.log_prob(x).exp())
    assert abs(res.value - 1.0) < 1e-7
    assert res.error < 1e-5


def test_2simplex_area_of_sub_triangle() -> None:
    corners = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.5, 0.0, 0.5]])
    res = integrate_2simplex(lambda x: torch.ones(x.shape[0], dtype=x.dtype), corners=corners)
    assert res.value == pytest.approx(0.125, abs=1e-12)
    # x1 averaged over that triangle is its centroid's x1 = 2/3
    res1 = integrate_2simplex(lambda x: x[:, 0], corners=corners)
    assert res1.value / 0.125 == pytest.approx(2 / 3, abs=1e-12)


def test_dispatch_and_bad_arguments() -> None:
    one = integrate_simplex(lambda x: torch.ones(x.shape[0], dtype=x.dtype), n=2)
    assert one.value == pytest.approx(1.0)
    with pytest.raises(ValueError, match="n must be 2 or 3"):
        integrate_simplex(lambda x: x[:, 0], n=4)
    with pytest.raises(ValueError, match="level"):
        integrate_1simplex(lambda x: x[:, 0], level=0)
    with pytest.raises(ValueError, match="min_coordinate"):
        integrate_1simplex(lambda x: x[:, 0], min_coordinate=0.0)
    with pytest.raises(ValueError, match="shape"):
        integrate_1simplex(lambda x: x)
    with pytest.raises(ValueError, match="non-finite"):
        integrate_1simplex(lambda x: 1.0 / (x[:, 0] - x[:, 0]))
    with pytest.raises(ValueError, match="corners"):
        integrate_2simplex(lambda x: x[:, 0], corners=np.eye(2))


def test_cell_probabilities_match_dirichlet_samples() -> None:
    """Binned chi-square of Dirichlet samples against quadrature cell probabilities."""
    alpha = [0.6, 1.5, 2.5]
    d = _dirichlet(alpha)
    r = 5
    probs = cell_probabilities(lambda x: d.log_prob(x).exp(), r)
    assert probs.sum() == pytest.approx(1.0, abs=1e-8)
    # evaluating the cells in small chunks gives the same numbers; each cell matches a finer rule
    chunked = cell_probabilities(lambda x: d.log_prob(x).exp(), r, max_points=7000)
    np.testing.assert_allclose(chunked, probs, rtol=1e-12)
    corner_cell = triangular_grid(r).cell_corners()[0]
    fine = integrate_2simplex(lambda x: d.log_prob(x).exp(), level=5, corners=corner_cell)
    assert abs(probs[0] - fine.value) < 1e-7
    with pytest.raises(ValueError, match="max_points"):
        cell_probabilities(lambda x: d.log_prob(x).exp(), r, max_points=0)
    torch.manual_seed(0)
    samples = d.sample((20_000,))
    counts = np.bincount(triangle_cell_index(samples, r), minlength=r * r)
    _, p = stats.chisquare(counts, probs / probs.sum() * counts.sum())
    assert p > 1e-3
    # the test has power: the wrong Dirichlet is rejected
    wrong = cell_probabilities(lambda x: _dirichlet([0.6, 1.8, 2.5]).log_prob(x).exp(), r)
    _, p_wrong = stats.chisquare(counts, wrong / wrong.sum() * counts.sum())
    assert p_wrong < 1e-3


# --- properties (hypothesis) -----------------------------------------------------------------

_weights = st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=3, max_size=3).filter(
    lambda w: sum(w) > 1e-6
)


@settings(max_examples=200, deadline=None)
@given(w=_weights, r=st.integers(1, 12))
def test_any_simplex_point_round_trips_and_lands_in_its_cell(w: list[float], r: int) -> None:
    x = np.asarray(w) / sum(w)
    np.testing.assert_allclose(cartesian_to_barycentric(barycentric_to_cartesian(x)), x, atol=1e-12)
    idx = int(triangle_cell_index(x[None], r)[0])
    assert 0 <= idx < r * r
    corners = triangular_grid(r).cell_corners()[idx]
    local = np.linalg.solve(corners.T, x)  # barycentric coordinates inside the cell
    assert local.min() > -1e-9
