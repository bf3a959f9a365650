r"""Computational-graph diagrams of the Gumbel-Max and Gumbel-Softmax samplers.

The book draws its own diagrams (the seed post reuses the paper's figures). A diagram is a
:class:`GraphSpec` (nodes and edges, pure data that tests can reason about) rendered by
:func:`draw_graph` with matplotlib patches and arrows:

* **stochastic** nodes (:math:`U_k`, :math:`G_k`) are shaded circles,
* **parameter** nodes (:math:`\log\alpha_k`, :math:`\lambda`) are white rounded boxes,
* **deterministic** differentiable operations (:math:`+`, softmax) are blue boxes,
* **non-differentiable** operations (argmax, one-hot) are red boxes with a hatched fill,
* **output** nodes are bold-bordered boxes.

Edges are ``"forward"`` (solid black: the value flows), ``"blocked"`` (dashed red: the value
flows, but its derivative is zero almost everywhere, so no gradient reaches the parameters) or
``"gradient"`` (dotted green, curved: the path a backward pass takes).

:func:`gumbel_max_graph` and :func:`gumbel_softmax_graph` return a ``matplotlib`` Figure;
``scripts/make_figures.py`` writes them to ``figures/``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Patch, Rectangle

__all__ = [
    "NODE_KINDS",
    "EDGE_KINDS",
    "Node",
    "Edge",
    "GraphSpec",
    "draw_graph",
    "gumbel_max_spec",
    "gumbel_softmax_spec",
    "gumbel_max_graph",
    "gumbel_softmax_graph",
]

#: Node kind → drawing style (shape, face colour, edge colour, hatch, border width, legend).
NODE_KINDS: dict[str, dict[str, object]] = {
    "stochastic": {
        "shape": "circle",
        "face": "#f6c28b",
        "edge": "#b35900",
        "hatch": None,
        "lw": 1.4,
        "legend": "stochastic",
    },
    "parameter": {
        "shape": "box",
        "face": "white",
        "edge": "#333333",
        "hatch": None,
        "lw": 1.2,
        "legend": "parameter (deterministic input)",
    },
    "deterministic": {
        "shape": "box",
        "face": "#cfe2f3",
        "edge": "#1f4e79",
        "hatch": None,
        "lw": 1.2,
        "legend": "deterministic, differentiable",
    },
    "nondifferentiable": {
        "shape": "box",
        "face": "#f9dede",
        "edge": "#990000",
        "hatch": "///",
        "lw": 1.2,
        "hatch_color": "#e8a5a5",
        "legend": "deterministic, zero gradient a.e.",
    },
    "output": {
        "shape": "box",
        "face": "#e8e8e8",
        "edge": "black",
        "hatch": None,
        "lw": 2.4,
        "legend": "output (sample)",
    },
}

#: Edge kind → line style (colour, line style, width, curvature, legend entry).
EDGE_KINDS: dict[str, dict[str, object]] = {
    "forward": {"color": "black", "ls": "-", "lw": 1.3, "rad": 0.0, "legend": "forward pass"},
    "blocked": {
        "color": "#cc0000",
        "ls": "--",
        "lw": 1.5,
        "rad": 0.0,
        "legend": "forward only: gradient is 0 / undefined",
    },
    "gradient": {
        "color": "#2e7d32",
        "ls": ":",
        "lw": 1.8,
        "rad": -0.35,
        "legend": "backward pass (gradient)",
    },
}


@dataclass(frozen=True)
class Node:
    """One node of a diagram.

    Attributes:
        name: identifier used by edges (unique within a graph).
        label: matplotlib mathtext shown inside the node.
        xy: centre ``(x, y)`` in data coordinates.
        kind: a key of :data:`NODE_KINDS`.
        width: box width (boxes) or diameter (circles), in data units.
        height: box height (ignored for circles).
    """

    name: str
    label: str
    xy: tuple[float, float]
    kind: str
    width: float = 1.1
    height: float = 0.6


@dataclass(frozen=True)
class Edge:
    """A directed edge ``src → dst`` of kind ``kind`` (a key of :data:`EDGE_KINDS`).

    ``label`` (optional mathtext) is written next to the middle of the arrow.
    """

    src: str
    dst: str
    kind: str = "forward"
    label: str | None = None


@dataclass(frozen=True)
class GraphSpec:
    """A diagram as data: ``nodes``, ``edges``, an optional plate and a title.

    ``plate`` is ``(names, caption)``: a dashed rectangle drawn around the named nodes (the
    per-class part of the graph, repeated for :math:`k = 1, \\dots, n`).
    """

    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    plate: tuple[tuple[str, ...], str] | None = None
    title: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    def node(self, name: str) -> Node:
        """The node called ``name``; ``ValueError`` if there is none."""
        for n in self.nodes:
            if n.name == name:
                return n
        raise ValueError(f"name must be a node of the graph, got name={name!r}")

    def reachable(self, src: str, kinds: Iterable[str] = ("forward",)) -> set[str]:
        """Names reachable from ``src`` following edges whose kind is in ``kinds``."""
        self.node(src)
        allowed = set(kinds)
        seen, stack = {src}, [src]
        while stack:
            cur = stack.pop()
            for e in self.edges:
                if e.src == cur and e.kind in allowed and e.dst not in seen:
                    seen.add(e.dst)
                    stack.append(e.dst)
        return seen


def _validate(spec: GraphSpec) -> None:
    names = [n.name for n in spec.nodes]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"node names must be unique, got duplicates names={dup}")
    for n in spec.nodes:
        if n.kind not in NODE_KINDS:
            raise ValueError(
                f"node kind must be one of {sorted(NODE_KINDS)}, got kind={n.kind!r} "
                f"(node {n.name!r})"
            )
        if not (n.width > 0 and n.height > 0):
            raise ValueError(
                f"node width and height must be positive, got width={n.width}, "
                f"height={n.height} (node {n.name!r})"
            )
    for e in spec.edges:
        if e.kind not in EDGE_KINDS:
            raise ValueError(
                f"edge kind must be one of {sorted(EDGE_KINDS)}, got kind={e.kind!r} "
                f"(edge {e.src!r} -> {e.dst!r})"
            )
        for end in (e.src, e.dst):
            if end not in names:
                raise ValueError(f"edge endpoints must be node names, got {end!r} (edge {e})")
    if spec.plate is not None:
        for name in spec.plate[0]:
            if name not in names:
                raise ValueError(f"plate nodes must be node names, got {name!r}")


def _node_patch(node: Node) -> Circle | FancyBboxPatch:
    style = NODE_KINDS[node.kind]
    common = {
        "facecolor": style["face"],
        "edgecolor": style["edge"],
        "hatch": style["hatch"],
        "linewidth": style["lw"],
        "zorder": 3,
    }
    if style["hatch"]:
        common["edgecolor"] = style["hatch_color"]  # matplotlib draws hatches in edgecolor
    x, y = node.xy
    if style["shape"] == "circle":
        patch = Circle((x, y), radius=node.width / 2, **common)
    else:
        pad = 0.06
        patch = FancyBboxPatch(
            (x - node.width / 2 + pad, y - node.height / 2 + pad),
            node.width - 2 * pad,
            node.height - 2 * pad,
            boxstyle=f"round,pad={pad}",
            **common,
        )
    patch.set_gid(f"node:{node.name}:{node.kind}")
    return patch


def _label_position(
    a: tuple[float, float], b: tuple[float, float], rad: float
) -> tuple[float, float]:
    """Where an edge label goes: beside the middle of the (possibly curved) arrow ``a → b``.

    matplotlib's ``arc3`` puts the Bezier control point at ``mid + rad·(dy, −dx)``; the curve's
    midpoint is halfway there. The label sits 0.3 further out (straight edges: above).
    """
    dx, dy = b[0] - a[0], b[1] - a[1]
    mx, my = (a[0] + b[0]) / 2, (a[1] + b[1]) / 2
    if rad == 0.0:
        return mx, my + 0.25
    ox, oy = rad * dy, -rad * dx
    norm = (ox * ox + oy * oy) ** 0.5 or 1.0
    return mx + 0.5 * ox + 0.3 * ox / norm, my + 0.5 * oy + 0.3 * oy / norm


def draw_graph(
    spec: GraphSpec,
    ax: Axes | None = None,
    *,
    legend: bool = True,
    figsize: tuple[float, float] = (9.0, 4.2),
) -> Figure:
    """Draw ``spec`` with matplotlib patches (nodes) and arrows (edges); return the Figure.

    Every node patch carries the gid ``"node:<name>:<kind>"`` and every arrow
    ``"edge:<src>-><dst>:<kind>"`` (handy for tests and for SVG post-processing).

    Args:
        spec: the graph.
        ax: axes to draw on (default: a new figure of size ``figsize``).
        legend: add a legend of the node and edge kinds that occur in ``spec``.
        figsize: size of the new figure when ``ax`` is None.

    Returns:
        The Figure that holds ``ax``.

    Raises:
        ValueError: unknown node/edge kind, duplicate node names, an edge or plate naming a
            missing node, a non-positive node size, or ``ax`` that is not a matplotlib Axes.
    """
    _validate(spec)
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
    elif not isinstance(ax, Axes):
        raise ValueError(f"ax must be a matplotlib Axes or None, got ax={ax!r}")
    fig = ax.figure

    patches: dict[str, Circle | FancyBboxPatch] = {}
    for node in spec.nodes:
        patch = _node_patch(node)
        ax.add_patch(patch)
        patches[node.name] = patch
        if NODE_KINDS[node.kind]["hatch"]:  # the outline, in the node colour, over the hatch
            outline = _node_patch(
                Node(node.name, "", node.xy, "parameter", node.width, node.height)
            )
            outline.set(
                facecolor="none",
                edgecolor=NODE_KINDS[node.kind]["edge"],
                linewidth=NODE_KINDS[node.kind]["lw"],
                gid=f"outline:{node.name}",
            )
            ax.add_patch(outline)
        ax.text(
            *node.xy,
            node.label,
            ha="center",
            va="center",
            fontsize=12,
            zorder=4,
            gid=f"label:{node.name}",
            bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.85}
            if NODE_KINDS[node.kind]["hatch"]
            else None,
        )

    for e in spec.edges:
        style = EDGE_KINDS[e.kind]
        a, b = spec.node(e.src), spec.node(e.dst)
        arrow = FancyArrowPatch(
            a.xy,
            b.xy,
            patchA=patches[e.src],
            patchB=patches[e.dst],
            arrowstyle="-|>",
            mutation_scale=14,
            shrinkA=3,
            shrinkB=3,
            color=style["color"],
            linestyle=style["ls"],
            linewidth=style["lw"],
            connectionstyle=f"arc3,rad={style['rad']}",
            zorder=2,
        )
        arrow.set_gid(f"edge:{e.src}->{e.dst}:{e.kind}")
        ax.add_patch(arrow)
        if e.label:
            ax.text(
                *_label_position(a.xy, b.xy, float(style["rad"])),
                e.label,
                ha="center",
                va="center",
                fontsize=9,
                color=style["color"],
                zorder=4,
            )

    if spec.plate is not None:
        members = [spec.node(n) for n in spec.plate[0]]
        x0 = min(n.xy[0] - n.width / 2 for n in members) - 0.2
        x1 = max(n.xy[0] + n.width / 2 for n in members) + 0.2
        y0 = min(n.xy[1] - n.height / 2 for n in members) - 0.45
        y1 = max(n.xy[1] + n.height / 2 for n in members) + 0.2
        plate = Rectangle(
            (x0, y0),
            x1 - x0,
            y1 - y0,
            fill=False,
            ls="--",
            lw=1.0,
            edgecolor="#555555",
            zorder=1,
            gid="plate",
        )
        ax.add_patch(plate)
        ax.text(
            x1 - 0.1, y0 + 0.1, spec.plate[1], ha="right", va="bottom", fontsize=10, color="#555555"
        )

    xs = [n.xy[0] for n in spec.nodes]
    ys = [n.xy[1] for n in spec.nodes]
    ax.set_xlim(min(xs) - 1.0, max(xs) + 1.0)
    ax.set_ylim(min(ys) - 1.2, max(ys) + 0.9)
    ax.set_aspect("equal")
    ax.axis("off")
    if spec.title:
        ax.set_title(spec.title, fontsize=12)
    for i, note in enumerate(spec.notes):
        ax.text(0.0, -0.04 - 0.07 * i, note, transform=ax.transAxes, fontsize=9, va="top")

    if legend:
        handles: list[Patch | Line2D] = []
        for kind in NODE_KINDS:
            if any(n.kind == kind for n in spec.nodes):
                s = NODE_KINDS[kind]
                handles.append(
                    Patch(
                        facecolor=s["face"],
                        edgecolor=s["edge"],
                        hatch=s["hatch"],
                        linewidth=s["lw"],
                        label=str(s["legend"]),
                    )
                )
        for kind in EDGE_KINDS:
            if any(e.kind == kind for e in spec.edges):
                s = EDGE_KINDS[kind]
                handles.append(
                    Line2D(
                        [0], [0], color=s["color"], ls=s["ls"], lw=s["lw"], label=str(s["legend"])
                    )
                )
        ax.legend(
            handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=9, frameon=False
        )
    return fig


# --------------------------------------------------------------------------------------------
# the two samplers
# --------------------------------------------------------------------------------------------

_PLATE_CAPTION = r"$k = 1, \dots, n$"


def _noise_and_location() -> list[Node]:
    return [
        Node("U", r"$U_k$", (0.0, 0.0), "stochastic", width=0.8),
        Node("G", r"$G_k$", (2.0, 0.0), "stochastic", width=0.8),
        Node("log_alpha", r"$\log\alpha_k$", (2.0, 1.8), "parameter", width=1.2),
        Node("plus", r"$+$", (3.6, 0.9), "deterministic", width=0.6, height=0.6),
    ]


def _noise_edges() -> list[Edge]:
    return [
        Edge("U", "G", "forward", r"$-\log(-\log\,\cdot)$"),
        Edge("G", "plus"),
        Edge("log_alpha", "plus"),
    ]


def gumbel_max_spec() -> GraphSpec:
    r"""The Gumbel-Max sampler :math:`K = \arg\max_k(\log\alpha_k + G_k)` as a graph.

    Per class :math:`k`: :math:`U_k \sim \mathcal{U}(0,1)` → :math:`G_k = -\log(-\log U_k)`;
    :math:`\log\alpha_k + G_k`; then argmax over the :math:`n` classes gives the index
    :math:`K`. The argmax → :math:`K` edge is ``"blocked"``: :math:`K` is piecewise constant
    in :math:`\log\alpha`, so its derivative is zero wherever it exists.
    """
    nodes = _noise_and_location() + [
        Node("argmax", r"$\arg\max_k$", (5.6, 0.9), "nondifferentiable", width=1.5, height=0.8),
        Node("out", r"$K$", (7.9, 0.9), "output", width=0.8),
    ]
    edges = _noise_edges() + [
        Edge("plus", "argmax"),
        Edge("argmax", "out", "blocked", r"$\partial K/\partial\alpha = 0$"),
    ]
    return GraphSpec(
        tuple(nodes),
        tuple(edges),
        plate=(("U", "G", "log_alpha", "plus"), _PLATE_CAPTION),
        title=r"Gumbel-Max: $K = \arg\max_k\,(\log\alpha_k + G_k) \sim$ "
        r"Cat$(\alpha/\sum_i\alpha_i)$",
    )


def gumbel_softmax_spec(hard: bool = False) -> GraphSpec:
    r"""The Gumbel-Softmax sampler :math:`x = \operatorname{softmax}((\log\alpha + G)/\lambda)`.

    The per-class part is the Gumbel-Max graph's; argmax is replaced by a tempered softmax
    with temperature node :math:`\lambda > 0`, whose output :math:`x \in \Delta^{n-1}` is a
    differentiable function of :math:`\log\alpha` and :math:`\lambda`. Gradient edges show the
    backward path :math:`x \to` softmax :math:`\to + \to \log\alpha`.

    With ``hard=True`` (straight-through) an extra one-hot(argmax) node produces the output
    :math:`D` in the forward pass (``"blocked"`` edge), while the gradient edge from :math:`D`
    skips it and enters the softmax: the backward pass pretends :math:`\partial D/\partial x`
    is the identity.

    Raises:
        ValueError: if ``hard`` is not a bool.
    """
    if not isinstance(hard, bool):
        raise ValueError(f"hard must be a bool, got hard={hard!r}")
    soft_label = r"softmax$(\cdot/\lambda)$"
    nodes = _noise_and_location() + [
        Node("lambda", r"$\lambda$", (5.6, 2.2), "parameter", width=0.6),
        Node("softmax", soft_label, (5.6, 0.9), "deterministic", width=1.9),
    ]
    edges = _noise_edges() + [Edge("plus", "softmax"), Edge("lambda", "softmax")]
    if hard:
        nodes += [
            Node("onehot", r"one_hot$(\arg\max)$", (8.2, 0.9), "nondifferentiable", width=2.4),
            Node("out", r"$D$", (10.4, 0.9), "output", width=0.7),
        ]
        edges += [
            Edge("softmax", "onehot", "forward", r"$x$"),
            Edge("onehot", "out", "blocked"),
            Edge("out", "softmax", "gradient", r"$\partial D/\partial x$ taken as $I$"),
        ]
        title = r"Straight-through Gumbel-Softmax: forward one-hot $D$, backward through $x$"
    else:
        nodes.append(Node("out", r"$x$", (7.6, 0.9), "output", width=0.7))
        edges += [
            Edge("softmax", "out"),
            Edge("out", "softmax", "gradient"),
        ]
        title = r"Gumbel-Softmax: $x = \mathrm{softmax}((\log\alpha + G)/\lambda) \in \Delta^{n-1}$"
    edges += [
        Edge("softmax", "plus", "gradient"),
        Edge("plus", "log_alpha", "gradient", r"$\partial x/\partial\log\alpha$"),
    ]
    return GraphSpec(
        tuple(nodes),
        tuple(edges),
        plate=(("U", "G", "log_alpha", "plus"), _PLATE_CAPTION),
        title=title,
    )


def gumbel_max_graph(ax: Axes | None = None, *, legend: bool = True) -> Figure:
    """Draw :func:`gumbel_max_spec` (see :func:`draw_graph`); return the Figure."""
    return draw_graph(gumbel_max_spec(), ax, legend=legend)


def gumbel_softmax_graph(
    ax: Axes | None = None, *, hard: bool = False, legend: bool = True
) -> Figure:
    """Draw :func:`gumbel_softmax_spec` (``hard`` for straight-through); return the Figure."""
    spec = gumbel_softmax_spec(hard)
    figsize: Sequence[float] = (11.0, 4.2) if hard else (9.5, 4.2)
    return draw_graph(spec, ax, legend=legend, figsize=(float(figsize[0]), float(figsize[1])))
