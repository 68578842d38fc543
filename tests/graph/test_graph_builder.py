"""Scene graph builder: adjacency, kNN, global edges, edge attributes, node sets, batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader

from neurogshn.errors import ConfigError
from neurogshn.features import FeatureLayout, build_regions
from neurogshn.graph.builder import (
    EDGE_ATTR_COLUMNS,
    EDGE_DIM,
    GraphBuilderConfig,
    box_adjacency,
    build_edges,
    build_graph,
    knn_pairs,
    label_map_adjacency,
)
from neurogshn.segmentation import PanopticSegmentation, SegmentInfo, segmentation_from_map

LAYOUT = FeatureLayout(visual_dim=2, categories=("a",), stage_dims=(2,))


def maps_for(h: int, w: int):
    return [torch.ones(2, (h + 7) // 8, (w + 7) // 8)], [8]


def make_seg(m: np.ndarray) -> PanopticSegmentation:
    ids = [int(i) for i in np.unique(m) if i > 0]
    return segmentation_from_map(m, {i: SegmentInfo("a", True) for i in ids})


def edge_set(ei: torch.Tensor) -> set[tuple[int, int]]:
    return {(int(a), int(b)) for a, b in ei.T.tolist()}


def brute_force_adjacency(lab: np.ndarray, r: int) -> set[tuple[int, int]]:
    out = set()
    n = lab.max() + 1
    struct = np.ones((2 * r + 1, 2 * r + 1), bool)
    for a in range(n):
        grown = ndimage.binary_dilation(lab == a, structure=struct) if r else lab == a
        for b in np.unique(lab[grown]):
            if b >= 0 and b != a:
                out.add((min(a, b), max(a, b)))
    return out


def test_adjacency_on_hand_made_segmentation() -> None:
    # 0 0 1 1 . . 2
    # 0 0 1 1 . . 2
    # 3 3 3 . . . 2      0-1 touch, 0-3 touch, 1-3 touch diagonally, 2 is 3 px away from 1.
    lab = np.array(
        [
            [0, 0, 1, 1, -1, -1, 2],
            [0, 0, 1, 1, -1, -1, 2],
            [3, 3, 3, -1, -1, -1, 2],
        ]
    )
    assert {tuple(p) for p in label_map_adjacency(lab, 1).tolist()} == {(0, 1), (0, 3), (1, 3)}
    assert {tuple(p) for p in label_map_adjacency(lab, 2).tolist()} == {(0, 1), (0, 3), (1, 3)}
    assert {tuple(p) for p in label_map_adjacency(lab, 3).tolist()} == {
        (0, 1),
        (0, 3),
        (1, 3),
        (1, 2),
    }
    assert len(label_map_adjacency(lab, 0)) == 0


@pytest.mark.parametrize("radius", [1, 2, 3])
def test_adjacency_equals_dilation_on_random_maps(radius: int) -> None:
    rng = np.random.default_rng(radius)
    for _ in range(5):
        lab = rng.integers(-1, 6, (12, 15))
        lab = ndimage.median_filter(lab, size=3)  # blobs, with void
        got = {tuple(p) for p in label_map_adjacency(lab, radius).tolist()}
        assert got == brute_force_adjacency(lab, radius)


def test_box_adjacency_matches_pixel_dilation() -> None:
    boxes = np.array([[0, 0, 2, 2], [2, 0, 4, 2], [5, 0, 6, 1], [3, 3, 6, 6]], float)
    for r in (1, 2):
        lab_pairs = set()
        for a in range(4):
            for b in range(a + 1, 4):
                la = np.full((8, 8), -1)
                la[int(boxes[a, 1]) : int(boxes[a, 3]), int(boxes[a, 0]) : int(boxes[a, 2])] = 0
                la[int(boxes[b, 1]) : int(boxes[b, 3]), int(boxes[b, 0]) : int(boxes[b, 2])] = 1
                if brute_force_adjacency(la, r):
                    lab_pairs.add((a, b))
        assert {tuple(p) for p in box_adjacency(boxes, r).tolist()} == lab_pairs


def test_knn_on_hand_placed_centroids() -> None:
    c = torch.tensor([[0.0, 0.0], [0.1, 0.0], [0.0, 0.3], [1.0, 1.0]])
    pairs = knn_pairs(c, 1)
    assert edge_set(pairs) == {(1, 0), (0, 1), (0, 2), (2, 3)}  # (neighbour, node)
    pairs2 = knn_pairs(c, 2)
    nbrs = {i: sorted(int(j) for j, t in pairs2.T.tolist() if t == i) for i in range(4)}
    assert nbrs == {0: [1, 2], 1: [0, 2], 2: [0, 1], 3: [1, 2]}
    assert knn_pairs(c[:1], 3).shape == (2, 0)


def test_graph_edges_types_and_attributes() -> None:
    # Three 4×4 segments in a row at x = 0..3, 4..7, 12..15 (seg 3 not touching seg 2).
    m = np.zeros((4, 16), np.int64)
    m[:, 0:4] = 1
    m[:, 4:8] = 2
    m[:, 12:16] = 3
    seg = make_seg(m)
    img = np.zeros((4, 16, 3), np.uint8)
    cfg = GraphBuilderConfig(knn_k=1, adjacency_radius=1)
    g = build_graph(img, seg, *maps_for(4, 16), LAYOUT, cfg, image_id=42)
    assert g.num_nodes == 4 and g.image_id == 42
    assert g.is_global.tolist() == [True, False, False, False]
    es = edge_set(g.edge_index)
    # Global node connected to every segment, both directions.
    assert all((0, i) in es and (i, 0) in es for i in (1, 2, 3))
    assert (0, 0) not in es and all(a != b for a, b in es)
    ti = {n: EDGE_ATTR_COLUMNS.index(f"type={n}") for n in ("adjacent", "knn", "global")}
    attr = {e: g.edge_attr[k] for k, e in enumerate(sorted(es, key=lambda e: (e[1], e[0])))}
    # edge_index is sorted by target then source.
    assert [tuple(e) for e in g.edge_index.T.tolist()] == sorted(es, key=lambda e: (e[1], e[0]))
    assert attr[(1, 2)][ti["adjacent"]] == 1 and attr[(2, 1)][ti["adjacent"]] == 1
    assert attr[(2, 3)][ti["adjacent"]] == 0 and attr[(2, 3)][ti["knn"]] == 1  # kNN only
    assert attr[(1, 0)][ti["global"]] == 1 and attr[(1, 0)][ti["adjacent"]] == 0
    # Relative geometry of the message 3 -> 2: dx = cx3 - cx2 = (14 - 6) / 16, dy = 0.
    assert (1, 3) not in es  # not touching and not among each other's nearest
    a = attr[(3, 2)]
    torch.testing.assert_close(a[0], g.pos[3, 0] - g.pos[2, 0])
    assert a[0] == pytest.approx((14 - 6) / 16)
    assert a[1] == 0 and a[2] == pytest.approx(8 / 16)
    assert a[3] == pytest.approx(0.0)  # equal areas
    assert a[4] == 0 and a[5] == 0  # disjoint boxes
    a = attr[(0, 1)]  # global -> segment 1: global box contains seg 1's box
    assert a[3] == pytest.approx(np.log(1 / 0.25))
    assert a[4] == pytest.approx(0.25) and a[5] == pytest.approx(1.0)
    assert g.edge_attr.shape == (len(es), EDGE_DIM)


def test_empty_segmentation_gives_global_node_only() -> None:
    seg = PanopticSegmentation(np.zeros((16, 16), np.int32), [])
    g = build_graph(
        np.zeros((16, 16, 3), np.uint8), seg, *maps_for(16, 16), LAYOUT, GraphBuilderConfig()
    )
    assert g.num_nodes == 1 and g.x.shape == (1, LAYOUT.dim)
    assert g.edge_index.shape == (2, 0) and g.edge_attr.shape == (0, EDGE_DIM)
    assert g.is_global.tolist() == [True]


def test_edges_none_and_node_sets() -> None:
    rng = np.random.default_rng(0)
    m = np.zeros((32, 32), np.int64)
    m[:16, :16], m[:16, 16:], m[16:, :] = 1, 2, 3
    m[20:24, 4:8] = 4
    seg = make_seg(m)
    img = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    maps = maps_for(32, 32)
    none = build_graph(img, seg, *maps, LAYOUT, GraphBuilderConfig(edges="none"))
    assert none.num_nodes == 5 and none.edge_index.shape == (2, 0)
    boxes = build_graph(img, seg, *maps, LAYOUT, GraphBuilderConfig(nodes="boxes"))
    assert boxes.num_nodes == 5
    # Segment 3 surrounds segment 4: as boxes, 4's box lies inside 3's box.
    torch.testing.assert_close(boxes.node_box[3], torch.tensor([0.0, 0.5, 1.0, 0.5]))
    patches = build_graph(
        img, seg, *maps, LAYOUT, GraphBuilderConfig(nodes="patches", patch_grid=4)
    )
    assert patches.num_nodes == 17
    assert (patches.node_category[1:] == LAYOUT.category_slot(None)).all()
    # Patch adjacency = 8-neighbourhood on the grid: a corner patch touches 3 patches.
    adj_col = EDGE_ATTR_COLUMNS.index("type=adjacent")
    ei, ea = patches.edge_index, patches.edge_attr
    corner = ((ei[1] == 1) & (ea[:, adj_col] == 1)).sum().item()
    centre = ((ei[1] == 6) & (ea[:, adj_col] == 1)).sum().item()
    assert (corner, centre) == (3, 8)
    with pytest.raises(ConfigError):
        GraphBuilderConfig(nodes="pixels")
    with pytest.raises(ConfigError):
        GraphBuilderConfig(edges="some")


def test_graphs_batch_with_pyg() -> None:
    m = np.zeros((16, 16), np.int64)
    m[:8], m[8:] = 1, 2
    g1 = build_graph(
        np.zeros((16, 16, 3), np.uint8),
        make_seg(m),
        *maps_for(16, 16),
        LAYOUT,
        GraphBuilderConfig(),
        1,
    )
    g0 = build_graph(
        np.zeros((16, 16, 3), np.uint8),
        PanopticSegmentation(np.zeros((16, 16), np.int32)),
        *maps_for(16, 16),
        LAYOUT,
        GraphBuilderConfig(),
        2,
    )
    b = Batch.from_data_list([g1, g0, g1])
    assert b.num_graphs == 3 and b.x.shape[0] == 3 + 1 + 3
    assert b.is_global.sum() == 3
    assert b.edge_index.max() < b.num_nodes
    assert b.image_id.tolist() == [1, 2, 1]
    assert b.segment_id.tolist() == [-1, 1, 2, -1, -1, 1, 2]  # not offset by the batch
    assert b.node_category.tolist() == [-1, 0, 0, -1, -1, 0, 0]
    batch = next(iter(DataLoader([g1, g0], batch_size=2)))
    assert batch.batch.tolist() == [0, 0, 0, 1]


def test_build_edges_global_only_when_single_region() -> None:
    m = np.ones((8, 8), np.int64)
    regions = build_regions(make_seg(m), "panoptic")
    ei, ea = build_edges(regions, GraphBuilderConfig())
    assert edge_set(ei) == {(0, 1), (1, 0)}
    assert ea[:, EDGE_ATTR_COLUMNS.index("type=global")].tolist() == [1.0, 1.0]
