"""Pictures of scene graphs: the figure behind ``neurogshn data inspect``.

Three panels: the image; its panoptic segments (colour per segment, category name at the
centroid); the scene graph over the dimmed image — one dot per node at its centroid, edges
coloured by type (touching segments, k-nearest centroids, links to the global node, which is
drawn as a star above the image because it stands for the whole picture).
"""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from torch_geometric.data import Data

from neurogshn.features.segment import FeatureLayout
from neurogshn.graph.builder import EDGE_ATTR_COLUMNS
from neurogshn.segmentation.base import PanopticSegmentation

EDGE_STYLE = {
    "adjacent": {"color": "#1f77b4", "lw": 2.0, "ls": "-", "label": "touching segments"},
    "knn": {"color": "#ff7f0e", "lw": 1.4, "ls": "--", "label": "k-nearest centroids"},
    "global": {"color": "#7f7f7f", "lw": 0.7, "ls": ":", "label": "link to global node"},
}
THING_COLOR = "#d62728"
STUFF_COLOR = "#2ca02c"
UNKNOWN_COLOR = "#9467bd"
GLOBAL_COLOR = "#000000"


def panoptic_overlay(image: np.ndarray, seg: PanopticSegmentation) -> np.ndarray:
    """The image in its own colours with every segment outlined in black and void pixels
    hatched grey: ``H×W×3`` in [0, 1]. Segments are not filled with false colours so that
    colour words in captions can still be checked against the picture."""
    img = np.asarray(image, dtype=np.float64) / 255.0
    out = img.copy()
    sm = seg.segment_map
    void = sm == 0
    if void.any():
        yy, xx = np.nonzero(void)
        stripes = ((yy + xx) // 2) % 2 == 0
        out[yy[stripes], xx[stripes]] = 0.5
    edge = np.zeros(sm.shape, bool)
    edge[:-1] |= sm[:-1] != sm[1:]
    edge[1:] |= sm[1:] != sm[:-1]
    edge[:, :-1] |= sm[:, :-1] != sm[:, 1:]
    edge[:, 1:] |= sm[:, 1:] != sm[:, :-1]
    out[edge] = 0.0
    return out


def _label(s) -> str:
    return s.category if s.category is not None else f"segment {s.id}"


def draw_segments(
    ax: Axes, image: np.ndarray, seg: PanopticSegmentation, node_of: dict[int, int] | None = None
) -> None:
    """Panel 2: segments with their category names (and graph node numbers, ``node_of``:
    segment id → node index)."""
    ax.imshow(panoptic_overlay(image, seg))
    few = len(seg.segments) <= 12
    for s in seg.segments:
        ys, xs = np.nonzero(seg.segment_map == s.id)
        if len(xs) == 0:
            continue
        node = node_of.get(s.id) if node_of else None
        text = _label(s) if node is None else f"{node}: {_label(s)}"
        # Anchor the label on a pixel of the segment nearest its centroid (stuff regions
        # with holes have their centroid elsewhere).
        k = int(np.argmin((xs - xs.mean()) ** 2 + (ys - ys.mean()) ** 2))
        ax.text(
            xs[k],
            ys[k],
            text,
            ha="center",
            va="center",
            fontsize=7 if few else 5,
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85},
        )
    ax.set_title(f"panoptic segments ({len(seg.segments)}), labelled node: category", fontsize=9)


def draw_graph(
    ax: Axes, image: np.ndarray, graph: Data, layout: FeatureLayout, boxes: bool = False
) -> None:
    """Panel 3: the scene graph over the dimmed image (``boxes``: outline node boxes)."""
    img = np.asarray(image, dtype=np.float64) / 255.0
    h, w = img.shape[:2]
    ax.imshow(0.35 * img + 0.65)
    pos = graph.pos.detach().cpu().numpy() * np.array([w, h])
    gpos = np.array([w / 2, -0.12 * h])
    pos[0] = gpos
    ei = graph.edge_index.cpu().numpy()
    ea = graph.edge_attr.cpu().numpy()
    col = {t: EDGE_ATTR_COLUMNS.index(f"type={t}") for t in EDGE_STYLE}
    drawn: set[tuple[int, int]] = set()
    for k in range(ei.shape[1]):
        a, b = int(ei[0, k]), int(ei[1, k])
        pair = (min(a, b), max(a, b))
        if pair in drawn:
            continue
        drawn.add(pair)
        kind = next(t for t in ("global", "adjacent", "knn") if ea[k, col[t]] > 0)
        st = EDGE_STYLE[kind]
        ax.plot(
            [pos[a, 0], pos[b, 0]],
            [pos[a, 1], pos[b, 1]],
            color=st["color"],
            lw=st["lw"],
            ls=st["ls"],
            zorder={"global": 1, "knn": 2, "adjacent": 3}[kind],
        )
    nodes_kind = "panoptic"
    if len(graph.segment_id) > 1 and int(graph.segment_id[1]) == -1:
        nodes_kind = "patches"
    node_boxes = graph.node_box.cpu().numpy() * np.array([w, h, w, h])
    flags = graph.x[:, layout.slices["flags"]].cpu().numpy()
    cats = graph.node_category.cpu().numpy()
    n = int(graph.num_nodes)
    many = n > 40
    for i in range(1, n):
        if nodes_kind == "patches" or boxes:
            bx = node_boxes[i]
            ax.add_patch(
                Rectangle(
                    (bx[0] - 0.5, bx[1] - 0.5),
                    bx[2],
                    bx[3],
                    fill=False,
                    ec="#555555",
                    lw=0.6,
                    zorder=1,
                )
            )
        unknown = cats[i] >= len(layout.categories)
        color = UNKNOWN_COLOR if unknown else (THING_COLOR if flags[i, 1] > 0 else STUFF_COLOR)
        ax.scatter(
            *pos[i], s=60 if not many else 18, c=color, edgecolors="white", linewidths=0.8, zorder=4
        )
        if not many:
            ax.text(
                pos[i, 0],
                pos[i, 1],
                str(i),
                fontsize=5.5,
                color="white",
                ha="center",
                va="center",
                zorder=5,
                fontweight="bold",
            )
        if n <= 16 and not unknown:
            ax.text(
                pos[i, 0] + 0.025 * w,
                pos[i, 1] + 0.045 * h,
                layout.categories[cats[i]],
                fontsize=6.5,
                zorder=5,
                color="#222222",
                bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.7},
            )
    ax.scatter(*gpos, s=160, marker="*", c=GLOBAL_COLOR, zorder=4, clip_on=False)
    ax.text(
        gpos[0] + 0.04 * w,
        gpos[1],
        "global node (whole image)",
        fontsize=7,
        va="center",
        clip_on=False,
    )
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.2 * h)
    n_e = ei.shape[1]
    ax.set_title(f"scene graph: {n - 1} nodes + global, {n_e} directed edges", fontsize=9)


def legend_handles(layout: FeatureLayout) -> list[Line2D]:
    hs = [
        Line2D([], [], color=st["color"], lw=st["lw"], ls=st["ls"], label=st["label"])
        for st in EDGE_STYLE.values()
    ]
    for color, label in (
        (THING_COLOR, "thing node (object)"),
        (STUFF_COLOR, "stuff node (region)"),
        (UNKNOWN_COLOR, "node of unknown category"),
    ):
        hs.append(
            Line2D(
                [],
                [],
                marker="o",
                ls="",
                color=color,
                markeredgecolor="white",
                markersize=7,
                label=label,
            )
        )
    hs.append(
        Line2D([], [], marker="*", ls="", color=GLOBAL_COLOR, markersize=10, label="global node")
    )
    return hs


def inspect_figure(
    image: np.ndarray,
    seg: PanopticSegmentation,
    graph: Data,
    layout: FeatureLayout,
    title: str | None = None,
    caption: str | None = None,
    boxes: bool = False,
) -> Figure:
    """The three-panel inspection figure (image | segments | graph) with a legend.

    Args:
        image: ``H×W×3`` uint8 RGB.
        seg: its segmentation.
        graph: its scene graph (from :func:`~neurogshn.graph.builder.build_graph`).
        layout: the node feature layout (category vocabulary, flag columns).
        title: figure title.
        caption: one caption to print under the title.
        boxes: draw node boxes (for ``nodes="boxes"``; patches always show their cells).
    """
    fig = Figure(figsize=(12, 4.6), layout="constrained")
    axes = fig.subplots(1, 3)
    axes[0].imshow(image)
    axes[0].set_title("image", fontsize=9)
    seg_ids = graph.segment_id.tolist()
    node_of = {sid: i for i, sid in enumerate(seg_ids) if i > 0 and sid >= 0}
    draw_segments(axes[1], image, seg, node_of)
    draw_graph(axes[2], image, graph, layout, boxes=boxes)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.legend(
        handles=legend_handles(layout),
        loc="outside lower center",
        ncol=4,
        fontsize=8,
        frameon=False,
    )
    head = title or ""
    if caption:
        head += f"\ncaption: “{caption}”"
    if head:
        fig.suptitle(head, fontsize=9)
    return fig
