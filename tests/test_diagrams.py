"""Tests for concrete.diagrams (computational graphs) and scripts/make_figures.py."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch  # noqa: E402

from concrete.diagrams import (  # noqa: E402
    NODE_KINDS,
    Edge,
    GraphSpec,
    Node,
    draw_graph,
    gumbel_max_graph,
    gumbel_max_spec,
    gumbel_softmax_graph,
    gumbel_softmax_spec,
)


def _by_gid(fig: Figure, prefix: str) -> dict[str, object]:
    ax = fig.axes[0]
    return {p.get_gid(): p for p in ax.patches if (p.get_gid() or "").startswith(prefix)}


def _pixels(fig: Figure) -> np.ndarray:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=60)
    buf.seek(0)
    return plt.imread(buf)


# ---------------------------------------------------------------------------- graph structure


def test_gumbel_max_spec_nodes_and_kinds() -> None:
    spec = gumbel_max_spec()
    kinds = {n.name: n.kind for n in spec.nodes}
    assert kinds["U"] == kinds["G"] == "stochastic"
    assert kinds["log_alpha"] == "parameter"
    assert kinds["plus"] == "deterministic"
    assert kinds["argmax"] == "nondifferentiable"
    assert kinds["out"] == "output"
    # forward pass: the noise and the location both reach the output
    assert "out" in spec.reachable("U", kinds=("forward", "blocked"))
    assert "out" in spec.reachable("log_alpha", kinds=("forward", "blocked"))
    # ... but the only way into the output is a blocked edge: no differentiable path
    assert "out" not in spec.reachable("log_alpha", kinds=("forward",))
    assert not any(e.kind == "gradient" for e in spec.edges)


@pytest.mark.parametrize("hard", [False, True])
def test_gumbel_softmax_spec_gradient_path(hard: bool) -> None:
    spec = gumbel_softmax_spec(hard)
    assert spec.node("softmax").kind == "deterministic"
    assert spec.node("lambda").kind == "parameter"
    # the backward pass goes from the output all the way back to log alpha
    assert "log_alpha" in spec.reachable("out", kinds=("gradient",))
    # and never into the noise (it is not a parameter)
    assert {"U", "G"}.isdisjoint(spec.reachable("out", kinds=("gradient",)))
    blocked = [e for e in spec.edges if e.kind == "blocked"]
    if hard:  # forward value is the one-hot D, through a non-differentiable op
        assert [(e.src, e.dst) for e in blocked] == [("onehot", "out")]
        assert spec.node("onehot").kind == "nondifferentiable"
        grad_into_softmax = [e for e in spec.edges if e.kind == "gradient" and e.dst == "softmax"]
        assert [e.src for e in grad_into_softmax] == ["out"]  # the straight-through skip
    else:  # everything on the way from log alpha to x is differentiable
        assert blocked == []
        assert "out" in spec.reachable("log_alpha", kinds=("forward",))


def test_specs_share_the_per_class_part() -> None:
    a, b = gumbel_max_spec(), gumbel_softmax_spec()
    for name in ("U", "G", "log_alpha", "plus"):
        assert a.node(name) == b.node(name)
    assert a.plate is not None and set(a.plate[0]) == {"U", "G", "log_alpha", "plus"}


# ---------------------------------------------------------------------------------- drawing


@pytest.mark.parametrize(
    "make, n_nodes, n_edges",
    [
        (gumbel_max_graph, 6, 5),
        (gumbel_softmax_graph, 7, 9),
        (lambda: gumbel_softmax_graph(hard=True), 8, 10),
    ],
)
def test_graph_figures_draw_every_node_and_edge(make, n_nodes: int, n_edges: int) -> None:
    fig = make()
    assert isinstance(fig, Figure)
    nodes = _by_gid(fig, "node:")
    edges = _by_gid(fig, "edge:")
    assert len(nodes) == n_nodes and len(edges) == n_edges
    assert all(isinstance(p, FancyArrowPatch) for p in edges.values())
    # stochastic nodes are circles, all others boxes, and they are coloured differently
    for gid, patch in nodes.items():
        kind = gid.split(":")[2]
        shape = Circle if kind == "stochastic" else FancyBboxPatch
        assert isinstance(patch, shape), gid
    faces = {gid.split(":")[2]: tuple(p.get_facecolor()) for gid, p in nodes.items()}
    assert faces["stochastic"] != faces["deterministic"]
    assert faces["stochastic"] != faces["parameter"]
    # the labels are there
    texts = {t.get_text() for t in fig.axes[0].texts}
    assert r"$U_k$" in texts and r"$G_k$" in texts and r"$\log\alpha_k$" in texts
    # the rendered image is not blank
    img = _pixels(fig)
    assert img.shape[0] > 50 and img.shape[1] > 100
    assert img[..., :3].std() > 0.05
    plt.close(fig)


def test_edge_styles_differ_by_kind() -> None:
    fig = gumbel_softmax_graph(hard=True)
    edges = _by_gid(fig, "edge:")
    fwd = edges["edge:plus->softmax:forward"]
    blk = edges["edge:onehot->out:blocked"]
    grad = edges["edge:out->softmax:gradient"]
    assert fwd.get_linestyle() != blk.get_linestyle() != grad.get_linestyle()
    assert tuple(fwd.get_edgecolor()) != tuple(grad.get_edgecolor())
    plt.close(fig)


def test_legend_lists_only_kinds_present() -> None:
    fig = gumbel_max_graph()
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert str(NODE_KINDS["stochastic"]["legend"]) in labels
    assert not any("backward" in lab for lab in labels)  # no gradient edge in Gumbel-Max
    fig2 = gumbel_softmax_graph()
    labels2 = [t.get_text() for t in fig2.axes[0].get_legend().get_texts()]
    assert any("backward" in lab for lab in labels2)
    assert str(NODE_KINDS["nondifferentiable"]["legend"]) not in labels2
    plt.close(fig)
    plt.close(fig2)


def test_draws_on_given_axes() -> None:
    fig, (a, b) = plt.subplots(1, 2)
    assert gumbel_max_graph(a, legend=False) is fig
    assert gumbel_softmax_graph(b, legend=False) is fig
    assert a.get_legend() is None
    assert len(_by_gid(fig, "node:")) == 6  # axes 0 holds the Gumbel-Max graph
    plt.close(fig)


# ----------------------------------------------------------------------------- bad input


def _tiny(**over) -> GraphSpec:
    nodes = over.pop("nodes", (Node("a", "a", (0, 0), "parameter"), Node("b", "b", (1, 0),
                                                                         "output")))
    edges = over.pop("edges", (Edge("a", "b"),))
    return GraphSpec(nodes, edges, **over)


def test_draw_graph_rejects_bad_specs() -> None:
    with pytest.raises(ValueError, match="kind='cloud'"):
        draw_graph(_tiny(nodes=(Node("a", "a", (0, 0), "cloud"), Node("b", "b", (1, 0),
                                                                       "output"))))
    with pytest.raises(ValueError, match="kind='teleport'"):
        draw_graph(_tiny(edges=(Edge("a", "b", "teleport"),)))
    with pytest.raises(ValueError, match="'c'"):
        draw_graph(_tiny(edges=(Edge("a", "c"),)))
    with pytest.raises(ValueError, match="duplicates"):
        draw_graph(_tiny(nodes=(Node("a", "a", (0, 0), "parameter"),) * 2, edges=()))
    with pytest.raises(ValueError, match="width"):
        draw_graph(_tiny(nodes=(Node("a", "a", (0, 0), "parameter", width=0.0),
                                Node("b", "b", (1, 0), "output"))))
    with pytest.raises(ValueError, match="plate"):
        draw_graph(_tiny(plate=(("zz",), "k")))
    with pytest.raises(ValueError, match="ax="):
        draw_graph(_tiny(), ax="not axes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hard="):
        gumbel_softmax_spec(hard="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name='nope'"):
        gumbel_max_spec().node("nope")
    plt.close("all")


# ------------------------------------------------------------------------ make_figures.py


DIAGRAMS = ("gumbel_max_graph", "gumbel_softmax_graph", "gumbel_softmax_st_graph")


def test_make_figures_writes_pngs_matching_the_committed_ones(tmp_path, root) -> None:
    from conftest import _load_script

    script = _load_script("make_figures")
    paths = script.make_figures(tmp_path, DIAGRAMS)
    assert [p.name for p in paths] == [f"{name}.png" for name in DIAGRAMS]
    for p in paths:
        img = plt.imread(p)
        assert img.ndim == 3 and img[..., :3].std() > 0.05
        # figures/ must be what the current code draws (run `make figures` after a change);
        # compared by pixels, with a tolerance for font antialiasing between machines
        committed = root / "figures" / p.name
        assert committed.exists(), f"{committed} missing: run `make figures`"
        ref = plt.imread(committed)
        assert ref.shape == img.shape, f"{committed} is stale: run `make figures`"
        assert np.abs(ref[..., :3] - img[..., :3]).mean() < 0.01, f"{committed} is stale"
    # deterministic output: the same bytes twice
    again = script.make_figures(tmp_path / "again", ["gumbel_max_graph"])
    assert again[0].read_bytes() == (tmp_path / "gumbel_max_graph.png").read_bytes()
    with pytest.raises(ValueError, match="unknown names"):
        script.make_figures(tmp_path, ["no_such_figure"])
