"""Scene graphs: one PyG :class:`~torch_geometric.data.Data` per image (DESIGN.md §3).

Nodes: node 0 is the global node (whole image), nodes ``1..S`` the regions (panoptic segments,
their boxes, or patches). Edges (``edges="full"``), each stored in both directions, merged when
a pair has several relations:

* **adjacent** — the two regions touch after dilating one by ``adjacency_radius`` pixels with a
  square ``(2r+1)×(2r+1)`` structuring element (Chebyshev distance ``<= r`` between some pixel of
  each). Panoptic: computed exactly on the segment map; boxes/patches: on the boxes.
* **knn** — each region's ``k`` nearest other regions by centroid (``torch.cdist`` + ``topk``).
* **global** — global node ↔ every region.

``edges="none"``: no edges at all (a bag of regions). A GAT layer then only sees the node's own
self-loop, i.e. it reduces to a per-node MLP; global pooling over nodes still works.

Edge attributes, for a message from source ``j`` to target ``i`` (PyG's ``edge_index[0]`` is the
source): ``dx = cx_j − cx_i``, ``dy = cy_j − cy_i`` (image y points down), ``dist``,
``log(area_j / area_i)``, ``IoU(box_i, box_j)``, ``|box_i ∩ box_j| / |box_i|``, then the
multi-hot type ``adjacent, knn, global``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Data

from neurogshn.errors import ConfigError
from neurogshn.features.regions import NODE_SETS, Regions, build_regions
from neurogshn.features.segment import FeatureLayout, node_features
from neurogshn.segmentation.base import PanopticSegmentation

EDGE_SETS = ("full", "none")
EDGE_GEOMETRY_COLUMNS = ("dx", "dy", "distance", "log_area_ratio", "box_iou", "box_overlap")
EDGE_TYPES = ("adjacent", "knn", "global")
EDGE_ATTR_COLUMNS = EDGE_GEOMETRY_COLUMNS + tuple(f"type={t}" for t in EDGE_TYPES)
EDGE_DIM = len(EDGE_ATTR_COLUMNS)


@dataclass
class GraphBuilderConfig:
    """How regions become a graph.

    Args:
        nodes: ``"panoptic"`` | ``"patches"`` | ``"boxes"``.
        edges: ``"full"`` (adjacency + kNN + global) | ``"none"`` (no edges).
        knn_k: neighbours per region by centroid distance (capped at ``S − 1``).
        adjacency_radius: dilation radius in pixels for the adjacency test.
        patch_grid: ``P`` of the ``P×P`` grid when ``nodes="patches"``.
    """

    nodes: str = "panoptic"
    edges: str = "full"
    knn_k: int = 4
    adjacency_radius: int = 2
    patch_grid: int = 8

    def __post_init__(self) -> None:
        if self.nodes not in NODE_SETS:
            raise ConfigError(f"nodes must be one of {NODE_SETS}, got {self.nodes!r}")
        if self.edges not in EDGE_SETS:
            raise ConfigError(f"edges must be one of {EDGE_SETS}, got {self.edges!r}")
        if self.knn_k < 0 or self.adjacency_radius < 0 or self.patch_grid < 1:
            raise ConfigError(
                "knn_k and adjacency_radius must be >= 0 and patch_grid >= 1, got "
                f"{self.knn_k}, {self.adjacency_radius}, {self.patch_grid}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GraphBuilderConfig:
        return cls(**d)


# ---------------------------------------------------------------------------------------------
# Edge sets (region indices 0..S-1; the caller shifts by one for the global node)
# ---------------------------------------------------------------------------------------------


def label_map_adjacency(label_map: np.ndarray, radius: int) -> np.ndarray:
    """Unordered pairs ``(a, b)``, ``a < b``, of regions whose pixels come within Chebyshev
    distance ``radius`` of each other on an ``H×W`` region-index map (``-1`` = void).

    Returns:
        ``P×2`` int64, sorted, unique.
    """
    lab = np.asarray(label_map, dtype=np.int64)
    h, w = lab.shape
    n = int(lab.max()) + 1 if lab.size else 0
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64)
    touch = np.zeros(n * n, dtype=bool)  # touch[a * n + b], a < b
    for dy in range(0, radius + 1):
        for dx in range(-radius, radius + 1):
            if dy == 0 and dx <= 0:
                continue  # each offset once (the pair relation is symmetric)
            a = lab[0 : h - dy, max(0, -dx) : w - max(0, dx)]
            b = lab[dy:h, max(0, dx) : w - max(0, -dx)]
            m = (a != b) & (a >= 0) & (b >= 0)
            if m.any():
                pa, pb = a[m], b[m]
                touch[np.minimum(pa, pb) * n + np.maximum(pa, pb)] = True
    idx = np.flatnonzero(touch)
    return np.stack([idx // n, idx % n], axis=1).astype(np.int64)


def box_adjacency(boxes_px: np.ndarray, radius: int) -> np.ndarray:
    """Unordered pairs of boxes ``(x0, y0, x1, y1)`` (exclusive ends) whose pixel sets come
    within Chebyshev distance ``radius`` (overlapping boxes included): ``P×2``, ``a < b``."""
    b = np.asarray(boxes_px, dtype=np.float64).reshape(-1, 4)
    n = len(b)
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64)
    # Inclusive pixel ranges [x0, x1 - 1]; gap along an axis = max(x0_b - (x1_a - 1), ...) - 1.
    gap_x = np.maximum(b[:, None, 0] - b[None, :, 2], b[None, :, 0] - b[:, None, 2]) + 1
    gap_y = np.maximum(b[:, None, 1] - b[None, :, 3], b[None, :, 1] - b[:, None, 3]) + 1
    close = (gap_x <= radius) & (gap_y <= radius)
    ia, ib = np.nonzero(np.triu(close, k=1))
    return np.stack([ia, ib], 1).astype(np.int64)


def knn_pairs(centroids: torch.Tensor, k: int) -> torch.Tensor:
    """Directed pairs ``(neighbour j, node i)`` for the ``k`` nearest other centroids of each
    node ``i`` (ties broken by index): ``2×(S·min(k, S−1))`` long."""
    s = centroids.shape[0]
    k = min(k, s - 1)
    if k <= 0:
        return torch.zeros(2, 0, dtype=torch.long, device=centroids.device)
    d = torch.cdist(centroids.double(), centroids.double())
    d.fill_diagonal_(math.inf)
    nbr = torch.topk(d, k, dim=1, largest=False).indices  # S×k
    tgt = torch.arange(s, device=centroids.device).repeat_interleave(k)
    return torch.stack([nbr.reshape(-1), tgt])


def region_adjacency(regions: Regions, radius: int) -> np.ndarray:
    """Unordered touching pairs of ``regions`` (see module doc)."""
    if regions.label_map is not None:
        return label_map_adjacency(regions.label_map, radius)
    return box_adjacency(regions.boxes_px, radius)


def _box_iou_overlap(bi: torch.Tensor, bj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    iw = (torch.minimum(bi[:, 2], bj[:, 2]) - torch.maximum(bi[:, 0], bj[:, 0])).clamp_min(0)
    ih = (torch.minimum(bi[:, 3], bj[:, 3]) - torch.maximum(bi[:, 1], bj[:, 1])).clamp_min(0)
    inter = iw * ih
    ai = (bi[:, 2] - bi[:, 0]) * (bi[:, 3] - bi[:, 1])
    aj = (bj[:, 2] - bj[:, 0]) * (bj[:, 3] - bj[:, 1])
    iou = inter / (ai + aj - inter).clamp_min(1e-12)
    return iou, inter / ai.clamp_min(1e-12)


def build_edges(regions: Regions, config: GraphBuilderConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Edges over the ``S+1`` nodes (global = 0) and their attributes.

    Returns:
        ``edge_index`` ``2×E`` long (sorted by target then source) and ``edge_attr`` ``E×9``.
    """
    s = len(regions)
    if config.edges == "none" or s == 0:
        return torch.zeros(2, 0, dtype=torch.long), torch.zeros(0, EDGE_DIM)
    n = s + 1
    types = torch.zeros(n, n, len(EDGE_TYPES), dtype=torch.bool)
    adj = torch.from_numpy(region_adjacency(regions, config.adjacency_radius)) + 1
    if len(adj):
        types[adj[:, 0], adj[:, 1], 0] = True
        types[adj[:, 1], adj[:, 0], 0] = True
    cen = torch.as_tensor(regions.centroids, dtype=torch.float64)
    kp = knn_pairs(cen, config.knn_k) + 1
    if kp.shape[1]:
        types[kp[0], kp[1], 1] = True
        types[kp[1], kp[0], 1] = True
    types[0, 1:, 2] = True
    types[1:, 0, 2] = True
    src, dst = torch.nonzero(types.any(-1).T, as_tuple=True)[::-1]  # ordered by target
    edge_index = torch.stack([src, dst])

    # Node geometry including the global node (centroid 0.5, 0.5; full box; area fraction 1).
    cx = torch.cat([torch.tensor([[0.5, 0.5]], dtype=torch.float64), cen])
    area = torch.cat([torch.ones(1, dtype=torch.float64), torch.as_tensor(regions.area_fractions)])
    h, w = regions.height, regions.width
    boxes = torch.as_tensor(regions.boxes_px, dtype=torch.float64) / torch.tensor(
        [w, h, w, h], dtype=torch.float64
    )
    boxes = torch.cat([torch.tensor([[0.0, 0.0, 1.0, 1.0]], dtype=torch.float64), boxes])
    d = cx[src] - cx[dst]
    dist = d.norm(dim=1)
    lar = torch.log(area[src].clamp_min(1e-12) / area[dst].clamp_min(1e-12))
    iou, overlap = _box_iou_overlap(boxes[dst], boxes[src])
    geom = torch.stack([d[:, 0], d[:, 1], dist, lar, iou, overlap], dim=1)
    edge_attr = torch.cat([geom, types[src, dst].double()], dim=1).float()
    return edge_index, edge_attr


def build_graph(
    image: np.ndarray,
    segmentation: PanopticSegmentation,
    feature_maps: Sequence[torch.Tensor],
    strides: Sequence[int],
    layout: FeatureLayout,
    config: GraphBuilderConfig,
    image_id: int = -1,
) -> Data:
    """The scene graph of one image.

    Args:
        image: ``H×W×3`` uint8 RGB.
        segmentation: its panoptic segmentation (same ``H×W``).
        feature_maps: the backbone maps of this image, ``C_k×h_k×w_k`` each.
        strides: stride of each map.
        layout: node feature layout (category vocabulary).
        config: node set, edge set and their parameters.
        image_id: stored as ``data.image_id``.

    Returns:
        ``Data(x N×F, edge_index 2×E, edge_attr E×9, pos N×2, is_global N, image_id,
        node_box N×4 (x, y, w, h in [0, 1]), node_category N (slot in the vocabulary, -1 for
        the global node), segment_id N (-1 for global node and patches))``.
    """
    if segmentation.segment_map.shape != tuple(np.asarray(image).shape[:2]):
        raise ValueError(
            f"segmentation {segmentation.segment_map.shape} and image "
            f"{np.asarray(image).shape[:2]} differ in size"
        )
    regions = build_regions(segmentation, config.nodes, config.patch_grid)
    x = node_features(image, regions, feature_maps, strides, layout).cpu()
    edge_index, edge_attr = build_edges(regions, config)
    s = len(regions)
    pos = torch.cat(
        [torch.tensor([[0.5, 0.5]]), torch.as_tensor(regions.centroids, dtype=torch.float32)]
    )
    node_box = torch.cat(
        [torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.as_tensor(regions.boxes_norm).float()]
    )
    is_global = torch.zeros(s + 1, dtype=torch.bool)
    is_global[0] = True
    node_category = torch.tensor(
        [-1] + [layout.category_slot(c) for c in regions.categories], dtype=torch.long
    )
    segment_id = torch.cat([torch.tensor([-1]), torch.as_tensor(regions.segment_ids)]).long()
    return Data(
        x=x,
        edge_index=edge_index,
        edge_attr=edge_attr,
        pos=pos.float(),
        is_global=is_global,
        image_id=int(image_id),
        node_box=node_box,
        node_category=node_category,
        segment_id=segment_id,
        num_nodes=s + 1,
    )


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads, then restore the previous number.

    Graph building is many tiny tensor ops; on a loaded machine OpenMP worker threads make
    them 10-40× slower than one thread (measured, docs/graphs.md), so the builder runs them
    on one thread and keeps the configured threads for the backbone's convolutions.
    """
    before = torch.get_num_threads()
    if before == n:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class SceneGraphBuilder:
    """Backbone + feature layout + builder config: images and segmentations in, graphs out.

    Args:
        backbone: a :class:`~neurogshn.features.backbone.MultiScaleBackbone`.
        categories: category vocabulary (names) for the one-hot block.
        config: node/edge options.
    """

    def __init__(
        self,
        backbone: Any,
        categories: Sequence[str] = (),
        config: GraphBuilderConfig | None = None,
    ) -> None:
        self.backbone = backbone
        self.config = config or GraphBuilderConfig()
        self.strides = [st.stride for st in backbone.stages]
        self.layout = FeatureLayout(
            visual_dim=backbone.feature_dim,
            categories=tuple(categories),
            stage_dims=tuple(st.channels for st in backbone.stages),
        )

    @torch.no_grad()
    def build_batch(
        self,
        images: Sequence[np.ndarray],
        segmentations: Sequence[PanopticSegmentation],
        image_ids: Sequence[int] | None = None,
    ) -> list[Data]:
        """Graphs of several images; same-sized images share one backbone pass."""
        ids = list(image_ids) if image_ids is not None else list(range(len(images)))
        out: list[Data | None] = [None] * len(images)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, im in enumerate(images):
            by_shape.setdefault(tuple(np.asarray(im).shape), []).append(i)
        for idxs in by_shape.values():
            maps = self.backbone.encode_numpy([np.asarray(images[i]) for i in idxs])
            with torch_threads(1):
                for b, i in enumerate(idxs):
                    out[i] = build_graph(
                        images[i],
                        segmentations[i],
                        [m[b] for m in maps],
                        self.strides,
                        self.layout,
                        self.config,
                        ids[i],
                    )
        return [g for g in out if g is not None]

    def __call__(
        self, image: np.ndarray, segmentation: PanopticSegmentation, image_id: int = -1
    ) -> Data:
        return self.build_batch([image], [segmentation], [image_id])[0]
